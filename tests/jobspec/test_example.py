"""The bundled example: the generator reproduces the committed files, and every bundled spec validates."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from cosmos_t2.jobspec.job import MODALITIES
from cosmos_t2.jobspec.load import load_specs
from cosmos_t2.video import model_resolution, read_video

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "robot"
VIDEOS = ("input.mp4", "depth.mp4", "seg.mp4")
SPECS = ("edge.json", "vis.json", "depth.json", "seg.json", "multicontrol.json", "batch.jsonl")


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_example", REPO / "scripts" / "make_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_example() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def rendered(make_example: ModuleType) -> Any:  # the script's Frames: rgb, depth, seg (T, H, W, 3)
    return make_example.render()


@pytest.fixture(scope="module")
def regenerated(make_example: ModuleType, rendered: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("robot")
    make_example.write_example(out, rendered)  # a fresh render, encoded as the script does
    return out


def test_generator_reproduces_the_committed_example(regenerated: Path) -> None:
    for name in VIDEOS:
        committed, fresh = read_video(EXAMPLE / name), read_video(regenerated / name)
        assert (committed.num_frames, committed.fps) == (fresh.num_frames, fresh.fps) == (33, 16.0)
        # Same frames rendered and the same encoder settings give the same decoded pixels; the slack only
        # covers another libx264 build (its output may differ in the last bit of a few blocks).
        diff = np.abs(committed.frames.numpy().astype(np.int16) - fresh.frames.numpy())
        assert diff.mean() < 0.5, f"{name}: mean abs difference {diff.mean():.3f}"
    for name in ("prompt.txt", *SPECS):
        assert (regenerated / name).read_text() == (EXAMPLE / name).read_text(), name


def test_committed_videos_are_the_rendered_scene(rendered: Any) -> None:
    frames = rendered
    assert frames.rgb.shape == (33, 256, 448, 3)
    for name, raw in zip(VIDEOS, (frames.rgb, frames.depth, frames.seg), strict=True):
        decoded = read_video(EXAMPLE / name).frames.numpy().astype(np.float64)
        mse = np.mean((decoded - raw) ** 2)
        # A faithful lossy copy: fine brick texture and red/white edges lose some chroma to yuv420p
        # (input ~28 dB); another clip or a shifted frame scores far lower.
        assert 10 * np.log10(255.0**2 / mse) > 25.0, name
    # The scene moves: consecutive frames differ, and not only by codec noise.
    assert np.abs(np.diff(frames.rgb.astype(np.int16), axis=0)).mean(axis=(1, 2, 3)).min() > 0.5


def test_depth_and_seg_agree_with_the_geometry(make_example: ModuleType, rendered: Any) -> None:
    frames = rendered
    depth = frames.depth[..., 0].astype(np.int16)
    # Near is bright: the floor brightens towards the camera (bottom rows), the back wall is darkest.
    column = depth[0, :, 20]  # left edge: wall above the horizon, floor below, no object
    assert column[0] == column.min() and column[-1] == column.max()
    assert np.all(np.diff(column[110:]) >= 0)

    # Segmentation uses only the object colours; each object is present in every frame.
    def packed(rgb: np.ndarray) -> np.ndarray:  # one int per colour: np.unique on rows is slow
        rgb = rgb.reshape(-1, 3).astype(np.int32)
        return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]

    expected = np.unique(packed(make_example.SEG_COLOURS[1:]))
    assert all(np.array_equal(np.unique(packed(seg)), expected) for seg in frames.seg)


def test_bundled_example_is_small() -> None:
    total = sum(p.stat().st_size for p in EXAMPLE.rglob("*") if p.is_file())
    assert total < 2_000_000, f"examples/robot holds {total:,} bytes"


@pytest.mark.parametrize("name", SPECS)
def test_every_bundled_spec_validates(name: str) -> None:
    specs = load_specs(EXAMPLE / name)
    assert len(specs) == (2 if name.endswith(".jsonl") else 1)
    for spec in specs:
        assert spec.video_path == EXAMPLE / "input.mp4" and spec.resolution == "720"
        assert spec.prompt == (EXAMPLE / "prompt.txt").read_text().strip()
        assert spec.controls and set(spec.controls) <= set(MODALITIES)
        for control in spec.controls.values():
            if control.modality in ("depth", "seg"):  # no depth/seg model offline: the true videos
                assert control.control_path == EXAMPLE / f"{control.modality}.mp4"
            else:
                assert control.control_path is None  # edge and vis are computed from the input


def test_multicontrol_mixes_weights_and_720p_shape() -> None:
    (spec,) = load_specs(EXAMPLE / "multicontrol.json")
    weights = {m: c.control_weight for m, c in spec.controls.items()}
    assert len(weights) >= 2 and len(set(weights.values())) >= 2
    assert json.loads((EXAMPLE / "multicontrol.json").read_text())["name"] == spec.name
    video = read_video(EXAMPLE / "input.mp4", max_frames=1)
    assert model_resolution("720", video.height, video.width) == (704, 1280)
    assert model_resolution("tiny", video.height, video.width) == (64, 112)
