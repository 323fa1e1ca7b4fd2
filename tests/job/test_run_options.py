"""One options object from the command line to the job: `infer`, the server, `bench` and `bench --e2e` build
their run options with `job.options`, and `bench` accelerates its network through the code `infer` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cosmos_t2.bench.step as bench_step
import cosmos_t2.runtime.pool as model_pool
from cosmos_t2.bench.e2e import E2EOptions
from cosmos_t2.bench.step import PRESETS, BenchOptions, bench_transfer
from cosmos_t2.job.options import RunSettings, build_run_options
from cosmos_t2.job.progress import JobEvent
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.runtime.acceleration import Acceleration, accelerate
from cosmos_t2.service.infer import InferArgs, run_infer
from cosmos_t2.video import write_video


def spy_on_accelerate(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[tuple[Acceleration, str]]:
    """The real `accelerate` wherever `module` calls it, recording the settings and the backend it left set."""
    seen: list[tuple[Acceleration, str]] = []

    def recording(net: torch.nn.Module, acc: Acceleration) -> torch.nn.Module:
        done = accelerate(net, acc)  # type: ignore[arg-type]
        seen.append((acc, done.attn_backend))
        return done

    monkeypatch.setattr(module, "accelerate", recording)
    return seen


def test_bench_and_infer_accelerate_the_network_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    infer_seen = spy_on_accelerate(monkeypatch, model_pool)
    bench_seen = spy_on_accelerate(monkeypatch, bench_step)
    frames = np.stack([np.full((64, 64, 3), 20 * i, dtype=np.uint8) for i in range(9)])
    write_video(tmp_path / "in.mkv", frames, 12.0, lossless=True)
    (tmp_path / "a.json").write_text(
        json.dumps({"name": "a", "prompt": "grey", "video_path": "in.mkv", "edge": {}})
    )
    events: list[JobEvent] = []
    settings = RunSettings(device="cpu", attn_backend="math")
    args = InferArgs(jobs=[tmp_path / "a.json"], out_dir=tmp_path / "out", run=settings, tiny=True, latents_only=True,
                     quiet=True, set_=["num_steps=1", "num_video_frames_per_chunk=9"])  # fmt: skip
    run_infer(args, events=events.append, argv=["cosmos-t2", "infer"])
    assert [e.text for e in events if e.kind == "output"] == [str(tmp_path / "out" / n) for n in ("a.latents.safetensors", "a.json")]  # fmt: skip
    bench = BenchOptions(
        preset="tiny", device="cpu", dtype="fp32", warmup=0, iters=1, attn_backend="math", plain=True
    )
    bench_transfer(TransferConfig.tiny(), PRESETS["tiny"], bench, torch.device("cpu"))
    assert len(infer_seen) == len(bench_seen) == 1
    (infer_acc, infer_backend), (bench_acc, bench_backend) = infer_seen[0], bench_seen[0]
    # the same attention backend, compile, compile cache, cuDNN, deterministic and inference-mode settings
    assert bench_acc == infer_acc == settings.acceleration("cpu")
    assert bench_backend == infer_backend == "math"


def test_every_command_builds_its_run_options_from_one_settings_object() -> None:
    e2e = E2EOptions(device="cpu", compile=False, attn_backend="math", offload="none", memory_cap_gib=2.0)
    options = build_run_options(e2e.run_settings(), out_dir=Path("out"), tiny=True)
    assert (
        options.acceleration == RunSettings(device="cpu", compile=False, attn_backend="math").acceleration()
    )
    assert (options.device, options.offload, options.memory_cap_gib, options.tiny) == (
        "cpu",
        "none",
        2.0,
        True,
    )
    bench = BenchOptions(device="cpu", compile=False, attn_backend="math")
    assert bench.acceleration(torch.device("cpu")) == options.acceleration
    # a full-size estimate plans the network infer runs on a GPU: compiled unless --no-compile
    assert RunSettings(device="cuda").acceleration("cuda").compile  # (no GPU needed to plan for one)
    assert not RunSettings(device="cuda", compile=False).acceleration("cuda").compile
