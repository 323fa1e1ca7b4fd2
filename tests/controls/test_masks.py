"""Masks: shapes rasterised per frame, mask videos binarised as upstream, resampling to the latent grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos_t2.controls.masks import (
    binarize_mask_frames,
    compute_masks,
    load_mask,
    mask_to_latent_grid,
    masks_from_shapes,
)
from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.video import read_video, write_video


def box_mask(height: int, width: int, rows: slice, cols: slice) -> np.ndarray:
    plane = np.zeros((height, width), dtype=bool)
    plane[rows, cols] = True
    return plane


def test_keyframed_box_is_interpolated_between_keyframes() -> None:
    shapes = {
        "shapes": [
            {"keyframes": [{"frame": 0, "box": [0, 0, 10, 10]}, {"frame": 10, "box": [20, 20, 40, 40]}]}
        ]
    }
    mask = masks_from_shapes(shapes, num_frames=12, height=48, width=64)
    assert mask.shape == (12, 48, 64) and mask.dtype == bool
    np.testing.assert_array_equal(mask[5], box_mask(48, 64, slice(10, 25), slice(10, 25)))  # [10,10,25,25]
    np.testing.assert_array_equal(mask[0], box_mask(48, 64, slice(0, 10), slice(0, 10)))
    np.testing.assert_array_equal(mask[10], box_mask(48, 64, slice(20, 40), slice(20, 40)))
    assert not mask[11].any()  # after the last keyframe the shape is gone


def test_static_shapes_frames_span_polygon_and_union() -> None:
    shapes = [
        {"box": [4, 4, 8, 8]},
        {"polygon": [[20, 0], [40, 0], [40, 20], [20, 20]], "frames": [2, 3]},
    ]
    mask = masks_from_shapes(json.dumps(shapes), num_frames=5, height=32, width=48)
    assert mask[:, 4:8, 4:8].all() and (mask[[0, 1, 4]].sum(axis=(1, 2)) == 16).all()  # the box alone
    square = np.zeros((32, 48), dtype=bool)
    square[0:20, 20:40] = True  # a polygon with integer corners covers the same pixels as the box
    np.testing.assert_array_equal(mask[2] & ~box_mask(32, 48, slice(4, 8), slice(4, 8)), square)
    assert not mask[1, :, 20:].any() and not mask[4, :, 20:].any()


def test_triangle_area_and_coordinate_frames(tmp_path: Path) -> None:
    triangle = {"normalized": True, "shapes": [{"polygon": [[0, 0], [1, 0], [0, 1]]}]}
    mask = masks_from_shapes(triangle, num_frames=1, height=100, width=100)
    assert abs(mask.sum() - 5000) < 150  # half the frame, within a diagonal of pixels
    source = tmp_path / "shapes.json"
    source.write_text(json.dumps({"width": 640, "height": 320, "shapes": [{"box": [320, 160, 640, 320]}]}))
    mask = masks_from_shapes(source, num_frames=2, height=32, width=64)  # source coords scaled down 10x
    np.testing.assert_array_equal(mask[1], box_mask(32, 64, slice(16, 32), slice(32, 64)))


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ([{"box": [0, 0, 5]}], r"shapes\[0\]\.box"),
        ([{"box": [0, 0, 5, 5], "polygon": [[0, 0], [1, 1], [2, 0]]}], "exactly one of"),
        (
            [{"keyframes": [{"frame": 0, "box": [0, 0, 5, 5]}, {"frame": 99, "box": [0, 0, 5, 5]}]}],
            "frame index",
        ),
        (
            [
                {
                    "keyframes": [
                        {"frame": 0, "polygon": [[0, 0], [4, 0], [0, 4]]},
                        {"frame": 3, "polygon": [[0, 0], [4, 0], [4, 4], [0, 4]]},
                    ]
                }
            ],
            "number of points",
        ),
        ({"width": 0, "shapes": []}, "positive"),
        ({"boxes": []}, "'shapes' list"),
    ],
)
def test_bad_shapes_name_the_key(shapes: object, message: str) -> None:
    with pytest.raises(CosmosError, match=message):
        masks_from_shapes(shapes, num_frames=10, height=16, width=16)


def test_mask_video_binarised_and_resized_like_upstream(tmp_path: Path) -> None:
    frames = np.zeros((6, 40, 60, 3), dtype=np.uint8)
    frames[:, 10:30, 15:45] = 255
    frames[:, 0:5, 0:5] = 100  # grey under the 127.5 threshold: no control
    path = write_video(tmp_path / "mask.mkv", frames, 16, lossless=True)
    mask = load_mask(path, height=20, width=30, num_frames=5)
    assert mask.shape == (5, 20, 30)
    np.testing.assert_array_equal(mask[0], box_mask(20, 30, slice(5, 15), slice(7, 23)))
    np.testing.assert_array_equal(
        binarize_mask_frames(frames[:1, ..., 0], 40, 60)[0], frames[0, ..., 0] > 127.5
    )
    with pytest.raises(CosmosError, match="6 frames but the input has 9"):
        load_mask(path, height=20, width=30, num_frames=9)


def test_resample_mask_follows_upstream_frame_mapping() -> None:
    mask = torch.zeros(93, 16, 32)
    mask[0] = 1.0  # latent frame 0 sees pixel frame 0 alone
    latent = mask_to_latent_grid(mask, 24, 4, 8)
    assert latent.shape == (24, 4, 8) and latent.dtype == torch.float32
    assert torch.all(latent[0] == 1) and torch.all(latent[1:] == 0)
    mask = torch.zeros(93, 16, 32, dtype=torch.bool)
    mask[1:49] = True  # the first 48 of the 92 later frames -> latent frames 1..12
    latent = mask_to_latent_grid(mask, 24, 4, 8)
    assert torch.all(latent[1:13] == 1) and torch.all(latent[13:] == 0) and torch.all(latent[0] == 0)
    half = torch.zeros(93, 16, 32)
    half[:, :, :16] = 1.0
    latent = mask_to_latent_grid(half, 24, 4, 8)
    assert torch.all(latent[..., :4] == 1) and torch.all(latent[..., 4:] == 0)
    assert mask_to_latent_grid(np.ones((1, 8, 8), dtype=bool), 1, 2, 2).shape == (1, 2, 2)
    with pytest.raises(ValueError, match="needs 93"):
        mask_to_latent_grid(torch.zeros(90, 8, 8), 24, 2, 2)


def test_compute_masks_writes_each_masked_control(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 48, 3), dtype=np.uint8)
    write_video(tmp_path / "input.mp4", frames, 16)
    mask_frames = np.zeros((7, 64, 96, 3), dtype=np.uint8)
    mask_frames[:, 32:, :] = 255
    write_video(tmp_path / "edge_mask_src.mkv", mask_frames, 16, lossless=True)
    (tmp_path / "box.json").write_text(json.dumps({"shapes": [{"box": [0, 0, 24, 16]}]}))
    spec = {
        "name": "masked",
        "prompt": "a street",
        "video_path": "input.mp4",
        "edge": {"mask_path": "edge_mask_src.mkv"},
        "vis": {"mask_path": "box.json"},
        "depth": {"control_path": "input.mp4"},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    job = load_job(tmp_path / "spec.json")
    video = read_video(tmp_path / "input.mp4")
    written = compute_masks(job, video, tmp_path / "out")
    assert set(written) == {"edge", "vis"}
    edge = read_video(written["edge"])
    assert edge.frames.shape == (5, 32, 48, 3)
    assert (edge.frames[:, 16:] == 255).all() and (edge.frames[:, :16] == 0).all()
    vis = load_mask(written["vis"], 32, 48, 5)
    np.testing.assert_array_equal(vis[3], box_mask(32, 48, slice(0, 16), slice(0, 24)))
    record = json.loads((tmp_path / "out" / "vis_mask.json").read_text())
    assert record["kind"] == "shapes" and record["coverage"] == pytest.approx(16 * 24 / (32 * 48))
    assert (tmp_path / "out" / "edge_mask.mp4").is_file()
