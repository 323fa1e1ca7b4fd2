"""The control registry: a modality registered there (a toy "normal") reaches every consumer unedited."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _toy_modality import NORMAL
from _toy_modality import compute as toy_compute

from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.controls.run import compute_missing_controls
from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.report.metrics import control_fidelity
from cosmos_t2.video import INTERPOLATIONS, read_video, write_video
from cosmos_t2.workflow.sweep import ModelSettings, job_keys, point_overrides, stable_hash

FOLDERS = {"depth_model_dir": "/models/depth", "seg_model_dir": "/models/sam2", "grounding_model_dir": "/g"}


@pytest.fixture
def normal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODALITIES, "normal", NORMAL)


def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (3, 16, 24, 3)).astype(np.uint8)


def write_job(folder: Path, **block: object) -> Path:
    write_video(folder / "input.mp4", frames(), 16)
    spec = {"name": "toy", "prompt": "a robot", "video_path": "input.mp4", "normal": block}
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder / "spec.json"


def test_released_entries_are_consistent() -> None:
    assert tuple(MODALITIES) == ("edge", "vis", "depth", "seg")  # upstream's order
    paths = {f.name for f in dataclasses.fields(ModelPaths)}
    for name, m in MODALITIES.items():
        assert m.name == name and m.interpolation in INTERPOLATIONS and set(m.model_fields) <= paths
        module = m._module()
        assert callable(module.compute) and callable(getattr(module, "score", None)) == (m.metric is not None)


def test_spec_validation_does_not_import_the_heavy_stack() -> None:
    code = "import sys, cosmos_t2.jobspec.job; print(sorted({'torch', 'cv2', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spec_accepts_the_new_block_and_defaults_its_key(normal: None, tmp_path: Path) -> None:
    spec = load_job(write_job(tmp_path))
    assert list(spec.controls) == ["normal"]
    assert spec.controls["normal"].preset_normal_strength == "medium"
    assert spec.to_dict()["normal"]["preset_normal_strength"] == "medium"
    assert load_job(write_job(tmp_path, preset_normal_strength="low")).controls["normal"].to_dict() == {
        "control_path": None,
        "control_weight": 1.0,
        "mask_path": None,
        "mask_prompt": None,
        "preset_normal_strength": "low",
    }
    with pytest.raises(CosmosError, match=r"normal\.bogus"):
        load_job(write_job(tmp_path, bogus=1))
    with pytest.raises(CosmosError, match=r"normal\.preset_normal_strength"):
        load_job(write_job(tmp_path, preset_normal_strength="max"))


def test_unregistered_block_is_an_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(CosmosError, match="normal"):
        load_job(write_job(tmp_path))


def test_controls_stage_writes_the_new_control(normal: None, tmp_path: Path) -> None:
    spec = load_job(write_job(tmp_path, preset_normal_strength="high"))
    written = compute_missing_controls(spec, frames(), tmp_path / "out", ModelPaths(), "cpu", fps=16)
    assert list(written) == ["normal"] and written["normal"] == tmp_path / "out" / "normal.mkv"
    expected, _ = toy_compute(frames(), {"preset_normal_strength": "high"}, None, None)
    np.testing.assert_array_equal(read_video(written["normal"]).frames.numpy(), expected)
    record = json.loads((tmp_path / "out" / "normal.json").read_text())
    assert (
        record["modality"] == "normal" and record["preset_normal_strength"] == "high" and record["step"] == 64
    )


def test_sweep_keys_follow_the_new_spec_key_and_nothing_else(normal: None, tmp_path: Path) -> None:
    def controls_key(model: ModelSettings, **block: object) -> str | None:
        spec = load_job(write_job(tmp_path, **block)).to_dict()
        return job_keys(spec, model, lambda p: stable_hash(str(p)))["controls"]

    plain, folders = ModelSettings(), ModelSettings(**FOLDERS)
    medium = controls_key(plain)
    assert medium is not None and controls_key(plain, preset_normal_strength="medium") == medium
    assert controls_key(plain, preset_normal_strength="low") != medium
    assert controls_key(folders) == medium  # no depth or seg model folder in its key
    # the grid's preset axis reaches its preset key
    assert point_overrides({"normal": {}}, {"preset": "low"}) == {"normal.preset_normal_strength": "low"}


def test_report_scores_the_new_metric(normal: None, tmp_path: Path) -> None:
    controls = tmp_path / "controls"
    control, info = toy_compute(frames(), {"preset_normal_strength": "low"}, None, None)
    write_video(controls / "normal.mkv", control, 16, lossless=True)
    (controls / "normal.json").write_text(json.dumps(info))
    same = write_video(tmp_path / "same.mkv", frames(), 16, lossless=True)
    assert control_fidelity(same, controls) == {"normal_agreement": pytest.approx(1.0)}
    noise = np.random.default_rng(1).integers(0, 256, frames().shape).astype(np.uint8)
    other = write_video(tmp_path / "other.mkv", noise, 16, lossless=True)
    assert control_fidelity(other, controls)["normal_agreement"] < 0.5
