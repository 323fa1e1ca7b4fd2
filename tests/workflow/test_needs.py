"""A stage's host-memory request follows the job's shape: the reference job asks what was measured for it,
a longer or wider one more, by what it holds beyond the reference."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import torch
from _snakemake import snakemake_command

from cosmos_t2.jobspec.load import load_job
from cosmos_t2.video import write_video
from cosmos_t2.workflow.needs import (
    MARGIN,
    REFERENCE,
    STAGE_NEEDS,
    TINY_NEEDS,
    Footprint,
    held_bytes,
    memory_mb,
    spec_footprint,
    stage_resources,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_reference_job_asks_for_the_declared_memory_and_a_longer_one_for_more() -> None:
    for stage, (_, base, _, _) in STAGE_NEEDS.items():
        assert memory_mb(stage, REFERENCE) == base == memory_mb(stage, None)
    four_times = replace(REFERENCE, frames=4 * REFERENCE.frames)
    beyond = held_bytes("diffuse", four_times) - held_bytes("diffuse", REFERENCE)
    assert beyond == 3 * 4 * REFERENCE.model_video  # input, control and their stacking copies, 3 more times
    asked = memory_mb("diffuse", four_times) - STAGE_NEEDS["diffuse"][1]
    assert MARGIN * beyond / 1e6 <= asked < MARGIN * beyond / 1e6 + 1000
    assert memory_mb("prompt", four_times) == STAGE_NEEDS["prompt"][1]  # a text encoder holds no video


def test_encode_memory_follows_panels_and_the_output_size() -> None:
    uhd = Footprint(frames=93, model_size=(704, 1280), source_size=(2160, 3840))
    assert memory_mb("encode", uhd) > memory_mb("encode", replace(uhd, keep_input_resolution=False))
    assert memory_mb("encode", replace(REFERENCE, panels=3)) > memory_mb("encode", REFERENCE)
    assert memory_mb("decode", uhd) > memory_mb("decode", REFERENCE)  # reads the input at its own size


def test_tiny_and_cpu_resources_keep_their_fixed_requests() -> None:
    tiny = stage_resources("diffuse", gpu_device=True, tiny=True, gpu_model="h100")
    assert {k: tiny[k] for k in TINY_NEEDS} == TINY_NEEDS and tiny["gpu"] == 1 and tiny["gpu_model"] == "h100"
    cpu = stage_resources("diffuse", gpu_device=False, tiny=False, gpu_model="h100")
    assert cpu["gpu"] == 0 and cpu["gpu_model"] == "" and cpu["mem_mb"] == STAGE_NEEDS["diffuse"][1]


def _long_input(folder: Path, frames: int) -> Path:
    video = folder / "long.mp4"
    write_video(video, torch.zeros(frames, 64, 112, 3, dtype=torch.uint8), 24.0)
    return video


def test_a_spec_footprint_comes_from_its_video_header(tmp_path: Path) -> None:
    _long_input(tmp_path, 120)
    spec_file = tmp_path / "job.json"
    spec_file.write_text(json.dumps({"prompt": "a robot", "video_path": "long.mp4", "edge": {}, "vis": {},
                                     "show_control_condition": True}))  # fmt: skip
    shape = spec_footprint(load_job(spec_file))
    assert shape == Footprint(frames=120, model_size=(704, 1280), source_size=(64, 112), controls=2, panels=3)
    assert spec_footprint(load_job(spec_file, overrides={"max_frames": 50})).frames == 50
    (tmp_path / "long.mp4").write_bytes(b"no video")  # unreadable: the reference's request, no error here
    _header_cache_clear()
    assert spec_footprint(load_job(spec_file)) is None


def _header_cache_clear() -> None:
    from cosmos_t2.workflow import needs

    needs._header.cache_clear()


def test_a_cluster_dry_run_asks_more_memory_for_a_longer_job(tmp_path: Path) -> None:
    _long_input(tmp_path, 400)
    base = {"prompt": "a robot", "video_path": "long.mp4", "edge": {}}
    (tmp_path / "long.json").write_text(json.dumps({**base, "max_frames": 400}))
    (tmp_path / "short.json").write_text(json.dumps({**base, "max_frames": 93}))
    (tmp_path / "sweep.yaml").write_text("specs: [long.json, short.json]\n")
    (tmp_path / "models").mkdir()
    cmd = [*snakemake_command(profile=None), "--configfile", "sweep.yaml", "--config", "tiny=False",
           "model_dir=models", "--profile", str(REPO / "profiles" / "slurm-h100"), "--executor", "slurm",
           "--dry-run"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    asked = {}
    for block in proc.stdout.split("rule diffuse:")[1:]:
        name = block.split("wildcards: ", 1)[1].split("\n", 1)[0]
        asked["long" if "name=long" in name else "short"] = int(block.split("mem_mb=", 1)[1].split(",", 1)[0])
    long_shape = Footprint(frames=400, model_size=(704, 1280), source_size=(64, 112))
    assert asked == {"short": STAGE_NEEDS["diffuse"][1], "long": memory_mb("diffuse", long_shape)}
    assert asked["long"] > asked["short"]
