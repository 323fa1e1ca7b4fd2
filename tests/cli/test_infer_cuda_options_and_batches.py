"""`infer` as users run it: the optimised network on CUDA (options resolved), many jobs in one process.

The CUDA resolution is a plumbing test (no GPU here): `infer --device cuda` must hand the pipeline compiled
blocks and the auto attention kernel, and `--no-compile` must turn compilation off. The batch tests run the
bundled JSONL plus a file made here on the tiny model (5 frames, 1 step) and compare with separate runs.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _cli import run_cli

from cosmos_t2.controls.blur import BLUR_PRESETS, _bicubic_down_up, blur_video
from cosmos_t2.errors import CosmosError
from cosmos_t2.job import run as run_module
from cosmos_t2.job.run import RunOptions, run_job
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.runtime import pool as pool_module
from cosmos_t2.runtime.acceleration import Acceleration, resolve_acceleration
from cosmos_t2.service import batch as batch_module
from cosmos_t2.service import infer as infer_module
from cosmos_t2.video import read_video, write_video

FAST = ["--set", "num_steps=1", "--set", "max_frames=5", "--set", "num_video_frames_per_chunk=5"]
CPU = ["--tiny", "--device", "cpu", "--quiet"]


def _captured_options(monkeypatch: pytest.MonkeyPatch, args: list[str], spec: Path) -> RunOptions:
    """The options `infer` hands the pipeline for one job (service/infer.py's run_on_ranks; batch.py keeps the
    real one)."""
    seen: list[RunOptions] = []

    def fake_run(spec: object, options: RunOptions) -> run_module.JobResult:
        seen.append(options)
        return run_module.JobResult(None, None, None, 0, 0.0)

    monkeypatch.setattr(infer_module, "run_on_ranks", fake_run)  # where `infer` calls it
    code, _, _ = run_cli(["infer", str(spec), "-o", "unused", *args])
    assert code == 0 and len(seen) == 1
    return seen[0]


def test_infer_on_cuda_resolves_to_compiled_blocks_and_the_auto_kernel(
    monkeypatch: pytest.MonkeyPatch, repo_root: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("COSMOS_T2_CACHE_DIR", str(tmp_path))
    # no GPU here: the --device check (which refuses cuda without one) lets it through
    monkeypatch.setattr("cosmos_t2.model.device.resolve_device", torch.device)
    monkeypatch.setattr("cosmos_t2.job.options.resolve_device", torch.device)  # the builder checks it too
    spec = repo_root / "examples/robot/edge.json"
    acc = _captured_options(monkeypatch, ["--device", "cuda"], spec).acceleration
    assert acc == Acceleration(
        compile=True, compile_mode=None, attn_backend="auto", inference_mode=True, cudnn_benchmark=False,
        compile_cache=tmp_path / "torch-compile", prefetch_inputs=True, deterministic=True,
    )  # fmt: skip
    record = acc.record(torch.device("cuda"))
    assert record["compile"] and record["compile_mode"] == "default"
    assert record["attention_kernel"] in {
        "fa4",
        "cudnn",
    }  # auto: FlashAttention-4 where installed, else cuDNN

    off = _captured_options(monkeypatch, ["--device", "cuda", "--no-compile"], spec).acceleration
    assert not off.compile and off.attn_backend == "auto" and off.inference_mode

    fast = _captured_options(monkeypatch, ["--device", "cuda", "--no-deterministic"], spec).acceleration
    assert (
        fast.cudnn_benchmark and not fast.deterministic
    )  # cuDNN times its convolutions: other bits per process

    chosen = _captured_options(
        monkeypatch, ["--device", "cuda", "--attn-backend", "cudnn", "--compile-mode", "max-autotune"], spec
    ).acceleration
    assert chosen.attn_backend == "cudnn" and chosen.compile_mode == "max-autotune"
    assert chosen.record(torch.device("cuda"))["attention_kernel"] == "cudnn"
    assert not chosen.deterministic  # an autotuning mode asked for: not deterministic unless told to be


def test_deterministic_with_an_autotuning_compile_mode_is_refused() -> None:
    with pytest.raises(CosmosError, match="--deterministic needs another mode") as info:
        resolve_acceleration("cuda", compile_mode="max-autotune", deterministic=True, use_compile_cache=False)
    assert info.value.key == "--compile-mode"


def test_cpu_stays_plain_unless_asked(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = repo_root / "examples/robot/edge.json"
    acc = _captured_options(monkeypatch, ["--device", "cpu"], spec).acceleration
    assert not (acc.compile or acc.inference_mode or acc.cudnn_benchmark or acc.prefetch_inputs)
    assert _captured_options(monkeypatch, ["--device", "cpu", "--compile"], spec).acceleration.compile
    assert resolve_acceleration("cpu", use_compile_cache=False).compile_cache is None


def test_unknown_attention_backend_is_one_line(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        ["infer", str(repo_root / "examples/robot/edge.json"), "-o", "x", "--attn-backend", "fast", *CPU],
        capsys,
    )
    assert code == 2 and "--attn-backend" in err and "fast" in err and len(err.strip().splitlines()) == 1


@pytest.mark.determinism
def test_the_cuda_switches_on_cpu_give_the_same_video(repo_root: Path, tmp_path: Path) -> None:
    """Inference mode and reading inputs while models load (what CUDA runs use) change no number: the same
    bytes as the plain CPU run."""
    spec = load_job(
        repo_root / "examples/robot/edge.json",
        overrides={"num_steps": 1, "max_frames": 5, "num_video_frames_per_chunk": 5},
    )
    plain = run_job(spec, RunOptions(out_dir=tmp_path / "plain", tiny=True, progress=False))
    fast = Acceleration(
        compile=False, compile_mode=None, attn_backend="auto", inference_mode=True, cudnn_benchmark=False,
        compile_cache=None, prefetch_inputs=True,
    )  # fmt: skip
    run = run_job(spec, RunOptions(out_dir=tmp_path / "fast", tiny=True, progress=False, acceleration=fast))
    assert plain.video is not None and run.video is not None
    assert plain.video.read_bytes() == run.video.read_bytes()
    record = json.loads(run.sidecar.read_text())
    assert record["acceleration"]["inference_mode"] and record["acceleration"]["prefetch_inputs"]
    assert record["timings_s"]["inputs"] > 0 and "inputs_wait" in record["timings_s"]


def test_inputs_read_while_models_load_still_fail_the_job_with_their_line(
    repo_root: Path, tmp_path: Path
) -> None:
    short = read_video(repo_root / "examples/robot/depth.mp4").frames[:3]
    write_video(tmp_path / "short.mkv", short, 16.0, lossless=True)
    spec = load_job(
        repo_root / "examples/robot/depth.json",
        overrides={"depth.control_path": str(tmp_path / "short.mkv"), "max_frames": 5},
    )
    acc = dataclasses.replace(resolve_acceleration("cpu"), prefetch_inputs=True)
    with pytest.raises(CosmosError, match=r"short\.mkv.*has 3 frames"):
        run_job(spec, RunOptions(out_dir=tmp_path / "out", tiny=True, progress=False, acceleration=acc))
    assert not (tmp_path / "out").exists()


# --- many jobs, one process -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extra_jobs(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL beside the bundled one: a job whose depth video is too short (fails in its inputs stage,
    after the bundled jobs ran), then an edge job like the first bundled one (same model set)."""
    folder = tmp_path_factory.mktemp("extra")
    short = read_video(repo_root / "examples/robot/depth.mp4").frames[:3]
    write_video(folder / "short_depth.mkv", short, 16.0, lossless=True)
    robot = repo_root / "examples/robot"
    common = {"prompt_path": str(robot / "prompt.txt"), "video_path": str(robot / "input.mp4")}
    lines = [
        {"name": "bad_depth", **common, "depth": {"control_path": str(folder / "short_depth.mkv")}},
        {"name": "edge_again", **common, "seed": 5, "edge": {"preset_edge_threshold": "high"}},
    ]
    (folder / "extra.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder / "extra.jsonl"


@pytest.fixture(scope="module")
def batch_run(repo_root: Path, extra_jobs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    builds: list[str] = []
    real = pool_module.build_net

    def counting(*args: object, **kwargs: object) -> object:
        builds.append(",".join(args[1]))  # type: ignore[arg-type]  # the modalities
        return real(*args, **kwargs)

    out = tmp_path_factory.mktemp("batch")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pool_module, "build_net", counting)
        code, _, _ = run_cli(["infer", str(repo_root / "examples/robot/batch.jsonl"), str(extra_jobs),
                              "-o", str(out), *CPU, *FAST])  # fmt: skip
    return {"code": code, "out": out, "builds": builds}


def test_batch_builds_each_model_set_once_and_keeps_going(batch_run: dict) -> None:
    assert batch_run["code"] == 2  # one job failed
    # edge, depth+edge, (bad_depth fails before any model), edge again: the edge network is built once
    assert batch_run["builds"] == ["edge", "edge,depth"]
    record = json.loads((batch_run["out"] / batch_module.BATCH_RECORD).read_text())
    status = {j["name"]: j["status"] for j in record["jobs"]}
    assert status == {"robot_edge_low": "done", "robot_depth_edge": "done", "bad_depth": "failed",
                      "edge_again": "done"}  # fmt: skip
    bad = next(j for j in record["jobs"] if j["name"] == "bad_depth")
    assert "short_depth.mkv" in bad["error"] and "frames" in bad["error"]
    assert (
        record["builds"]["net"] == 2
        and record["builds"]["vae"] == 1
        and record["builds"]["text_encoder"] == 1
    )
    for name in ("robot_edge_low", "robot_depth_edge", "edge_again"):
        assert (batch_run["out"] / f"{name}.mp4").is_file()
    assert not (batch_run["out"] / "bad_depth.mp4").exists()
    # the process's start is the first job's: later jobs of the batch did not pay it again
    startup = {
        n: json.loads((batch_run["out"] / f"{n}.json").read_text())["startup_s"]
        for n in status
        if n != "bad_depth"
    }
    assert startup["robot_edge_low"]["imports"] > 0
    assert set(startup["edge_again"].values()) == {0.0} and set(startup["robot_depth_edge"].values()) == {0.0}


@pytest.mark.parametrize(("spec", "name"), [("batch", "robot_depth_edge"), ("extra", "edge_again")])
def test_batch_outputs_equal_separate_runs(
    batch_run: dict, repo_root: Path, extra_jobs: Path, tmp_path: Path, spec: str, name: str
) -> None:
    path = repo_root / "examples/robot/batch.jsonl" if spec == "batch" else extra_jobs
    code, _, _ = run_cli(["infer", str(path), "--name", name, "-o", str(tmp_path), *CPU, *FAST])
    assert code == 0
    assert (tmp_path / f"{name}.mp4").read_bytes() == (batch_run["out"] / f"{name}.mp4").read_bytes()

    def stable(p: Path) -> dict:
        data = json.loads(p.read_text())
        for key in (
            "timings_s",
            "total_s",
            "created_unix",
            "seconds_per_step",
            "steady_seconds_per_step",
            "peak_memory_gib",
            "startup_s",
            "provenance",  # the command line and its time differ by construction
        ):
            data.pop(key)
        return data

    assert stable(tmp_path / f"{name}.json") == stable(batch_run["out"] / f"{name}.json")


def test_failed_job_is_named_last_and_done_jobs_are_skipped(
    batch_run: dict, repo_root: Path, extra_jobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = batch_run["out"]
    before = (out / "edge_again.mp4").stat().st_mtime_ns
    code, stdout, err = run_cli(
        [
            "infer",
            str(repo_root / "examples/robot/batch.jsonl"),
            str(extra_jobs),
            "-o",
            str(out),
            *CPU,
            *FAST,
        ],
        capsys,
    )
    assert code == 2
    assert err.strip().splitlines()[-1].endswith("1 of 4 jobs failed: bad_depth")
    assert "skipped edge_again" in stdout and "skipped robot_edge_low" in stdout
    assert (out / "edge_again.mp4").stat().st_mtime_ns == before


def test_a_folder_of_job_specs_runs_every_spec(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    for name in ("a", "b"):
        code, _, _ = run_cli(["validate", str(repo_root / "examples/robot/edge.json"), "--set", f"name={name}",
                              "--json-out", str(folder / f"{name}.json")], capsys)  # fmt: skip
        assert code == 0
    (folder / "notes.txt").write_text("not a spec")
    code, _, _ = run_cli(["infer", str(folder), "-o", str(tmp_path / "out"), *CPU, *FAST], capsys)
    assert code == 0
    assert (tmp_path / "out/a.mp4").is_file() and (tmp_path / "out/b.mp4").is_file()
    assert json.loads((tmp_path / "out/batch.json").read_text())["builds"]["net"] == 1


# --- the fixed cost around the steps ------------------------------------------------------------------


def _serial_blur(frames: np.ndarray, preset: str) -> np.ndarray:
    """The vis blur as it was before threads: one frame after another (the reference)."""
    params = BLUR_PRESETS[preset]
    _, height, width, _ = frames.shape
    small = (width // params.blur_downsize, height // params.blur_downsize)
    filtered = np.empty_like(frames)
    for i, frame in enumerate(frames):
        image = cv2.resize(np.ascontiguousarray(frame), small, interpolation=cv2.INTER_AREA)
        image = cv2.bilateralFilter(
            image, params.bilateral_d, params.bilateral_sigma_color, params.bilateral_sigma_space
        )
        filtered[i] = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return _bicubic_down_up(filtered, params.downup)


@pytest.mark.parametrize("preset", ["low", "medium", "high"])
def test_threaded_blur_gives_the_serial_bytes(repo_root: Path, preset: str) -> None:
    frames = read_video(repo_root / "examples/robot/input.mp4", max_frames=6).frames.numpy()
    reference = _serial_blur(frames, preset)
    for workers in (1, 3, 8):
        assert np.array_equal(blur_video(frames, preset, workers=workers), reference)


def test_a_batch_on_two_cpu_processes_keeps_one_process_group(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--gpus N` takes the batch path too: both ranks run both jobs in one torchrun process group, the
    network is built once per rank, rank 0 alone writes."""
    folder = tmp_path / "jobs"
    folder.mkdir()
    for name in ("first", "second"):
        code, _, _ = run_cli(["validate", str(repo_root / "examples/robot/edge.json"), "--set", f"name={name}",
                              "--json-out", str(folder / f"{name}.json")], capsys)  # fmt: skip
        assert code == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cosmos_t2.cli", "infer", str(folder), "-o", str(out), *CPU, *FAST,
           "--gpus", "2", "--latents-only"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / batch_module.BATCH_RECORD).read_text())
    assert [j["status"] for j in record["jobs"]] == ["done", "done"] and record["builds"]["net"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "batch.json", "first.json", "first.latents.safetensors", "second.json", "second.latents.safetensors",
    ]  # fmt: skip
    assert json.loads((out / "second.json").read_text())["device"]["processes"] == 2


def test_the_compile_cache_also_keeps_fa4_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FlashAttention-4 compiles its kernels outside inductor: its own disk cache goes under the shared folder,
    and a user who turned it off keeps it off."""
    import os

    from cosmos_t2.model.compile import FA4_CACHE_DIR_ENV, FA4_CACHE_ENV, enable_compile_cache

    for name in (FA4_CACHE_ENV, FA4_CACHE_DIR_ENV, "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    chosen = enable_compile_cache(tmp_path / "cache")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(chosen)
    assert os.environ[FA4_CACHE_ENV] == "1" and os.environ[FA4_CACHE_DIR_ENV] == str(
        chosen / "flash-attn-cute"
    )
    monkeypatch.setenv(FA4_CACHE_ENV, "0")
    enable_compile_cache(tmp_path / "cache")
    assert os.environ[FA4_CACHE_ENV] == "0"
