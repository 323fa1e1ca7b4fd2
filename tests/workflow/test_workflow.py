"""Planning a sweep: which jobs a config makes and which stage files they share (no Snakemake here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cosmos_t2.errors import CosmosError
from cosmos_t2.workflow.keys import FileHasher, stable_hash
from cosmos_t2.workflow.manifest import manifest
from cosmos_t2.workflow.sweep import (
    format_set_args,
    grid_points,
    name_constraint,
    plan_sweep,
    point_overrides,
)


def write_example(folder: Path, video_bytes: bytes = b"video-a") -> Path:
    """Two single-control specs that share one input video and one prompt, plus a two-sample JSONL."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.mp4").write_bytes(video_bytes)
    (folder / "other.mp4").write_bytes(b"video-b")
    base = {"prompt": "a robot arm stacks red cubes", "video_path": "input.mp4"}
    (folder / "edge.json").write_text(json.dumps({**base, "edge": {"control_weight": 1.0}}))
    (folder / "vis.json").write_text(json.dumps({**base, "vis": {}}))
    lines = [
        {"name": "a", **base, "edge": {}},
        {"name": "b", "prompt": "a kitchen", "video_path": "other.mp4", "edge": {}, "depth": {}},
    ]
    (folder / "batch.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return folder


def config(**grid: list) -> dict:
    return {"specs": ["ex/edge.json", "ex/vis.json"], "grid": grid, "tiny": True}


def test_grid_points_are_the_cartesian_product_and_empty_axes_keep_the_spec() -> None:
    points = grid_points(
        {"control_weight": [0.5, 1.0], "seed": [1, 2, 3], "guidance": [], "set": {"x.y": [7]}}
    )
    assert len(points) == 6
    assert {"control_weight": 0.5, "seed": 3, "set:x.y": 7} in points
    assert grid_points({}) == [{}]


def test_point_overrides_reach_only_the_controls_a_sample_has() -> None:
    sample = {"edge": {}, "depth": {}}
    point = {
        "control_weight": 0.3,
        "preset": "low",
        "seed": 9,
        "set:depth.mask_prompt": "arm",
        "set:seg.x": 1,
    }
    assert point_overrides(sample, point) == {
        "edge.control_weight": 0.3,
        "depth.control_weight": 0.3,
        "edge.preset_edge_threshold": "low",
        "seed": 9,
        "depth.mask_prompt": "arm",
    }


def test_set_args_round_trip_through_the_spec_parser() -> None:
    from cosmos_t2.jobspec.parse import parse_set_options

    overrides = {"seed": 7, "edge.control_weight": 0.5, "prompt": "123", "vis.preset_blur_strength": "low"}
    args = format_set_args(overrides)
    assert args[::2] == ["--set"] * 4
    assert parse_set_options(args[1::2]) == overrides


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_two_specs_by_two_weights_share_decode_controls_and_prompt(tmp_path: Path) -> None:
    write_example(tmp_path / "ex")
    sweep = plan_sweep(config(control_weight=[0.5, 1.0]), tmp_path)
    assert len(sweep.jobs) == 4
    assert len(sweep.keys("decode")) == 1  # one input video
    assert len(sweep.keys("controls")) == 2  # edge and vis of that video
    assert len(sweep.keys("prompt")) == 1  # one prompt text
    assert sweep.keys("masks") == []
    assert len(sweep.keys("job")) == 4
    # the shared stages' specs carry no weight, so a new weight cannot touch them
    for stage in ("decode", "controls", "prompt"):
        for key in sweep.keys(stage):
            assert not any("control_weight" in k for k in sweep.stage_spec(stage, key).overrides)
    weights = sorted(
        j.overrides.get("edge.control_weight", j.overrides.get("vis.control_weight"))
        for j in sweep.jobs.values()
    )
    assert weights == [0.5, 0.5, 1.0, 1.0]
    # the job a shared stage's resources follow: the sweep's first job that reads it
    for stage in ("decode", "controls", "prompt"):
        for key in sweep.keys(stage):
            first = next(j for j in sweep.jobs.values() if getattr(j, stage) == key)
            assert sweep.job_of(stage, key) is first
    with pytest.raises(KeyError, match="no job of this sweep reads controls nope"):
        sweep.job_of("controls", "nope")


def test_changing_one_weight_changes_only_the_jobs_that_use_it(tmp_path: Path) -> None:
    write_example(tmp_path / "ex")
    before = plan_sweep(config(control_weight=[0.5, 1.0]), tmp_path)
    after = plan_sweep(config(control_weight=[0.5, 0.8]), tmp_path)
    kept = set(before.jobs) & set(after.jobs)
    assert len(kept) == 2 and all(before.jobs[k].settings["control_weight"] == 0.5 for k in kept)
    for stage in ("decode", "controls", "prompt"):
        assert before.keys(stage) == after.keys(stage)
        for key in before.keys(stage):
            assert before.stage_spec(stage, key) == after.stage_spec(stage, key)


def test_presets_steps_and_video_bytes_reach_the_right_stages(tmp_path: Path) -> None:
    write_example(tmp_path / "ex")
    base = plan_sweep(config(), tmp_path)
    low = plan_sweep(config(preset=["low"]), tmp_path)
    assert base.keys("decode") == low.keys("decode")
    assert set(base.keys("controls")) != set(low.keys("controls"))  # both edge and vis have presets
    steps = plan_sweep(config(num_steps=[3]), tmp_path)
    assert steps.keys("controls") == base.keys("controls") and set(steps.jobs) != set(base.jobs)
    write_example(tmp_path / "ex", video_bytes=b"another video")  # same path, new content
    edited = plan_sweep(config(), tmp_path)
    assert edited.keys("decode") != base.keys("decode")
    assert edited.keys("prompt") == base.keys("prompt")


def test_jsonl_samples_glob_and_sample_filter(tmp_path: Path) -> None:
    write_example(tmp_path / "ex")
    sweep = plan_sweep({"specs": ["ex/*.jsonl"], "grid": {"seed": [1, 2]}}, tmp_path)
    assert sorted({j.name for j in sweep.jobs.values()}) == ["a", "b"]
    assert len(sweep.jobs) == 4 and len(sweep.keys("decode")) == 2
    only_b = plan_sweep({"specs": ["ex/batch.jsonl"], "samples": ["b"]}, tmp_path)
    (job,) = only_b.jobs.values()
    assert job.modalities == ["edge", "depth"]
    assert only_b.stage_spec("job", job.key).validate_args() == ["--name", "b"]


def test_given_controls_skip_the_controls_stage_and_masks_read_the_decoded_input(tmp_path: Path) -> None:
    folder = write_example(tmp_path / "ex")
    (folder / "edge.mp4").write_bytes(b"edges")
    given = {"prompt": "p", "video_path": "input.mp4", "edge": {"control_path": "edge.mp4"}}
    (folder / "given.json").write_text(json.dumps(given))
    masked = {**given, "name": "masked", "edge": {"control_path": "edge.mp4", "mask_prompt": "the arm"}}
    (folder / "masked.json").write_text(json.dumps(masked))
    sweep = plan_sweep({"specs": ["ex/given.json"]}, tmp_path)
    (job,) = sweep.jobs.values()
    assert job.controls is None and job.masks is None and job.decode is None
    assert sweep.keys("decode") == sweep.keys("controls") == []
    sweep = plan_sweep({"specs": ["ex/masked.json"]}, tmp_path)
    (job,) = sweep.jobs.values()
    assert job.controls is None and job.masks is not None
    assert sweep.decode_of[job.masks] == job.decode and sweep.keys("decode") == [job.decode]


def test_bad_configs_are_one_clear_error(tmp_path: Path) -> None:
    write_example(tmp_path / "ex")
    with pytest.raises(CosmosError, match="no spec file matches"):
        plan_sweep({"specs": ["ex/*.nothing"]}, tmp_path)
    with pytest.raises(CosmosError, match="the sweep has no jobs"):
        plan_sweep({"specs": ["ex/edge.json"], "samples": ["nope"]}, tmp_path)
    (tmp_path / "ex" / "bad.json").write_text(
        json.dumps({"prompt": "p", "video_path": "missing.mp4", "edge": {}})
    )
    with pytest.raises(CosmosError, match="video_path"):
        plan_sweep({"specs": ["ex/bad.json"]}, tmp_path)


def test_name_constraint_matches_exactly_the_names_and_braces_are_refused(tmp_path: Path) -> None:
    names = ["a", "a_1", "a_1_edge", "run.v2", "x-y", "}{", "a{b c}", "50% (v2)"]
    pattern = re.compile(f"(?:{name_constraint(names)})$")
    assert all(pattern.match(n) for n in names)
    assert not any(pattern.match(n) for n in ("a_2", "runxv2", "a_1_", "b", "{"))
    write_example(tmp_path / "ex")
    (tmp_path / "ex" / "take.json").write_text(
        json.dumps({"name": "take{2}", "prompt": "p", "video_path": "input.mp4", "edge": {}})
    )
    with pytest.raises(CosmosError, match=r"key 'name': 'take\{2\}' holds a \{word\}"):
        plan_sweep({"specs": ["ex/take.json"]}, tmp_path)


def test_file_hasher_remembers_digests_until_the_file_changes(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"one")
    cache = tmp_path / "cache" / "digests.json"
    first = FileHasher(cache)
    digest = first(video)
    first.save()
    assert json.loads(cache.read_text())[str(video.resolve())][2] == digest
    again = FileHasher(cache)
    assert again(video) == digest and not again._dirty  # served from the cache
    video.write_bytes(b"two!")
    assert again(video) != digest


def test_manifest_lists_every_job_with_its_files_and_benchmarks(tmp_path: Path) -> None:
    write_example(tmp_path / "ex")
    sweep = plan_sweep(config(control_weight=[0.5, 1.0]), tmp_path)
    data = manifest(sweep, {"label": "cpu-test"}, ["tiny"])
    assert data["hardware"] == {"label": "cpu-test"} and data["bench"] == ["bench/tiny.json"]
    assert len(data["jobs"]) == 4
    job = data["jobs"][0]
    assert job["paths"]["video"] == f"videos/{job['key']}/{job['name']}.mp4"
    assert job["benchmarks"]["diffuse"] == f"{job['key']}/{job['name']}"
    assert set(job["benchmarks"]) == {"spec", "decode", "controls", "prompt", "diffuse", "encode"}
