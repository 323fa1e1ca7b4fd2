"""Video in and out: decode to uint8 frames, resize to the model's resolution, encode mp4 or a lossless cache.

FFmpeg comes through PyAV (its wheels bundle the libraries), chosen over ffmpeg-python + imageio-ffmpeg's
binary: it decoded 93 frames at 1280x704 faster here and keeps fps and errors in-process (numbers in README,
script in scripts/bench_video_decode.py).

Frames are `torch.uint8` tensors shaped (T, H, W, 3), RGB. Resizing follows the official Cosmos-Transfer2.5
inference (`cosmos_transfer2/_src/transfer2/inference/utils.py`): the closest of five aspect ratios picks a
size from the resolution table, frames are resized to it with OpenCV's INTER_AREA (no crop, so the small
aspect difference becomes a slight stretch), and outputs go back to the input size with INTER_LANCZOS4.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from cosmos_t2.atomic import atomic_outputs, atomic_path, write_json_atomic
from cosmos_t2.destination import check_destination, estimate_video_bytes
from cosmos_t2.errors import CosmosError
from cosmos_t2.reproducible import x264_params

# (height, width) per resolution and aspect ratio "w,h". "480" and "720" are the official table
# (`VIDEO_RES_SIZE_INFO` in cosmos_transfer2/_src/predict2/datasets/utils.py, stored there as (w, h)).
# "tiny" is ours, for the tiny CPU model: about 64 px high, both sides multiples of 16 (VAE stride 8 x
# patch 2) and each ratio as close to the label as that allows.
RESOLUTIONS: dict[str, dict[str, tuple[int, int]]] = {
    "720": {
        "16,9": (704, 1280),
        "4,3": (704, 960),
        "1,1": (960, 960),
        "3,4": (960, 704),
        "9,16": (1280, 704),
    },
    "480": {"16,9": (432, 768), "4,3": (480, 640), "1,1": (480, 480), "3,4": (640, 480), "9,16": (768, 432)},
    "tiny": {"16,9": (64, 112), "4,3": (64, 80), "1,1": (64, 64), "3,4": (80, 64), "9,16": (112, 64)},
}
_ASPECT_RATIOS = {"16,9": 16 / 9, "4,3": 4 / 3, "1,1": 1.0, "3,4": 3 / 4, "9,16": 9 / 16}

# OpenCV filters by the names the control registry uses (`Modality.interpolation`: the filter the official
# inference resizes a given control video with). Mask videos use INTER_LINEAR and are then thresholded at
# 127.5. The input video itself uses INTER_AREA.
INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
}

CRF = 18  # visually lossless for previews and outputs; the model never reads these back
_LOSSLESS_SUFFIXES = {".mkv"}
RESIZE_THREADS = 8  # frames resized at once (each call also splits its rows over cv2's own threads)


@dataclass(frozen=True)
class Video:
    """Decoded frames and their rate. frames: (T, H, W, 3) uint8, RGB."""

    frames: torch.Tensor
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


@dataclass(frozen=True)
class InputInfo:
    """What `decode` records beside input.mkv: enough to undo the resize and keep the frame rate."""

    source: str
    fps: float
    num_frames: int
    source_height: int
    source_width: int
    height: int
    width: int
    resolution: str
    aspect_ratio: str


def read_video(path: str | Path, *, max_frames: int | None = None) -> Video:
    """Decode every frame (or the first `max_frames`) of a video file to RGB uint8."""
    path = Path(path)
    if not path.is_file():
        raise CosmosError("video file not found", file=path)
    if max_frames is not None and max_frames <= 0:
        raise CosmosError(f"max_frames must be positive, got {max_frames}", file=path)
    frames: list[np.ndarray] = []
    rate: Fraction | None = None
    expected = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CosmosError("no video stream in file", file=path)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            expected = _expected_frames(stream, container.duration)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.EOFError:
        pass  # a stream without packets ends here instead of yielding nothing; counted below
    except av.FFmpegError as exc:
        raise CosmosError(f"cannot decode video ({exc.strerror or exc})", file=path) from exc
    if not frames:
        raise CosmosError("video has no frames", file=path)
    read_to_end = max_frames is None or len(frames) < max_frames
    # A cut-off file decodes its first part without complaint; the header still knows the length.
    if read_to_end and expected and len(frames) < 0.9 * expected and expected - len(frames) > 1:
        raise CosmosError(f"truncated or corrupt: decoded {len(frames)} of {expected} frames", file=path)
    if not rate:
        raise CosmosError("video has no frame rate", file=path)
    if any(f.shape != frames[0].shape for f in frames):
        raise CosmosError("frame size changes within the video", file=path)
    return Video(frames=torch.from_numpy(np.stack(frames)), fps=float(rate))


def write_video(
    path: str | Path, frames: torch.Tensor | np.ndarray, fps: float, *, lossless: bool = False
) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames, atomically.

    Default: H.264 yuv420p at crf 18 (plays everywhere; needs even sides), the same bytes for the same
    frames on any x86-64 CPU with SSE4.2 and a given `av` wheel. `lossless=True`: FFV1 in
    packed RGB (bgr0) inside .mkv, which decodes back to the same bytes, for caches between stages.
    """
    path = Path(path)
    array = _as_uint8_frames(frames)
    _, height, width, _ = array.shape
    if fps <= 0:
        raise CosmosError(f"fps must be positive, got {fps}", file=path)
    if lossless and path.suffix.lower() not in _LOSSLESS_SUFFIXES:
        raise CosmosError("a lossless video must be written as .mkv (FFV1)", file=path)
    if not lossless and (height % 2 or width % 2):
        raise CosmosError(f"H.264 yuv420p needs even height and width, got {height}x{width}", file=path)
    # A Fraction keeps NTSC rates (30000/1001) exact in the container's time base.
    rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        try:
            # faststart puts the index first, so the HTML report's <video> starts before the file is read
            options = {"movflags": "+faststart"} if path.suffix.lower() in {".mp4", ".mov"} else {}
            if lossless:  # Matroska draws a random segment UID per file unless told to be bit-exact
                options["fflags"] = "+bitexact"
            with av.open(str(tmp), "w", options=options) as container:
                if lossless:
                    stream = container.add_stream("ffv1", rate=rate)
                    stream.pix_fmt = "bgr0"  # packed RGB: no colour conversion, so bit-exact
                    stream.options = {"level": "3", "slices": "4"}
                else:
                    stream = container.add_stream("libx264", rate=rate)
                    stream.pix_fmt = "yuv420p"
                    # threads and asm pinned: the bitstream then depends on the frames and the av wheel
                    # alone, not on the CPU model or core count (cosmos_t2.reproducible)
                    stream.options = {"crf": str(CRF), "preset": "medium", "x264-params": x264_params()}
                stream.height, stream.width = height, width
                stream.thread_type = "AUTO"
                for image in array:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                container.mux(stream.encode(None))
        except av.FFmpegError as exc:
            raise CosmosError(f"cannot encode video ({exc.strerror or exc})", file=path) from exc
    return path


def model_resolution(resolution: str, height: int, width: int) -> tuple[int, int]:
    """(height, width) the model runs at for an input of this size: the closest aspect ratio's entry."""
    if resolution not in RESOLUTIONS:
        raise CosmosError(
            f"unknown resolution {resolution!r}; expected one of {sorted(RESOLUTIONS)}", key="resolution"
        )
    return RESOLUTIONS[resolution][aspect_ratio_key(height, width)]


def aspect_ratio_key(height: int, width: int) -> str:
    """The official table's aspect-ratio label ("16,9", ...) nearest to width / height."""
    ratio = width / height
    return min(_ASPECT_RATIOS, key=lambda key: (_ASPECT_RATIOS[key] - ratio) ** 2)


def resize_to_model(
    frames: torch.Tensor,
    height: int,
    width: int,
    *,
    crop: bool = False,
    interpolation: int | str = cv2.INTER_AREA,
) -> torch.Tensor:
    """Resize (T, H, W, 3) uint8 frames to the model size, by default as the official inference does.

    The official code stretches to the table entry with INTER_AREA (for a control video: its modality's
    `interpolation`, a cv2 flag or a name in INTERPOLATIONS). `crop=True` instead scales to cover the
    target and cuts the centre, keeping the aspect ratio exactly (for inputs far from every table ratio).
    """
    if isinstance(interpolation, str):
        interpolation = INTERPOLATIONS[interpolation]
    array = _as_uint8_frames(frames)
    if crop:
        _, src_h, src_w, _ = array.shape
        scale = max(height / src_h, width / src_w)
        cover_h, cover_w = max(height, round(src_h * scale)), max(width, round(src_w * scale))
        array = _resize(array, cover_h, cover_w, interpolation)
        top, left = (cover_h - height) // 2, (cover_w - width) // 2
        return torch.from_numpy(np.ascontiguousarray(array[:, top : top + height, left : left + width]))
    return torch.from_numpy(_resize(array, height, width, interpolation))


def resize_back(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize model-size frames to the input's size (keep_input_resolution), with INTER_LANCZOS4.

    Like the official code, odd sides are rounded down to even so the result can be H.264 yuv420p.
    """
    return torch.from_numpy(_resize(_as_uint8_frames(frames), height - height % 2, width - width % 2))


def read_at_model_resolution(
    path: str | Path, resolution: str, *, max_frames: int | None = None, crop: bool = False
) -> tuple[Video, tuple[int, int]]:
    """A job's input resized to the model resolution of `resolution`, and its source (height, width)."""
    video = read_video(path, max_frames=max_frames)
    height, width = model_resolution(resolution, video.height, video.width)
    frames = resize_to_model(video.frames, height, width, crop=crop)
    return Video(frames=frames, fps=video.fps), (video.height, video.width)


def decode_to_model(
    video_path: str | Path,
    out_dir: str | Path,
    *,
    resolution: str,
    max_frames: int | None = None,
    crop: bool = False,
) -> InputInfo:
    """Decode a job's input, resize it to the model resolution and write out_dir/input.mkv + input.json."""
    video, (source_height, source_width) = read_at_model_resolution(
        video_path, resolution, max_frames=max_frames, crop=crop
    )
    out_dir = Path(out_dir)
    check_destination(
        out_dir,
        ["input.mkv", "input.json"],
        estimate_video_bytes(video.num_frames, video.height, video.width, lossless=True),
    )
    info = InputInfo(
        source=str(video_path),
        fps=video.fps,
        num_frames=video.num_frames,
        source_height=source_height,
        source_width=source_width,
        height=video.height,
        width=video.width,
        resolution=resolution,
        aspect_ratio=aspect_ratio_key(source_height, source_width),
    )
    with atomic_outputs() as outputs:  # input.json, the completion record, appears last
        write_video(outputs.stage(out_dir / "input.mkv"), video.frames, video.fps, lossless=True)
        write_json_atomic(outputs.stage(out_dir / "input.json", record=True), asdict(info))
    return info


def load_input_info(path: str | Path) -> InputInfo:
    """Read the input.json that `decode_to_model` wrote."""
    path = Path(path)
    try:
        return InputInfo(**json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise CosmosError("input info not found (run `cosmos-t2 decode` first)", file=path) from exc
    except (json.JSONDecodeError, TypeError) as exc:
        raise CosmosError(f"not an input info file ({exc})", file=path) from exc


def video_header(path: str | Path) -> tuple[int, int, int]:
    """(frames, height, width) of a video from its header alone, without decoding; zeros where the file or
    its header does not say (the job that reads it gives the one-line error)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            context = stream.codec_context
            return _expected_frames(stream, container.duration), int(context.height), int(context.width)
    except (av.FFmpegError, IndexError, OSError):
        return 0, 0, 0


def _expected_frames(stream: av.video.stream.VideoStream, container_duration: int | None) -> int:
    """Frame count from the header: mp4 stores it; Matroska stores only the duration (in µs)."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if container_duration and rate:
        return round(container_duration / av.time_base * float(rate))
    return 0


def _as_uint8_frames(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {array.dtype} {tuple(array.shape)}")
    if array.shape[0] == 0:
        raise ValueError("expected at least one frame")
    return np.ascontiguousarray(array)


def _resize(
    array: np.ndarray, height: int, width: int, interpolation: int = cv2.INTER_LANCZOS4
) -> np.ndarray:
    if array.shape[1:3] == (height, width):
        return array.copy()
    out = np.empty((array.shape[0], height, width, 3), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = cv2.resize(array[i], (width, height), interpolation=interpolation)

    # Frames on several threads (cv2 releases the GIL): 1.4x faster than cv2's own row split alone on 2
    # cores, the same bytes (each frame is the same call).
    workers = max(1, min(len(array), os.cpu_count() or 1, RESIZE_THREADS))
    with ThreadPoolExecutor(workers, thread_name_prefix="cosmos-t2-resize") as pool:
        list(pool.map(one, range(len(array))))
    return out
