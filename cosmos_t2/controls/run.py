"""The `controls` stage: compute every control of a spec that has no `control_path`, and write it.

For each such modality, in upstream's order: DIR/<modality>.mkv (lossless FFV1, what later stages read),
DIR/<modality>.mp4 (H.264 preview) and DIR/<modality>.json (the parameters and models used).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosmos_t2 import __version__
from cosmos_t2.atomic import atomic_outputs, write_json_atomic
from cosmos_t2.controls.compute import compute_control_with_info
from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.destination import check_destination, estimate_video_bytes
from cosmos_t2.model.device import resolve_device
from cosmos_t2.video import Video, read_at_model_resolution, read_video, write_video


def load_model_frames(
    spec: Any, out_dir: Path | None = None, input_path: Path | None = None, resolution: str | None = None
) -> Video:
    """The job's input at the model resolution: `input_path`, else DIR/input.mkv (from `decode`), else
    the spec's video decoded and resized here (to `resolution`, default the spec's)."""
    # input.json is decode's completion record: an input.mkv without it is from an interrupted decode
    decoded = out_dir is not None and all((Path(out_dir) / n).is_file() for n in ("input.mkv", "input.json"))
    if input_path is None and decoded:
        input_path = Path(out_dir) / "input.mkv"
    if input_path is not None:
        return read_video(input_path, max_frames=spec.max_frames)
    video, _ = read_at_model_resolution(
        spec.video_path, resolution or spec.resolution, max_frames=spec.max_frames
    )
    return video


# What a stage computes once DIR is checked: (spec, frames, DIR, models, device) -> stem -> DIR/<stem>.mkv.
StageCompute = Callable[[Any, Video, Path, ModelPaths | None, str | torch.device | None], dict[str, Path]]


def missing_control_stems(spec: Any) -> list[str]:
    """The `controls` stage's work: each modality of `spec` without `control_path`, in upstream's order."""
    return [m for m in MODALITIES if m in spec.controls and spec.controls[m].control_path is None]


def stage_for_job(
    spec: Any,
    out_dir: str | Path,
    stems: list[str],
    compute: StageCompute,
    *,
    input_path: Path | None = None,
    models: ModelPaths | None = None,
    device: str | torch.device | None = None,
    resolution: str | None = None,
) -> dict[str, Path]:
    """The `controls` and `masks` commands: load the job's model-size input, check that DIR can take
    every stem's outputs before any model is built, then `compute` (`compute_missing_controls` or
    `compute_masks`)."""
    frames = load_model_frames(spec, Path(out_dir), input_path, resolution)
    check_outputs(Path(out_dir), stems, frames)
    return compute(spec, frames, Path(out_dir), models, device)


def check_outputs(out_dir: Path, stems: list[str], frames: Video) -> None:
    """Before any model is built: DIR can take <stem>.mkv/.mp4/.json for every stem."""
    t, h, w = frames.num_frames, frames.height, frames.width
    per_stem = estimate_video_bytes(t, h, w, lossless=True) + estimate_video_bytes(t, h, w)
    names = [f"{stem}{suffix}" for stem in stems for suffix in (".mkv", ".mp4", ".json")]
    check_destination(out_dir, names, per_stem * len(stems))


def compute_missing_controls(
    spec: Any,
    frames: Video | np.ndarray | torch.Tensor,
    out_dir: str | Path,
    models: ModelPaths | None = None,
    device: str | torch.device | None = None,
    *,
    fps: float | None = None,
) -> dict[str, Path]:
    """Compute and write each control of `spec` without `control_path`; returns modality -> DIR/<m>.mkv.

    `frames` are the input at the model resolution: a Video (its fps is used) or (T, H, W, 3) uint8 with
    `fps` given (default 16, the model's rate).
    """
    if isinstance(frames, Video):
        fps = fps or frames.fps
        frames = frames.frames
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    fps = fps or 16.0
    out_dir = Path(out_dir)
    models = models or ModelPaths.from_env()
    device = resolve_device(device)
    written: dict[str, Path] = {}
    for modality in MODALITIES:
        block = spec.controls.get(modality)
        if block is None or block.control_path is not None:
            continue
        started = time.perf_counter()
        video, info = compute_control_with_info(modality, array, block, models, device)
        record = {
            "modality": modality,
            "name": spec.name,
            "source": str(spec.video_path),
            "num_frames": int(video.shape[0]),
            "height": int(video.shape[1]),
            "width": int(video.shape[2]),
            "fps": fps,
            "device": str(device),
            "seconds": round(time.perf_counter() - started, 3),
            "cosmos_t2_version": __version__,
            **info,
        }
        written[modality] = write_outputs(out_dir, modality, video, fps, record)
    return written


def write_outputs(out_dir: Path, stem: str, video: np.ndarray, fps: float, record: dict[str, Any]) -> Path:
    """DIR/<stem>.mkv (lossless), DIR/<stem>.mp4 (preview, when the sides are even) and DIR/<stem>.json,
    published together with the .json (the completion record) last."""
    lossless = out_dir / f"{stem}.mkv"
    record = {**record, "video": lossless.name, "preview": None}
    with atomic_outputs() as outputs:
        write_video(outputs.stage(lossless), video, fps, lossless=True)
        if video.shape[1] % 2 == 0 and video.shape[2] % 2 == 0:  # H.264 yuv420p needs even sides
            record["preview"] = f"{stem}.mp4"
            write_video(outputs.stage(out_dir / record["preview"]), video, fps)
        write_json_atomic(outputs.stage(out_dir / f"{stem}.json", record=True), record)
    return lossless
