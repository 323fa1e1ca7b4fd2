"""`cosmos-t2 infer` and `cosmos-t2 render` end to end on the tiny random-weight model, on CPU.

The input is made by the test: 17 flat grey frames whose level encodes the frame index. Chunks of 9 frames
with 1 conditional frame give two chunks ([0, 9) and [8, 17)); with show_input the input panel is
stitched exactly like the output, so reading the levels back from the mp4 shows whether the join repeats
or drops a frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli import run_cli

from cosmos_t2.video import read_video, write_video

NUM_FRAMES, FPS, SIZE = 17, 12.0, 64
FAST = ["--set", "num_steps=2", "--set", "num_video_frames_per_chunk=9", "--device", "cpu", "--quiet"]


def level(i: int) -> int:
    return 10 + 12 * i


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("job")
    frames = np.stack([np.full((SIZE, SIZE, 3), level(i), dtype=np.uint8) for i in range(NUM_FRAMES)])
    write_video(folder / "input.mkv", frames, FPS, lossless=True)
    spec = {
        "name": "ramp",
        "prompt": "a grey ramp",
        "video_path": "input.mkv",
        "show_input": True,
        "edge": {},
    }
    (folder / "ramp.json").write_text(json.dumps(spec))
    return folder / "ramp.json"


@pytest.fixture(scope="module")
def runs(job: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same job twice (mp4) and once with --latents-only; made once for the tests below."""
    out = {}
    for key, extra in (("a", []), ("b", []), ("latents", ["--latents-only"])):
        folder = tmp_path_factory.mktemp(f"out_{key}")
        code, _, _ = run_cli(["infer", str(job), "-o", str(folder), "--tiny", *FAST, *extra])
        assert code == 0
        out[key] = folder
    return out


def test_writes_a_playable_mp4_with_the_input_frame_count_and_fps(runs: dict[str, Path]) -> None:
    video = read_video(runs["a"] / "ramp.mp4")
    assert video.num_frames == NUM_FRAMES and video.fps == FPS
    assert video.frames.shape[1:] == (SIZE, 2 * SIZE, 3)  # show_input: input | output
    import av

    with av.open(str(runs["a"] / "ramp.mp4")) as container:
        assert container.metadata["title"] == "tiny random-weight model"


def test_two_chunks_stitch_without_a_repeated_or_dropped_frame(runs: dict[str, Path]) -> None:
    sidecar = json.loads((runs["a"] / "ramp.json").read_text())
    assert [(c["start"], c["end"], c["cond_frames"]) for c in sidecar["chunks"]] == [(0, 9, 0), (8, 17, 1)]
    frames = read_video(runs["a"] / "ramp.mp4").frames
    levels = frames[:, :, :SIZE].float().mean(dim=(1, 2, 3))  # the input panel
    found = [int(np.argmin([abs(float(v) - level(i)) for i in range(NUM_FRAMES)])) for v in levels]
    assert found == list(range(NUM_FRAMES))
    assert (levels - torch.tensor([level(i) for i in range(NUM_FRAMES)])).abs().max() < 3


def test_sidecar_records_the_run(runs: dict[str, Path]) -> None:
    data = json.loads((runs["a"] / "ramp.json").read_text())
    assert data["label"] == "tiny random-weight model" and data["tiny"] is True
    assert data["spec"]["resolution"] == "tiny" and data["changed_by_mode"] == {"resolution": "720"}
    assert data["steps"] == 2 and data["diffusion_steps_total"] == 4 and len(data["chunk_seeds"]) == 2
    assert data["seed"] == 2025 and data["num_frames"] == NUM_FRAMES and data["fps"] == FPS
    assert {"cosmos_t2", "torch", "transformers"} <= data["versions"].keys()
    assert {"inputs", "load_models", "text", "vae_encode", "diffusion", "vae_decode", "write"} <= data[
        "timings_s"
    ].keys()
    assert data["seconds_per_step"] > 0 and data["peak_memory_gib"]["cpu_rss"] > 0
    assert data["outputs"] == {"video": "ramp.mp4"} and data["sources"] == {"edge": "computed"}


def test_same_spec_twice_gives_identical_files(runs: dict[str, Path]) -> None:
    assert (runs["a"] / "ramp.mp4").read_bytes() == (runs["b"] / "ramp.mp4").read_bytes()
    volatile = {
        "timings_s",
        "seconds_per_step",
        "peak_memory_gib",
        "total_s",
        "created_unix",
        "startup_s",
        "steady_seconds_per_step",
        "provenance",
    }
    one, two = (json.loads((runs[k] / "ramp.json").read_text()) for k in "ab")
    assert {k: v for k, v in one.items() if k not in volatile} == {
        k: v for k, v in two.items() if k not in volatile
    }
    # provenance differs only by when and with which command line (the output folder) it ran
    assert {k: v for k, v in one["provenance"].items() if k not in ("created_utc", "command")} == {
        k: v for k, v in two["provenance"].items() if k not in ("created_utc", "command")
    }


def test_latents_only_then_render_gives_the_same_video(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = runs["latents"]
    assert sorted(p.name for p in folder.iterdir()) == ["ramp.json", "ramp.latents.safetensors"]
    out = folder / "rendered.mp4"
    code, _, err = run_cli(
        ["render", str(folder / "ramp.latents.safetensors"), "-o", str(out), "--tiny"], capsys
    )
    assert code == 0, err
    rendered = read_video(out)
    assert rendered.num_frames == NUM_FRAMES and rendered.fps == FPS
    full = read_video(runs["a"] / "ramp.mp4").frames[:, :, SIZE:]  # the output panel of the mp4 run
    assert (rendered.frames.float() - full.float()).abs().mean() < 3  # two lossy encodes of the same frames
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["render"]["video"] == "rendered.mp4" and record["name"] == "ramp"


def test_render_refuses_tiny_latents_without_tiny(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    latents = runs["latents"] / "ramp.latents.safetensors"
    code, _, err = run_cli(["render", str(latents), "-o", str(runs["latents"] / "x.mp4")], capsys)
    assert code == 2 and "tiny random-weight model" in err and "--tiny" in err


def test_missing_model_dir_is_one_red_line(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["infer", str(job), "-o", str(tmp_path), "--model-dir", str(tmp_path / "nope"), *FAST], capsys
    )
    assert code == 2 and "model directory not found" in err and str(tmp_path / "nope") in err
    assert not any(tmp_path.iterdir())
