"""A batch's bookkeeping under faults (issue 32): a JSONL with a bad line, a damaged video beside its
sidecar, and a job whose name is the batch record's. Tiny model on CPU, 5 frames, 1 step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli

from cosmos_t2.service.batch import BATCH_RECORD
from cosmos_t2.video import write_video

FAST = ["--tiny", "--device", "cpu", "--quiet", "--set", "num_steps=1", "--set", "max_frames=5",
        "--set", "num_video_frames_per_chunk=5"]  # fmt: skip


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("batch")
    frames = np.stack([np.full((64, 64, 3), 10 + 12 * i, dtype=np.uint8) for i in range(5)])
    write_video(folder / "input.mkv", frames, 12.0, lossless=True)

    def line(name: str, seed: int) -> str:
        return json.dumps({"name": name, "prompt": "a grey ramp", "video_path": "input.mkv", "seed": seed,
                           "edge": {}})  # fmt: skip

    text = "\n".join([line("a", 1), '{"name": "broken", "prompt": ', line("b", 2), line("batch", 3)]) + "\n"
    (folder / "jobs.jsonl").write_text(text)
    out = folder / "out"
    code, _, err = run_cli(["infer", str(folder / "jobs.jsonl"), "-o", str(out), *FAST])
    return {"folder": folder, "out": out, "code": code, "err": err}


def test_a_bad_jsonl_line_fails_alone_and_the_other_lines_run(batch: dict) -> None:
    assert batch["code"] == 2  # a failure is still the batch's exit code, at the end
    out = batch["out"]
    assert (out / "a.mp4").is_file() and (out / "b.mp4").is_file()
    record = json.loads((out / BATCH_RECORD).read_text())
    failed = {j["name"]: j["error"] for j in record["jobs"] if j["status"] == "failed"}
    bad = [name for name in failed if name.endswith("jobs.jsonl:2")]
    assert bad, failed  # named by its line
    assert {j["name"] for j in record["jobs"] if j["status"] == "done"} == {"a", "b"}


def test_a_job_named_batch_cannot_clobber_the_batch_record(batch: dict) -> None:
    record = json.loads((batch["out"] / BATCH_RECORD).read_text())
    assert "jobs" in record  # the batch record, not a job's sidecar
    failed = {j["name"]: j["error"] for j in record["jobs"] if j["status"] == "failed"}
    assert "reserved" in failed["batch"] and BATCH_RECORD in failed["batch"]
    assert not (batch["out"] / "batch.mp4").exists()


def test_a_truncated_video_beside_its_sidecar_is_redone(
    batch: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    out = batch["out"]
    whole = (out / "a.mp4").read_bytes()
    (out / "a.mp4").write_bytes(whole[: len(whole) // 2])  # a copy cut short; the sidecar still says done
    b_before = (out / "b.mp4").stat().st_mtime_ns
    code, stdout, _ = run_cli(["infer", str(batch["folder"] / "jobs.jsonl"), "-o", str(out), *FAST], capsys)
    assert code == 2  # the bad line and the reserved name still fail
    assert "skipped b" in stdout and "skipped a" not in stdout
    assert (out / "a.mp4").read_bytes() == whole  # redone, the same bytes
    assert (out / "b.mp4").stat().st_mtime_ns == b_before
    sidecar = json.loads((out / "a.json").read_text())
    assert sidecar["output_files"]["a.mp4"]["bytes"] == len(whole)
    assert "redid a: a.mp4 is not the file its record describes" in stdout


def test_a_batch_rerun_with_other_settings_redoes_the_jobs_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 33: a finished job is skipped only when its record was made from the same resolved spec."""
    frames = np.stack([np.full((64, 64, 3), 10 + 12 * i, dtype=np.uint8) for i in range(5)])
    write_video(tmp_path / "input.mkv", frames, 12.0, lossless=True)
    job = {"name": "ramp", "prompt": "a grey ramp", "video_path": "input.mkv", "seed": 1, "edge": {}}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(job) + "\n")
    args = ["infer", str(tmp_path / "jobs.jsonl"), "-o", str(tmp_path / "out"), *FAST]
    assert run_cli(args, capsys)[0] == 0
    code, stdout, _ = run_cli(args, capsys)  # the same settings: done, and the record shows it
    assert code == 0 and "skipped ramp" in stdout
    code, stdout, _ = run_cli([*args, "--set", "num_steps=2", "--set", "seed=99"], capsys)
    assert code == 0 and "skipped ramp" not in stdout
    assert "redid ramp: its settings changed: num_steps 1 -> 2, seed 1 -> 99" in stdout
    sidecar = json.loads((tmp_path / "out" / "ramp.json").read_text())
    assert sidecar["spec"]["num_steps"] == 2 and sidecar["spec"]["seed"] == 99
    code, stdout, _ = run_cli([*args, "--set", "num_steps=2", "--set", "seed=99"], capsys)
    assert code == 0 and "skipped ramp" in stdout  # and the new record holds for the new settings
