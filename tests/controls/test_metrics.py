"""Control-fidelity metrics on synthetic arrays with known answers, and on real control files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cosmos_t2.controls.fidelity import edge_f1, labels_from_colors, miou, si_rmse, ssim
from cosmos_t2.report.metrics import control_fidelity, sample_frames


def square_edges(offset: int = 0, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[8 + offset, 8:24] = m[23 + offset, 8:24] = True
    m[8 + offset : 24 + offset, 8] = m[8 + offset : 24 + offset, 23] = True
    return m


def test_edge_f1_known_answers() -> None:
    edges = square_edges()
    assert edge_f1(edges, edges) == 1.0
    assert edge_f1(square_edges(offset=1), edges, tolerance=1) == 1.0  # within tolerance
    assert edge_f1(square_edges(offset=3), edges, tolerance=1) <= 0.5  # only the vertical sides overlap
    assert edge_f1(np.zeros_like(edges), edges) == 0.0
    assert edge_f1(np.zeros_like(edges), np.zeros_like(edges)) == 1.0
    # half the target found, every prediction right: precision 1, recall 1/2 -> F1 2/3
    target = np.zeros((1, 10, 40), bool)
    target[0, 5, :] = True
    pred = np.zeros_like(target)
    pred[0, 5, :20] = True
    assert edge_f1(pred, target, tolerance=0) == pytest.approx(2 / 3)


def test_ssim_known_answers() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert ssim(image, image) == pytest.approx(1.0)
    flat = np.full((32, 32), 100.0)
    # constant images: SSIM = (2ab + C1) / (a^2 + b^2 + C1) from the luminance term alone
    c1 = (0.01 * 255) ** 2
    assert ssim(flat, flat + 20) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))
    noisy = np.clip(image + rng.normal(0, 40, image.shape), 0, 255)
    assert 0 < ssim(image, noisy) < 0.9
    assert ssim(image, noisy) == pytest.approx(ssim(noisy, image))  # symmetric
    video = np.stack([image, image])
    assert ssim(video, video) == pytest.approx(1.0)


def test_si_rmse_ignores_scale_and_sees_shape() -> None:
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 10, (16, 16))
    assert si_rmse(depth * 3.7, depth) == pytest.approx(0.0, abs=1e-12)
    # log-depth off by +a on half the pixels and -a on the other half: si-RMSE = a
    a = 0.2
    sign = np.where(np.arange(256).reshape(16, 16) % 2 == 0, 1.0, -1.0)
    assert si_rmse(depth * np.exp(a * sign), depth) == pytest.approx(a)
    mask = np.zeros((16, 16), bool)
    mask[:, :8] = True
    assert si_rmse(depth * np.exp(a * sign), depth, mask=mask) == pytest.approx(a)
    with pytest.raises(ValueError):
        si_rmse(np.zeros((2, 2)), np.ones((2, 2)))


def test_miou_known_answers() -> None:
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    assert miou(target, target) == 1.0
    pred = np.array([[0, 0, 0, 1], [0, 0, 0, 1]])
    # class 0: 4 / 6, class 1: 2 / 4
    assert miou(pred, target) == pytest.approx((4 / 6 + 2 / 4) / 2)
    assert miou(pred, np.where(target == 1, 255, target), ignore_index=255) == 1.0


def test_labels_from_colors_and_frame_sampling() -> None:
    frames = np.zeros((1, 2, 3, 3), np.uint8)
    frames[0, 0, 0] = (255, 0, 0)
    frames[0, 1, 2] = (0, 0, 255)
    labels = labels_from_colors(frames)
    assert labels.shape == (1, 2, 3) and len(np.unique(labels)) == 3
    assert list(sample_frames(5, 16)) == [0, 1, 2, 3, 4]
    picked = sample_frames(93, 8)
    assert len(picked) == 8 and picked[0] == 0 and picked[-1] == 92


def test_control_fidelity_scores_an_output_against_its_control_files(tmp_path: Path) -> None:
    from cosmos_t2.controls.blur import blur_video
    from cosmos_t2.controls.edge import canny_edges
    from cosmos_t2.video import write_video

    rng = np.random.default_rng(2)
    frames = np.zeros((4, 32, 48, 3), np.uint8)
    frames[:, 8:24, 12:36] = 200  # a bright box: clean edges
    frames = np.clip(frames + rng.integers(0, 8, frames.shape), 0, 255).astype(np.uint8)
    controls = tmp_path / "controls"
    write_video(controls / "edge.mkv", canny_edges(frames, "low"), 16, lossless=True)
    (controls / "edge.json").write_text(json.dumps({"preset_edge_threshold": "low"}))
    write_video(controls / "vis.mkv", blur_video(frames, "high"), 16, lossless=True)
    # the whole record `cosmos-t2 controls` writes: the preset is read from it, other keys don't matter
    (controls / "vis.json").write_text(json.dumps({"modality": "vis", "preset_blur_strength": "high"}))
    same = write_video(tmp_path / "same.mkv", frames, 16, lossless=True)
    scores = control_fidelity(same, controls)
    assert scores["edge_f1"] == pytest.approx(1.0)
    assert scores["blur_ssim"] == pytest.approx(1.0)
    other = write_video(
        tmp_path / "other.mkv", rng.integers(0, 256, frames.shape).astype(np.uint8), 16, lossless=True
    )
    worse = control_fidelity(other, controls)
    assert worse["edge_f1"] < 0.5 and worse["blur_ssim"] < 0.5
    assert control_fidelity(same, tmp_path / "missing") == {}


def test_depth_si_rmse_of_an_output_with_a_depth_model(tmp_path: Path) -> None:
    import torch
    from test_controls_models import build_tiny_depth  # the tiny random Depth Anything V2 of those tests

    from cosmos_t2.controls.depth import depth_control
    from cosmos_t2.video import write_video

    model = build_tiny_depth(tmp_path / "depth-model")
    rng = np.random.default_rng(3)
    frames = np.zeros((3, 28, 42, 3), np.uint8)
    frames[:, :, :21] = 180
    frames = np.clip(frames + rng.integers(0, 30, frames.shape), 0, 255).astype(np.uint8)
    control, _ = depth_control(frames, model, torch.device("cpu"))
    write_video(tmp_path / "controls" / "depth.mkv", control, 16, lossless=True)
    same = write_video(tmp_path / "same.mkv", frames, 16, lossless=True)
    assert "depth_si_rmse" not in control_fidelity(same, tmp_path / "controls")  # no model: not scored
    scores = control_fidelity(same, tmp_path / "controls", depth_model_dir=model)
    assert scores["depth_si_rmse"] == pytest.approx(0.0, abs=1e-9)
    flipped = write_video(tmp_path / "flipped.mkv", frames[:, :, ::-1].copy(), 16, lossless=True)
    assert control_fidelity(flipped, tmp_path / "controls", depth_model_dir=model)["depth_si_rmse"] > 0.01
