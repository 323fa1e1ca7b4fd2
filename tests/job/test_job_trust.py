"""What a running and a finished job tell the user: stage lines and the summary line (`--quiet`, logs),
the sidecar's provenance, and the optional guardrails wired through cosmos-guardrail's interface with a
stand-in checker (its real weights cannot be fetched here).

One tiny 9-frame job on CPU; each in-process run takes a few seconds.
"""

from __future__ import annotations

import io
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli

from cosmos_t2.job import load as load_phase
from cosmos_t2.job.progress import JobProgress
from cosmos_t2.runtime import pool as model_pool
from cosmos_t2.video import read_video, write_video

FAST = ["--tiny", "--device", "cpu", "--set", "num_steps=2", "--set", "num_video_frames_per_chunk=9"]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("job")
    rng = np.random.default_rng(0)
    write_video(
        folder / "input.mkv", rng.integers(0, 255, (9, 64, 64, 3), dtype=np.uint8), 8.0, lossless=True
    )
    spec = {"name": "tile", "prompt": "a tiled floor", "video_path": "input.mkv", "edge": {}}
    (folder / "tile.json").write_text(json.dumps(spec))
    return folder / "tile.json"


# --- progress --------------------------------------------------------------------------------------


def test_quiet_run_prints_each_stage_steps_and_one_summary_line(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_cli(["infer", str(job), "-o", str(out), *FAST, "--quiet"], capsys)
    assert code == 0, err
    lines = err.strip().splitlines()
    stages = [re.sub(r"^\[tile [0-9.]+s\] ", "", line) for line in lines[:-1]]
    assert all(line.startswith("[tile ") for line in lines[:-1])
    assert stages[0].startswith("memory: ")  # the memory plan opens the job (tests/runtime/test_memory.py)
    stages = stages[1:]
    assert stages[:2] == [
        "checking the spec and the model files",
        "reading the input video, controls and masks",
    ]
    for want in ("prompt embeddings", "building the network and the VAE", "VAE encode", "diffusion steps"):
        assert want in stages
    assert stages.index("VAE encode") < stages.index("diffusion steps") < stages.index("VAE decode")
    steps = [s for s in stages if s.startswith("step ")]
    assert [s.split(",")[0] for s in steps] == ["step 1/2", "step 2/2"]
    assert re.search(r"[0-9.]+ s/step, about .+ left$", steps[0])
    assert steps[-1].endswith(" s/step")  # nothing left to estimate
    assert stages[-1] == "writing outputs"
    summary = lines[-1]
    record = json.loads((out / "tile.json").read_text())
    assert summary.startswith(f"done tile: {out / 'tile.mp4'} in ")
    assert f"{record['seconds_per_step']:.3f} s/step" in summary
    assert re.search(r"peak [0-9.]+ GiB cpu_rss$", summary)
    assert stdout.splitlines()[0] == str(out / "tile.mp4")  # stdout keeps only the paths

    # The same run's sidecar carries what reproducing it needs.
    prov = record["provenance"]
    assert prov["command"][1:4] == ["infer", str(job), "-o"]
    assert prov["host"] and prov["checkpoint_sha256"] is None  # the tiny model loads no file
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", prov["created_utc"])
    assert prov["git"] is None or (
        len(prov["git"]["commit"]) == 40 and isinstance(prov["git"]["dirty"], bool)
    )
    assert {"numpy", "pyav", "opencv", "torch", "transformers", "python"} <= record["versions"].keys()


def test_bar_mode_names_the_stage_and_the_steps_left() -> None:
    stream = io.StringIO()

    def shown(progress: JobProgress) -> tuple[str, float, float | None]:
        (task,) = [t for t in progress._bar.tasks if t.visible]
        return task.description, task.completed, task.total

    with JobProgress("car", "bar", stream=stream) as progress:
        progress.set_chunks(2)
        progress.chunk_started(1, 35)
        progress.stage_started("vae_encode")
        assert shown(progress) == ("car: VAE encode, chunk 2/2", 0, None)
        progress.stage_started("diffusion")
        assert shown(progress) == ("car: diffusion steps, chunk 2/2", 0, 35)
        progress.step(3, 35)
        description, completed, total = shown(progress)
        assert description.startswith("car: step 3/35, chunk 2/2, ") and description.endswith(" left")
        assert (completed, total) == (3, 35)
        progress.stage_started("vae_decode")  # no steps: an open-ended bar again
        assert shown(progress) == ("car: VAE decode, chunk 2/2", 0, None)
        line = progress.summary({"total_s": 12.0, "seconds_per_step": 0.5, "peak_memory_gib": {}}, None)
    assert line == "done car: (no output) in 12.0 s, 0.500 s/step, peak n/a"
    assert stream.getvalue().rstrip().endswith(line)


def test_auto_mode_is_lines_off_a_terminal_and_off_prints_nothing() -> None:
    stream = io.StringIO()  # not a terminal, as a Snakemake job's log file
    assert JobProgress("x", "auto", stream=stream).mode == "lines"
    quiet = JobProgress("x", False, stream=stream)
    quiet.stage_started("inputs")
    quiet.summary({"total_s": 1.0, "seconds_per_step": None}, None)
    assert stream.getvalue() == ""


# --- guardrails ------------------------------------------------------------------------------------


class StandInChecker:
    """cosmos_guardrail.CosmosSafetyChecker's interface: text -> bool, (T, H, W, 3) uint8 -> frames or None."""

    def __init__(self, blocked_words: tuple[str, ...] = (), block_video: bool = False) -> None:
        self.blocked_words, self.block_video = blocked_words, block_video
        self.texts: list[str] = []
        self.videos: list[np.ndarray] = []

    def to(self, device: object) -> StandInChecker:
        return self

    def check_text_safety(self, text: str) -> bool:
        self.texts.append(text)
        return not any(word in text for word in self.blocked_words)

    def check_video_safety(self, frames: np.ndarray) -> np.ndarray | None:
        self.videos.append(frames)
        return None if self.block_video else np.zeros_like(frames)  # "blur" everything: visible in the mp4


def install_checker(monkeypatch: pytest.MonkeyPatch, checker: StandInChecker) -> None:
    module = types.ModuleType("cosmos_guardrail")
    module.CosmosSafetyChecker = lambda: checker  # type: ignore[attr-defined]
    module.__version__ = "0.0-test"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cosmos_guardrail", module)


def test_guardrails_check_both_prompts_and_the_written_video_is_the_checked_one(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checker = StandInChecker()
    install_checker(monkeypatch, checker)
    out = tmp_path / "out"
    code, _, err = run_cli(["infer", str(job), "-o", str(out), *FAST, "--quiet", "--guardrails"], capsys)
    assert code == 0, err
    assert checker.texts[0] == "a tiled floor" and checker.texts[1].startswith("The video captures a game")
    assert len(checker.videos) == 1 and checker.videos[0].shape == (9, 64, 64, 3)
    assert checker.videos[0].dtype == np.uint8 and checker.videos[0].any()  # the generated frames
    assert float(read_video(out / "tile.mp4").frames.float().mean()) < 2  # what the checker returned
    record = json.loads((out / "tile.json").read_text())
    assert record["guardrails"]["passed"] == ["prompt", "negative_prompt", "video"]
    assert "guardrail on the prompt" in err and "guardrail on the video" in err


def test_a_blocked_prompt_stops_before_any_model_is_built(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_checker(monkeypatch, StandInChecker(blocked_words=("tiled",)))

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was built")

    monkeypatch.setattr(model_pool, "build_net", no_model)  # where run_job builds networks
    monkeypatch.setattr(load_phase, "prompt_embeddings", no_model)
    out = tmp_path / "out"
    code, _, err = run_cli(["infer", str(job), "-o", str(out), *FAST, "--quiet", "--guardrails"], capsys)
    assert code == 2
    error = err.strip().splitlines()[-1]
    assert error.startswith("error:") and "key 'prompt'" in error and "guardrail blocked the prompt" in error
    assert not out.exists() or not any(out.iterdir())


def test_a_blocked_video_is_not_written(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_checker(monkeypatch, StandInChecker(block_video=True))
    out = tmp_path / "out"
    code, _, err = run_cli(["infer", str(job), "-o", str(out), *FAST, "--quiet", "--guardrails"], capsys)
    assert code == 2 and "guardrail blocked the generated video" in err.strip().splitlines()[-1]
    assert not (out / "tile.mp4").exists() and not (out / "tile.json").exists()


def test_guardrails_asked_for_but_not_installed_is_one_line(
    job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "cosmos_guardrail", None)  # import raises ImportError
    code, _, err = run_cli(["infer", str(job), "-o", str(tmp_path), *FAST, "--quiet", "--guardrails"], capsys)
    assert code == 2
    error = err.strip().splitlines()[-1]
    assert "cosmos-guardrail" in error and "pip install cosmos-guardrail" in error
