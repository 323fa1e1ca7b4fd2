"""Video I/O through its public functions and `cosmos-t2 decode`, on small files the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from _cli import run_cli

from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError
from cosmos_t2.video import (
    RESOLUTIONS,
    Video,
    decode_to_model,
    load_input_info,
    model_resolution,
    read_video,
    resize_back,
    resize_to_model,
    write_video,
)


def textured_clip(frames: int = 9, height: int = 48, width: int = 80, seed: int = 0) -> np.ndarray:
    """Smooth moving texture: lossy codecs keep it close, unlike white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + frames, width // 8 + frames, 3), dtype=np.uint8)
    big = cv2.resize(coarse, None, fx=8, fy=8, interpolation=cv2.INTER_LINEAR)
    return np.stack([big[t : t + height, 2 * t : 2 * t + width] for t in range(frames)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


# --- encode / decode round trips ----------------------------------------------------------------


@pytest.mark.parametrize("fps", [16.0, 30000 / 1001])
def test_mp4_round_trip_keeps_frame_count_and_fps(tmp_path: Path, fps: float) -> None:
    clip = textured_clip()
    path = write_video(tmp_path / "out.mp4", torch.from_numpy(clip), fps)
    video = read_video(path)
    assert isinstance(video, Video)
    assert video.frames.dtype == torch.uint8 and tuple(video.frames.shape) == clip.shape
    assert video.num_frames == 9 and video.fps == pytest.approx(fps, abs=1e-9)
    # crf 18, but yuv420p halves the chroma resolution of this strongly coloured texture. For scale: a
    # channel swap scores 13 dB, frames off by one 21 dB.
    assert psnr(video.frames.numpy(), clip) > 28.0
    with av.open(str(path)) as container:  # what players need: H.264 in yuv420p
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"


@pytest.mark.parametrize("fps", [16.0, 29.97])
def test_lossless_round_trip_is_bit_exact(tmp_path: Path, fps: float) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (7, 34, 50, 3), dtype=np.uint8)  # odd sizes are fine
    video = read_video(write_video(tmp_path / "cache.mkv", noise, fps, lossless=True))
    assert np.array_equal(video.frames.numpy(), noise)
    assert video.fps == pytest.approx(fps, abs=1e-9)


def test_a_lossless_cache_has_the_same_bytes_every_time(tmp_path: Path) -> None:
    """The stage caches (input.mkv, control videos) are files a resume compares and a sweep's record hashes:
    Matroska's random segment UID would make each write another file."""
    clip = textured_clip(frames=3)
    first = write_video(tmp_path / "a.mkv", clip, 8, lossless=True).read_bytes()
    assert write_video(tmp_path / "b.mkv", clip, 8, lossless=True).read_bytes() == first


def test_max_frames_reads_the_first_frames(tmp_path: Path) -> None:
    clip = textured_clip(frames=8)
    path = write_video(tmp_path / "c.mkv", clip, 16, lossless=True)
    assert np.array_equal(read_video(path, max_frames=3).frames.numpy(), clip[:3])
    assert read_video(path, max_frames=100).num_frames == 8


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "v.mkv"
    write_video(path, textured_clip(frames=3), 8, lossless=True)
    write_video(path, textured_clip(frames=5), 8, lossless=True)
    assert read_video(path).num_frames == 5
    assert sorted(p.name for p in path.parent.iterdir()) == ["v.mkv"]  # no temp files left behind


def test_write_rejects_what_the_codec_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(CosmosError, match="even height and width"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 33, 64, 3), np.uint8), 16)
    with pytest.raises(CosmosError, match=r"lossless.*\.mkv"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 32, 64, 3), np.uint8), 16, lossless=True)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", np.zeros((2, 32, 64, 3), np.float32), 16)
    assert not any(tmp_path.iterdir())


# --- errors name the file -----------------------------------------------------------------------


def _zero_frame_file(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=16)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "bgr0"
        container.start_encoding()
    return path


def _truncated(tmp_path: Path) -> Path:
    data = write_video(tmp_path / "full.mkv", textured_clip(frames=12), 16, lossless=True).read_bytes()
    path = tmp_path / "cut.mkv"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "not found"),
        (
            lambda d: (d / "garbage.mp4").write_bytes(bytes(range(256)) * 20) and d / "garbage.mp4",
            "cannot decode",
        ),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "cannot decode"),
        (lambda d: _zero_frame_file(d / "zero.mkv"), "no frames"),
        (_truncated, "truncated"),
    ],
    ids=["missing", "corrupt", "empty-file", "zero-frames", "truncated"],
)
def test_unreadable_videos_raise_cosmos_error_naming_the_file(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(CosmosError, match=message) as info:
        read_video(path)
    assert info.value.file == str(path) and str(path) in str(info.value)


# --- resolution table and resizing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "size", "expected"),
    [
        ("720", (1080, 1920), (704, 1280)),  # 16:9, the official 720p shape
        ("720", (704, 1280), (704, 1280)),
        ("720", (480, 640), (704, 960)),  # 4:3
        ("720", (500, 500), (960, 960)),
        ("720", (1920, 1080), (1280, 704)),  # portrait
        ("480", (720, 1280), (432, 768)),
        ("480", (600, 800), (480, 640)),
        ("tiny", (256, 448), (64, 112)),  # the bundled example
        ("tiny", (1000, 1000), (64, 64)),
    ],
)
def test_model_resolution_follows_the_official_table(
    resolution: str, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert model_resolution(resolution, *size) == expected


def test_every_model_size_is_a_multiple_of_16() -> None:  # VAE stride 8 x patch 2
    assert all(h % 16 == 0 and w % 16 == 0 for table in RESOLUTIONS.values() for h, w in table.values())


def test_unknown_resolution_is_a_cosmos_error() -> None:
    with pytest.raises(CosmosError, match="unknown resolution '1080'") as info:
        model_resolution("1080", 1080, 1920)
    assert info.value.key == "resolution"


def test_resize_to_model_is_area_averaging() -> None:
    # INTER_AREA at an exact 2x reduction is the mean of each 2x2 block: what the official code gets.
    frames = np.random.default_rng(2).integers(0, 256, (3, 8, 12, 3), dtype=np.uint8)
    out = resize_to_model(torch.from_numpy(frames), 4, 6).numpy()
    blocks = frames.reshape(3, 4, 2, 6, 2, 3).astype(np.float64).mean(axis=(2, 4))
    assert out.shape == (3, 4, 6, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - blocks).max() <= 0.5 + 1e-9


def test_resize_to_model_crop_keeps_the_centre() -> None:
    frame = np.zeros((1, 100, 100, 3), np.uint8)
    frame[:, :20] = (255, 0, 0)  # red band on top, blue at the bottom, green between
    frame[:, 20:80] = (0, 255, 0)
    frame[:, 80:] = (0, 0, 255)
    cropped = resize_to_model(torch.from_numpy(frame), 50, 100, crop=True).numpy()
    assert cropped.shape == (1, 50, 100, 3) and (cropped == (0, 255, 0)).all()
    stretched = resize_to_model(torch.from_numpy(frame), 50, 100).numpy()
    assert (stretched[0, 0] == (255, 0, 0)).all() and (stretched[0, -1] == (0, 0, 255)).all()


def test_seg_controls_resize_without_mixing_colours() -> None:
    seg = np.zeros((1, 30, 40, 3), np.uint8)
    seg[:, :, :17] = (220, 40, 60)
    seg[:, 11:, 23:] = (40, 200, 120)
    out = resize_to_model(
        torch.from_numpy(seg), 64, 80, interpolation=MODALITIES["seg"].interpolation
    ).numpy()
    assert {tuple(c) for c in out.reshape(-1, 3)} == {(0, 0, 0), (220, 40, 60), (40, 200, 120)}
    blended = resize_to_model(torch.from_numpy(seg), 64, 80).numpy()  # the input's INTER_AREA blends
    assert len({tuple(c) for c in blended.reshape(-1, 3)}) > 3


def test_resize_back_returns_even_sides_for_h264() -> None:
    frames = torch.full((2, 64, 112, 3), 77, dtype=torch.uint8)
    out = resize_back(frames, 255, 449)
    assert tuple(out.shape) == (2, 254, 448, 3) and bool((out == 77).all())  # Lanczos keeps flat colour


# --- decode: the workflow's first step ----------------------------------------------------------


def test_decode_to_model_writes_lossless_input_and_info(tmp_path: Path) -> None:
    clip = textured_clip(frames=6, height=72, width=128)
    source = write_video(tmp_path / "in.mkv", clip, 12, lossless=True)
    info = decode_to_model(source, tmp_path / "out", resolution="tiny", max_frames=5)
    assert (info.num_frames, info.fps, info.height, info.width) == (5, 12.0, 64, 112)
    assert (info.source_height, info.source_width, info.aspect_ratio) == (72, 128, "16,9")
    assert load_input_info(tmp_path / "out" / "input.json") == info
    decoded = read_video(tmp_path / "out" / "input.mkv")
    expected = resize_to_model(torch.from_numpy(clip[:5]), 64, 112)
    assert torch.equal(decoded.frames, expected) and decoded.fps == 12.0


def test_decode_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_video(tmp_path / "in.mp4", textured_clip(frames=5, height=48, width=64), 10)
    spec = {"name": "s", "prompt": "a room", "video_path": "in.mp4", "resolution": "480", "edge": {}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    code, out, err = run_cli(
        ["decode", str(tmp_path / "spec.json"), "-o", str(tmp_path / "d"), "--tiny"], capsys
    )
    assert code == 0, err
    info = json.loads(out)
    assert (info["num_frames"], info["fps"], info["height"], info["width"]) == (
        5,
        10.0,
        64,
        80,
    )  # 4:3 -> tiny
    assert json.loads((tmp_path / "d" / "input.json").read_text()) == info
    assert read_video(tmp_path / "d" / "input.mkv").frames.shape == (5, 64, 80, 3)


def test_decode_command_reports_a_corrupt_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.mp4").write_bytes(b"not a video at all" * 50)
    (tmp_path / "spec.json").write_text(json.dumps({"prompt": "x", "video_path": "in.mp4", "edge": {}}))
    code, _, err = run_cli(["decode", str(tmp_path / "spec.json"), "-o", str(tmp_path / "d")], capsys)
    assert code == 2 and "in.mp4" in err and "cannot decode" in err
    assert not (tmp_path / "d" / "input.json").exists()
