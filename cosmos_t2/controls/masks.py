"""Spatiotemporal control masks: where (and when) a control applies. True / white = the control applies.

Three sources, per control block:
- `mask_path` to a video: resized to the model size with INTER_LINEAR and binarised as channel 0 > 127.5,
  as upstream's `read_and_process_control_input` (cosmos_transfer2/_src/transfer2/inference/utils.py) does;
- `mask_path` to a .json of shapes (ours): boxes and polygons, static or keyframed, rasterised per frame
  (`masks_from_shapes`), so a mask needs no drawn video;
- `mask_prompt`: the union of the objects GroundingDINO + SAM2 find for the prompt (controls/seg.py), as
  upstream's `generate_control_weight_mask_from_prompt`; nothing found means no mask (upstream warns too).
With both keys, `mask_path` wins, as upstream.

`mask_to_latent_grid` is how the model sees a mask: upstream's `resize_control_weight`
(transfer2/models/vid2vid_model_control_vace_rectified_flow.py) resizes the pixel-frame weight map
(mask × control_weight) trilinearly: frame 0 alone to latent frame 0, frames 1.. to the other latent frames.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cosmos_t2 import __version__
from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.controls.run import write_outputs
from cosmos_t2.controls.seg import segment_video
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.config import TEMPORAL_COMPRESSION
from cosmos_t2.model.control import resample_frames_to_grid
from cosmos_t2.model.device import resolve_device
from cosmos_t2.video import Video, read_video

log = logging.getLogger(__name__)

MASK_THRESHOLD = 127.5  # upstream: (mask[:1] > 127.5) on the uint8 frames


def binarize_mask_frames(frames: np.ndarray | torch.Tensor, height: int, width: int) -> np.ndarray:
    """(T, H', W', 3) or (T, H', W') uint8 mask frames -> (T, height, width) bool, as upstream."""
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    out = np.empty((array.shape[0], height, width), dtype=bool)
    for i, frame in enumerate(array):
        if frame.shape[:2] != (height, width):
            frame = cv2.resize(np.ascontiguousarray(frame), (width, height), interpolation=cv2.INTER_LINEAR)
        out[i] = (frame[..., 0] if frame.ndim == 3 else frame) > MASK_THRESHOLD
    return out


def load_mask(path: str | Path, height: int, width: int, num_frames: int | None = None) -> np.ndarray:
    """A mask video, or a .json of shapes, as (T, height, width) bool; with `num_frames`, exactly that many.

    A video shorter than `num_frames` is an error; a longer one is cut. Shapes need `num_frames`.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        if num_frames is None:
            raise ValueError("a shapes mask needs num_frames")
        return masks_from_shapes(path, num_frames, height, width)
    video = read_video(path)
    if num_frames is not None:
        if video.num_frames < num_frames:
            raise CosmosError(f"mask has {video.num_frames} frames but the input has {num_frames}", file=path)
        video = Video(frames=video.frames[:num_frames], fps=video.fps)
    return binarize_mask_frames(video.frames, height, width)


def mask_to_latent_grid(
    mask: np.ndarray | torch.Tensor,
    latent_t: int,
    latent_h: int,
    latent_w: int,
    temporal_compression: int = TEMPORAL_COMPRESSION,
) -> torch.Tensor:
    """(T, H, W) bool/float mask -> (latent_t, latent_h, latent_w) float32 in [0, 1], as upstream.

    T must be temporal_compression * (latent_t - 1) + 1 (93 frames -> 24 latent frames). Frame 0 maps to
    latent frame 0 alone; frames 1..T-1 are resized trilinearly (align_corners=False) to latent_t - 1
    frames. Upstream resizes to the DiT's token grid (latent size / patch 2); pass that size for parity.
    The resize is linear, so resampling the mask and then multiplying by control_weight is the same as
    upstream's resampling of mask × weight.
    """
    m = torch.as_tensor(mask).float()
    if m.ndim != 3:
        raise ValueError(f"expected a (T, H, W) mask, got shape {tuple(m.shape)}")
    frames = m.shape[0]
    if frames != temporal_compression * (latent_t - 1) + 1:
        raise ValueError(
            f"a {frames}-frame mask does not map onto {latent_t} latent frames "
            f"(needs {temporal_compression * (latent_t - 1) + 1})"
        )
    return resample_frames_to_grid(m[None, None], (latent_t, latent_h, latent_w))[0, 0]


# ---- shapes ---------------------------------------------------------------------------------------------


def masks_from_shapes(
    shapes_json: str | Path | dict[str, Any] | list[Any], num_frames: int, height: int, width: int
) -> np.ndarray:
    """Rasterise a shapes description to a (num_frames, height, width) bool mask (the union of shapes).

    Format (a dict, a path to a .json file, or a JSON string):
        {"width": 1920, "height": 1080,       # optional: the coordinates' frame size (default: height/width
                                              #   here); or "normalized": true for 0..1 coordinates
         "shapes": [
           {"box": [x0, y0, x1, y1]},                                  # every frame
           {"polygon": [[x, y], ...], "frames": [10, 40]},             # frames 10..40 (inclusive)
           {"keyframes": [{"frame": 0, "box": [...]}, {"frame": 10, "box": [...]}]}
         ]}
    A keyframed shape exists from its first to its last keyframe, its coordinates interpolated linearly
    in between (polygons need the same number of points in every keyframe); a keyframe on every frame is
    a per-frame shape. A pixel belongs to a shape when its centre lies inside it.
    """
    data, where = _read_shapes(shapes_json)
    if isinstance(data, list):
        data = {"shapes": data}
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise CosmosError("expected an object with a 'shapes' list", file=where)
    if data.get("normalized"):
        scale_x, scale_y = float(width), float(height)
    else:
        scale_x = width / _positive(data.get("width", width), where, "width")
        scale_y = height / _positive(data.get("height", height), where, "height")
    mask = np.zeros((num_frames, height, width), dtype=bool)
    for index, shape in enumerate(data["shapes"]):
        key = f"shapes[{index}]"
        covered = False
        for frame, kind, points in _shape_frames(shape, num_frames, where, key):
            points = points * np.array([scale_x, scale_y])
            if not np.isfinite(points).all():
                raise CosmosError("coordinates too large for this frame size", file=where, key=key)
            plane = np.zeros((height, width), dtype=bool)
            _rasterize(plane, kind, points)
            mask[frame] |= plane
            covered = covered or bool(plane.any())
        if not covered:  # pixel coordinates under "normalized": true, or the frame size mistaken
            raise CosmosError(
                f"the shape covers no pixel of the {width}x{height} frame on any of its frames",
                file=where,
                key=key,
            )
    return mask


def _read_shapes(shapes_json: str | Path | dict[str, Any] | list[Any]) -> tuple[Any, str | None]:
    if isinstance(shapes_json, dict | list):
        return shapes_json, None
    text = str(shapes_json)
    if isinstance(shapes_json, Path) or not text.lstrip().startswith(("{", "[")):
        path = Path(shapes_json)
        try:
            return json.loads(path.read_text()), str(path)
        except FileNotFoundError as exc:
            raise CosmosError("shapes file not found", file=path) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CosmosError(f"not valid JSON ({exc})", file=path) from exc
        except RecursionError:
            raise CosmosError("JSON nested too deeply to be shapes", file=path) from None
        except OSError as exc:
            raise CosmosError(f"cannot read the shapes file: {exc.strerror}", file=path) from exc
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        raise CosmosError(f"shapes are not valid JSON ({exc})") from exc
    except RecursionError:
        raise CosmosError("shapes JSON is nested too deeply") from None


def _positive(value: Any, where: str | None, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise CosmosError(f"expected a positive number, got {value!r}", file=where, key=key)
    return float(value)


def _geometry(entry: dict[str, Any], where: str | None, key: str) -> tuple[str, np.ndarray]:
    """('box' | 'polygon', (K, 2) float points) of an entry holding either key."""
    kinds = [k for k in ("box", "polygon") if k in entry]
    if len(kinds) != 1:
        raise CosmosError("expected exactly one of 'box' or 'polygon'", file=where, key=key)
    kind = kinds[0]
    values = entry[kind]
    rows = values if isinstance(values, list) else [values]
    if any(isinstance(v, bool) for row in rows for v in (row if isinstance(row, list) else [row])):
        raise CosmosError(f"expected numbers, got {_short(values)}", file=where, key=f"{key}.{kind}")
    try:
        points = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CosmosError(
            f"expected numbers, got {_short(entry[kind])}", file=where, key=f"{key}.{kind}"
        ) from exc
    if points.dtype.kind != "f" or not np.isfinite(points).all():
        raise CosmosError(
            f"expected finite numbers, got {_short(entry[kind])}", file=where, key=f"{key}.{kind}"
        )
    if kind == "box" and points.shape == (4,):
        x0, y0, x1, y1 = points
        if x1 < x0 or y1 < y0:
            raise CosmosError(
                "a box is [x0, y0, x1, y1] with x0 <= x1, y0 <= y1", file=where, key=f"{key}.box"
            )
        return kind, points.reshape(2, 2)
    if kind == "polygon" and points.ndim == 2 and points.shape[1] == 2 and len(points) >= 3:
        return kind, points
    expected = "[x0, y0, x1, y1]" if kind == "box" else "[[x, y], ...] with at least 3 points"
    raise CosmosError(f"expected {expected}", file=where, key=f"{key}.{kind}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _frame_index(value: Any, num_frames: int, where: str | None, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_frames:
        raise CosmosError(
            f"expected a frame index in 0..{num_frames - 1}, got {value!r}", file=where, key=key
        )
    return value


def _shape_frames(
    shape: Any, num_frames: int, where: str | None, key: str
) -> list[tuple[int, str, np.ndarray]]:
    """(frame, kind, points) for every frame a shape covers."""
    if not isinstance(shape, dict):
        raise CosmosError(f"expected an object, got {_short(shape)}", file=where, key=key)
    if "keyframes" not in shape:
        kind, points = _geometry(shape, where, key)
        first, last = 0, num_frames - 1
        if "frames" in shape:
            span = shape["frames"]
            if not isinstance(span, list) or len(span) != 2:
                raise CosmosError("expected [first, last]", file=where, key=f"{key}.frames")
            first = _frame_index(span[0], num_frames, where, f"{key}.frames[0]")
            last = _frame_index(span[1], num_frames, where, f"{key}.frames[1]")
        return [(frame, kind, points) for frame in range(first, last + 1)]
    keys = shape["keyframes"]
    if not isinstance(keys, list) or not keys:
        raise CosmosError("expected a non-empty list of keyframes", file=where, key=f"{key}.keyframes")
    keyframes: list[tuple[int, str, np.ndarray]] = []
    for i, entry in enumerate(keys):
        entry_key = f"{key}.keyframes[{i}]"
        if not isinstance(entry, dict):
            raise CosmosError(f"expected an object, got {_short(entry)}", file=where, key=entry_key)
        frame = _frame_index(entry.get("frame"), num_frames, where, f"{entry_key}.frame")
        keyframes.append((frame, *_geometry(entry, where, entry_key)))
    keyframes.sort(key=lambda item: item[0])
    first_kind, first_points = keyframes[0][1], keyframes[0][2]
    frames = [frame for frame, _, _ in keyframes]
    if len(set(frames)) != len(frames):
        raise CosmosError("two keyframes on one frame", file=where, key=f"{key}.keyframes")
    for frame, kind, points in keyframes:
        if kind != first_kind or points.shape != first_points.shape:
            raise CosmosError(
                f"keyframe at frame {frame} differs in kind or number of points from the first one",
                file=where,
                key=f"{key}.keyframes",
            )
    out = [keyframes[0]]
    for (f0, kind, p0), (f1, _, p1) in itertools.pairwise(keyframes):
        for frame in range(f0 + 1, f1 + 1):
            alpha = (frame - f0) / (f1 - f0)
            out.append((frame, kind, p0 + alpha * (p1 - p0)))
    return out


def _rasterize(plane: np.ndarray, kind: str, points: np.ndarray) -> None:
    """OR one shape into a (H, W) bool plane; pixel (row, col) has its centre at (col + 0.5, row + 0.5)."""
    height, width = plane.shape
    if kind == "box":
        (x0, y0), (x1, y1) = points
        cols = slice(max(0, math.ceil(x0 - 0.5)), min(width, math.ceil(x1 - 0.5)))
        rows = slice(max(0, math.ceil(y0 - 0.5)), min(height, math.ceil(y1 - 0.5)))
        plane[rows, cols] = True
        return
    # even-odd rule on pixel centres, within the polygon's bounding box
    (x_min, y_min), (x_max, y_max) = points.min(axis=0), points.max(axis=0)
    c0, c1 = max(0, math.floor(x_min)), min(width, math.ceil(x_max))
    r0, r1 = max(0, math.floor(y_min)), min(height, math.ceil(y_max))
    if c0 >= c1 or r0 >= r1:
        return
    cx, cy = np.meshgrid(np.arange(c0, c1) + 0.5, np.arange(r0, r1) + 0.5)
    inside = np.zeros(cx.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0), strict=True):
        crosses = (y0 > cy) != (y1 > cy)  # never true for a horizontal edge, so no division by zero
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (cy - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (cx < x_cross)
    plane[r0:r1, c0:c1] |= inside


# ---- the masks stage ------------------------------------------------------------------------------------


def mask_from_prompt(
    frames: np.ndarray, prompt: str, models: ModelPaths, device: str | torch.device | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """(T, H, W) bool union of the objects `prompt` names (all True when none is found), and details."""
    masks, detections = segment_video(frames, prompt, models, resolve_device(device))
    info: dict[str, Any] = {"detections": [d.to_dict() for d in detections]}
    if not detections:
        log.warning("no object found for mask_prompt %r; the control applies everywhere", prompt)
        info["note"] = "nothing found for the prompt: no mask (control applies everywhere), as upstream"
        return np.ones(frames.shape[:3], dtype=bool), info
    return masks.any(axis=0), info


def compute_masks(
    spec: Any,
    frames: Video,
    out_dir: str | Path,
    models: ModelPaths | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Path]:
    """Write DIR/<modality>_mask.mkv (+ .mp4 preview, .json) for every control of `spec` with a mask.

    `frames` is the job's input at the model resolution (it fixes the size and frame count; mask_prompt
    segments it). Returns modality -> the lossless mask video (white = the control applies).
    """
    out_dir = Path(out_dir)
    num_frames, height, width = frames.num_frames, frames.height, frames.width
    written: dict[str, Path] = {}
    for modality, block in spec.controls.items():
        if block.mask_path is None and not block.mask_prompt:
            continue
        started = time.perf_counter()
        record: dict[str, Any] = {"modality": modality, "name": spec.name}
        if block.mask_path is not None:
            if block.mask_prompt:
                log.warning("%s: both mask_path and mask_prompt given; using mask_path", modality)
            is_shapes = Path(block.mask_path).suffix.lower() == ".json"
            mask = load_mask(block.mask_path, height, width, num_frames)
            record.update(kind="shapes" if is_shapes else "video", mask_path=str(block.mask_path))
        else:
            if not block.mask_prompt.strip():
                raise CosmosError("mask_prompt is empty", key=f"{modality}.mask_prompt")
            array = frames.frames.numpy()
            mask, info = mask_from_prompt(array, block.mask_prompt, models or ModelPaths.from_env(), device)
            record.update(kind="prompt", mask_prompt=block.mask_prompt, **info)
        record.update(
            num_frames=num_frames,
            height=height,
            width=width,
            fps=frames.fps,
            coverage=round(float(mask.mean()), 6),
            threshold=MASK_THRESHOLD,
            seconds=round(time.perf_counter() - started, 3),
            cosmos_t2_version=__version__,
        )
        video = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=-1)
        written[modality] = write_outputs(out_dir, f"{modality}_mask", video, frames.fps, record)
    return written


def mask_stems(spec: Any) -> list[str]:
    """The `masks` stage's work: <modality>_mask for each control with mask_path or mask_prompt."""
    return [f"{m}_mask" for m, b in spec.controls.items() if b.mask_path is not None or b.mask_prompt]
