"""Edge control: OpenCV Canny with the official threshold presets.

Follows `AddControlInputEdge` in cosmos_transfer2/_src/transfer2/datasets/augmentors/control_input.py at
inference (`use_random=False`): Canny runs on each RGB frame of the input video at the model resolution
(OpenCV takes the strongest gradient over the three channels), with default aperture 3 and L1 gradient, and
the single-channel map (0 or 255) is repeated into three channels. No blur or grey conversion comes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cosmos_t2.controls.fidelity import edge_f1
from cosmos_t2.errors import CosmosError

if TYPE_CHECKING:
    import torch

    from cosmos_t2.controls.models import ModelPaths

# preset -> (lower, upper) hysteresis thresholds.
EDGE_THRESHOLDS: dict[str, tuple[int, int]] = {
    "very_low": (20, 50),
    "low": (50, 100),
    "medium": (100, 200),
    "high": (200, 300),
    "very_high": (300, 400),
}


def edge_thresholds(preset: str) -> tuple[int, int]:
    """(lower, upper) Canny thresholds of a preset_edge_threshold value."""
    if preset not in EDGE_THRESHOLDS:
        raise CosmosError(
            f"unknown preset {preset!r}; expected one of {', '.join(EDGE_THRESHOLDS)}",
            key="edge.preset_edge_threshold",
        )
    return EDGE_THRESHOLDS[preset]


def canny_edges(frames: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Edge control video of (T, H, W, 3) uint8 RGB frames: (T, H, W, 3) uint8, 255 on edges."""
    lower, upper = edge_thresholds(preset)
    edges = np.stack([cv2.Canny(np.ascontiguousarray(frame), lower, upper) for frame in frames])
    return np.repeat(edges[..., None], 3, axis=-1)


def compute(
    frames: np.ndarray, params: Mapping[str, Any], _: ModelPaths, __: torch.device
) -> tuple[np.ndarray, dict[str, Any]]:
    """The registry's entry point: the edge control of `frames` and the thresholds it used."""
    preset = params.get("preset_edge_threshold") or "medium"
    lower, upper = edge_thresholds(preset)
    info = {"preset_edge_threshold": preset, "canny_lower": lower, "canny_upper": upper}
    return canny_edges(frames, preset), info


def score(rendered: np.ndarray, control: np.ndarray) -> float:
    """Edge F1 of the output's edges against the control (stored lossless, but thresholded to be safe)."""
    return edge_f1(rendered[..., 0] > 0, control[..., 0] > 127)
