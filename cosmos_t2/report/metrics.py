"""Control fidelity: how closely an output video follows the controls it was made from.

Each modality with a metric in the registry (`cosmos_t2.controls.registry`) is scored by putting the output
through that modality's own control computation and comparing the result with the control, using the
modality's `score` (edge F1, blur SSIM, depth si-RMSE; the math is in `cosmos_t2.controls.fidelity`).
`control_fidelity` reads the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cosmos_t2.controls.compute import compute_control_with_info
from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.video import read_video


def sample_frames(count: int, limit: int) -> np.ndarray:
    """Indices of at most `limit` frames spread evenly over `count` (metrics on long videos stay cheap)."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, C) uint8 frames resized to (height, width); area filter when shrinking."""
    if frames.shape[1:3] == (height, width):
        return frames
    shrink = frames.shape[1] * frames.shape[2] > height * width
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def control_fidelity(
    video: Path,
    controls_dir: Path | None,
    max_frames: int = 16,
    *,
    depth_model_dir: Path | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Control fidelity of an output video against the controls in `controls_dir`.

    The output is rendered into each control by the controls stage's own code (`compute_control_with_info`)
    with the parameters recorded in the control's JSON (`cosmos-t2 controls` writes it beside the video), then
    scored by the modality's metric (registry column name -> score): edge F1, blur SSIM, and depth si-RMSE
    when `depth_model_dir` is given; a metric is scored only when the model folders its modality reads are
    given. The output is resized to the control's size (the control is at model resolution; the output may
    be back at the input's) and frames are sampled evenly, at most `max_frames`.
    Modalities whose control is absent are left out.
    """
    scored = _scored_modalities(controls_dir, depth_model_dir)
    if not scored:
        return {}
    return _score(read_video(video).frames.numpy(), scored, controls_dir, max_frames, depth_model_dir, device)


# The reference videos a report scores beside each output, at the output's settings (see reference_points).
REFERENCES = ("input", "unrelated", "noise")
NOISE_SEED = 0


def reference_points(
    input_video: Path,
    controls_dir: Path | None,
    max_frames: int = 16,
    *,
    depth_model_dir: Path | None = None,
    device: str = "cpu",
) -> dict[str, dict[str, float]]:
    """What each metric scores on reference videos, so an output's score can be read (reference -> scores):

    - "input" (the ceiling): the decoded input the controls were made from, i.e. a perfect copy of it;
    - "unrelated" (a floor): the same input turned 180 degrees and played backwards, a real video with the
      input's colours, sharpness and amount of edges that follows none of the control's structure;
    - "noise" (a floor): seeded uniform noise of the same size, what an output without any structure (the
      tiny random-weight model's) scores; edge F1 is high on noise because noise has edges everywhere.
    Each goes through the same control code, frame sampling and metric as an output (`control_fidelity`).
    """
    scored = _scored_modalities(controls_dir, depth_model_dir)
    if not scored or not input_video.is_file():
        return {}
    source = read_video(input_video).frames.numpy()
    videos = {
        "input": source,
        "unrelated": np.ascontiguousarray(source[::-1, ::-1, ::-1]),
        "noise": np.random.default_rng(NOISE_SEED).integers(0, 256, source.shape, dtype=np.uint8),
    }
    return {
        name: _score(frames, scored, controls_dir, max_frames, depth_model_dir, device)
        for name, frames in videos.items()
    }


def _scored_modalities(controls_dir: Path | None, depth_model_dir: Path | None) -> list[Any]:
    """The modalities with a metric whose control is in `controls_dir` and whose models are given."""
    if controls_dir is None or not controls_dir.is_dir():
        return []
    models = ModelPaths(depth_model_dir=depth_model_dir)
    return [
        m
        for m in MODALITIES.values()
        if m.metric is not None
        and all(getattr(models, f) is not None for f in m.model_fields)
        and (controls_dir / f"{m.name}.mkv").is_file()
    ]


def _score(
    frames: np.ndarray,
    scored: list[Any],
    controls_dir: Path,
    max_frames: int,
    depth_model_dir: Path | None,
    device: str,
) -> dict[str, float]:
    models = ModelPaths(depth_model_dir=depth_model_dir)
    scores: dict[str, float] = {}
    for modality in scored:
        control = read_video(controls_dir / f"{modality.name}.mkv").frames.numpy()
        idx = sample_frames(min(len(frames), len(control)), max_frames)
        out = resize_frames(frames[idx], control.shape[1], control.shape[2])
        params = _control_record(controls_dir / f"{modality.name}.json")
        rendered, _ = compute_control_with_info(modality.name, out, params, models, device)
        scores[str(modality.metric)] = modality.score(rendered, control[idx])
    return scores


def _control_record(path: Path) -> dict[str, Any]:
    """The parameters a control was made with (its JSON); {} (the spec defaults) when it can't be read."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
