"""The job record (`job.sidecar.JobRecord`): versioned, documented as a JSON Schema, and readable from
every sidecar cosmos-t2 wrote; tests/data/sidecar_37288b0.json is one a 2026-12-01 commit (older than
380b276) wrote on an H200 (docs/data/2026-12-01-h200/distilled_infer_sidecar.json); tests/data/sidecar_380b276.json
is what 380b276 itself wrote for the tiny CPU job (`infer examples/robot/edge.json --tiny --device cpu --set
num_steps=2`, run from a checkout of that commit)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from cosmos_t2.job.record_schema import record_schema
from cosmos_t2.job.sidecar import SCHEMA_VERSION, JobRecord

ROOT = Path(__file__).resolve().parents[2]
OLD_SIDECAR = ROOT / "tests" / "data" / "sidecar_37288b0.json"
SIDECAR_380B276 = ROOT / "tests" / "data" / "sidecar_380b276.json"
SCHEMA = ROOT / "docs" / "record.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_documented_schema_is_the_one_the_record_makes() -> None:
    # regenerate with: python -m cosmos_t2.job.record_schema docs/record.schema.json
    assert json.loads(SCHEMA.read_text()) == record_schema()


def test_an_old_unversioned_sidecar_validates_and_reads_by_attribute() -> None:
    data = json.loads(OLD_SIDECAR.read_text())
    assert "schema_version" not in data
    validator().validate(data)
    record = JobRecord.from_json(data)
    assert record.schema_version == 1
    assert record.name == "e2e_0" and record.distilled and record.steps == 4
    assert record.changed_by_mode == {"num_steps": 35}
    assert record.device is not None and record.device.attention == "cudnn" and record.device.processes == 1
    assert record.memory is not None and record.memory.plan == {"offload": "none", "mlp_chunks": None,
                                                                "tiled_decode": False}  # fmt: skip
    assert record.timings.seconds_per_step == 4.7268 and record.timings.stages_s["diffusion"] > 0
    assert record.provenance is not None and record.provenance.checkpoint_sha256 is not None
    # what it held comes back under the same keys (plus the version it was read as)
    assert record.to_json() == {**data, "schema_version": 1}


def test_a_record_of_another_shape_is_refused_by_the_schema() -> None:
    data = json.loads(OLD_SIDECAR.read_text())
    with pytest.raises(jsonschema.ValidationError, match="'four' is not of type"):
        validator().validate({**data, "steps": "four"})
    with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
        validator().validate({k: v for k, v in data.items() if k != "name"})


def test_keys_a_newer_cosmos_t2_adds_round_trip() -> None:
    data = {
        "name": "j",
        "schema_version": SCHEMA_VERSION + 1,
        "device": {"type": "cpu", "npu": "x"},
        "new": 1,
    }
    record = JobRecord.from_json(data)
    assert record.extra == {"new": 1} and record.device is not None and record.device.extra == {"npu": "x"}
    assert record.to_json() == data


def test_the_demo_job_writes_a_versioned_record_that_validates(tmp_path: Path) -> None:
    from cosmos_t2.job.run import RunOptions, run_job
    from cosmos_t2.jobspec.load import load_job

    spec = load_job(ROOT / "examples" / "robot" / "edge.json", overrides={"num_steps": 2, "max_frames": 17})
    result = run_job(spec, RunOptions(out_dir=tmp_path, tiny=True, progress=False))
    assert result.sidecar is not None
    data = json.loads(result.sidecar.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    validator().validate(data)
    record = JobRecord.from_json(data)
    assert record.to_json() == data
    assert record.output_files is not None and set(record.output_files) == {f"{spec.name}.mp4"}
    assert record.timings.stages_s["diffusion"] > 0 and record.device is not None
    assert record.device.type == "cpu" and record.spec is not None and record.spec["num_steps"] == 2


def test_a_sidecar_of_380b276s_time_loads_in_the_report(tmp_path: Path) -> None:
    import numpy as np

    from cosmos_t2.report.build import ReportOptions, build_report
    from cosmos_t2.video import write_video

    folder = tmp_path / "out"
    folder.mkdir()
    data = json.loads(OLD_SIDECAR.read_text())
    video = folder / data["outputs"]["video"]
    write_video(video, np.zeros((5, 32, 48, 3), np.uint8), 16)
    shutil.copy(OLD_SIDECAR, folder / f"{video.stem}.json")
    html = build_report(folder, tmp_path / "r.html", ReportOptions(metrics=False)).read_text()
    assert "Cosmos-Transfer2.5-2B distilled edge (4-step)" in html  # the label, read from the old record
    assert "NVIDIA H200" in html  # its device
    assert 'id="out-' in html  # the job's section


def test_a_damaged_sidecar_is_read_with_its_odd_fields_empty() -> None:
    # a batch's skip check and the report read it; neither may stop on a hand-edited file
    record = JobRecord.from_json(
        {"name": "x", "outputs": "x.mp4", "changed_by_mode": ["a"], "schema_version": "2", "device": "cpu"}
    )
    assert record.outputs == {} and record.changed_by_mode == {} and record.device is None
    assert record.schema_version == 1 and record.timings.stages_s == {}


def test_the_sidecar_380b276_wrote_validates_reads_and_loads_in_the_report(tmp_path: Path) -> None:
    from cosmos_t2.report.build import ReportOptions, build_report

    data = json.loads(SIDECAR_380B276.read_text())
    assert "schema_version" not in data and data["provenance"]["git"]["commit"].startswith("380b276")
    validator().validate(data)
    record = JobRecord.from_json(data)
    assert record.schema_version == 1 and record.name == "robot_edge" and record.tiny and record.steps == 2
    assert record.to_json() == {**data, "schema_version": 1}
    import numpy as np

    from cosmos_t2.video import write_video

    folder = tmp_path / "out"
    folder.mkdir()
    write_video(folder / data["outputs"]["video"], np.zeros((5, 32, 48, 3), np.uint8), 16)
    shutil.copy(SIDECAR_380B276, folder / "robot_edge.json")
    html = build_report(folder, tmp_path / "r.html", ReportOptions(metrics=False)).read_text()
    assert 'id="out-' in html and "robot_edge" in html


@pytest.mark.parametrize("fixture", [OLD_SIDECAR, SIDECAR_380B276])
def test_reproduce_reads_an_unversioned_sidecar_and_names_what_lacks(fixture: Path, tmp_path: Path) -> None:
    # both predate `run` and `identity`: read as version 1, refused with what a rerun would need, before any run
    from cosmos_t2.errors import CosmosError
    from cosmos_t2.job.reproduce import reproduce

    with pytest.raises(CosmosError, match=r"this sidecar has no run, identity record") as refused:
        reproduce(fixture, tmp_path / "again")
    assert refused.value.file == str(fixture)
    assert not (tmp_path / "again").exists()
