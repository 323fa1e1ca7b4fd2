"""Edge (Canny presets) and vis (bilateral + bicubic down/up) controls on synthetic clips."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from cosmos_t2.controls.blur import BLUR_PRESETS
from cosmos_t2.controls.compute import compute_control, compute_control_with_info
from cosmos_t2.controls.edge import EDGE_THRESHOLDS
from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError

PRESETS = ["very_low", "low", "medium", "high", "very_high"]


def rectangles_clip(num_frames: int = 4, height: int = 96, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Frames with two rectangles moving right, and the true edges: the rectangles' border pixels."""
    frames = np.full((num_frames, height, width, 3), 25, dtype=np.uint8)
    truth = np.zeros((num_frames, height, width), dtype=bool)
    for t in range(num_frames):
        for (r0, r1, c0, c1), color in (((16, 56, 10 + 3 * t, 60 + 3 * t), (200, 180, 160)),
                                         ((60, 88, 70 + 2 * t, 118 + 2 * t), (150, 230, 140))):  # fmt: skip
            frames[t, r0:r1, c0:c1] = color
            inside = np.zeros((height, width), dtype=bool)
            inside[r0:r1, c0:c1] = True
            truth[t] |= inside & ~cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return frames, truth


def boundary_f1(detected: np.ndarray, truth: np.ndarray) -> float:
    """F1 of edge pixels with one pixel of tolerance (an edge may land on either side of a step)."""
    kernel = np.ones((3, 3), np.uint8)
    near_truth = np.stack([cv2.dilate(t.astype(np.uint8), kernel) for t in truth]).astype(bool)
    near_detected = np.stack([cv2.dilate(d.astype(np.uint8), kernel) for d in detected]).astype(bool)
    precision = (detected & near_truth).sum() / max(detected.sum(), 1)
    recall = (truth & near_detected).sum() / max(truth.sum(), 1)
    return float(2 * precision * recall / (precision + recall + 1e-12))


def contrast_ladder(height: int = 48, width: int = 192) -> np.ndarray:
    """Vertical steps whose Sobel magnitude (4 x contrast) falls between the presets' upper thresholds."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    levels = [40, 55, 85, 145, 230, 120]  # steps of 15, 30, 60, 85, 110 -> magnitudes 60 .. 440
    for i, level in enumerate(levels):
        frame[:, i * width // len(levels) :] = level
    return frame[None].repeat(2, axis=0)


def test_upstream_presets() -> None:
    assert tuple(MODALITIES) == ("edge", "vis", "depth", "seg")
    assert EDGE_THRESHOLDS == {
        "very_low": (20, 50),
        "low": (50, 100),
        "medium": (100, 200),
        "high": (200, 300),
        "very_high": (300, 400),
    }
    assert [(p.blur_downsize, p.downup) for p in BLUR_PRESETS.values()] == [
        (1, 4),
        (4, 4),
        (2, 10),
        (1, 16),
        (4, 16),
    ]


@pytest.mark.parametrize("preset", PRESETS)
def test_edge_finds_rectangle_borders(preset: str) -> None:
    frames, truth = rectangles_clip()
    edges = compute_control("edge", frames, {"preset_edge_threshold": preset}, device="cpu")
    assert edges.shape == frames.shape and edges.dtype == np.uint8
    assert set(np.unique(edges)) <= {0, 255}
    assert (edges == edges[..., :1]).all()  # one map in three channels
    assert boundary_f1(edges[..., 0] > 0, truth) >= 0.9


def test_edge_presets_give_fewer_edges_as_thresholds_rise() -> None:
    frames = contrast_ladder()
    counts = [
        int((compute_control("edge", frames, {"preset_edge_threshold": p})[..., 0] > 0).sum())
        for p in PRESETS
    ]
    assert all(a > b for a, b in itertools.pairwise(counts)), counts
    assert counts[-1] > 0  # the strongest step survives even very_high


def test_edge_is_canny_on_the_rgb_frame() -> None:
    frames, _ = rectangles_clip(num_frames=2)
    frames[..., 1] = 0  # a step only in R and B still counts: OpenCV takes the strongest channel
    edges = compute_control("edge", frames, {"preset_edge_threshold": "low"})
    expected = np.stack([cv2.Canny(np.ascontiguousarray(f), 50, 100) for f in frames])
    np.testing.assert_array_equal(edges[..., 0], expected)


def test_blur_presets_are_monotone_in_strength() -> None:
    frame = np.full((128, 224, 3), 30, dtype=np.uint8)
    frame[32:96, 56:168] = 220
    frame[48:80, 90:130] = 120
    frames = frame[None].repeat(2, axis=0)
    blurred = {p: compute_control("vis", frames, {"preset_blur_strength": p}) for p in PRESETS}
    # how far the blur moves the picture, and how wide a 190-level step gets (10% .. 90% of its rise)
    distance = [np.abs(blurred[p].astype(float) - frames).mean() for p in PRESETS]
    row = {p: blurred[p][0, 64, :112, 0].astype(float) for p in PRESETS}
    width = [int(((row[p] > 30 + 19) & (row[p] < 30 + 171)).sum()) for p in PRESETS]
    assert all(a < b for a, b in itertools.pairwise(distance)), distance
    assert all(a <= b for a, b in itertools.pairwise(width)), width
    for p in PRESETS:
        assert blurred[p].shape == frames.shape and blurred[p].dtype == np.uint8


def test_blur_is_deterministic_and_keeps_flat_frames() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    first, info = compute_control_with_info("vis", frames, {"preset_blur_strength": "medium"})
    second = compute_control("vis", frames.copy(), {"preset_blur_strength": "medium"})
    assert first.tobytes() == second.tobytes()
    assert info["downup"] == 10 and info["blur_downsize"] == 2 and info["bilateral_d"] == 30
    flat = np.full((1, 64, 96, 3), 77, dtype=np.uint8)
    assert (compute_control("vis", flat, {"preset_blur_strength": "very_high"}) == 77).all()


def test_default_presets_and_errors() -> None:
    frames, _ = rectangles_clip(num_frames=1)
    default = compute_control("edge", frames, {})
    medium = compute_control("edge", frames, {"preset_edge_threshold": "medium"})
    np.testing.assert_array_equal(default, medium)
    with pytest.raises(CosmosError, match=r"edge\.preset_edge_threshold"):
        compute_control("edge", frames, {"preset_edge_threshold": "extreme"})
    with pytest.raises(CosmosError, match=r"vis\.preset_blur_strength"):
        compute_control("vis", frames, {"preset_blur_strength": "extreme"})
    with pytest.raises(CosmosError, match="unknown control modality"):
        compute_control("normals", frames, {})
    with pytest.raises(ValueError, match="uint8"):
        compute_control("edge", frames.astype(np.float32), {})
