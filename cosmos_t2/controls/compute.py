"""Control videos computed from the input video, one modality at a time.

Each modality's compute module (named by its registry entry) takes (T, H, W, 3) uint8 RGB frames at the
model resolution and returns a control video of the same shape plus a dict of what produced it.
`compute_control` is the one entry point; `compute_missing_controls` (run.py) does it for every control
block of a spec without `control_path`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.device import resolve_device

ControlOutput = tuple[np.ndarray, dict[str, Any]]  # (T, H, W, 3) uint8 video, what produced it


def compute_control_with_info(
    modality: str,
    frames: np.ndarray | torch.Tensor,
    params: Mapping[str, Any] | Any | None = None,
    models: ModelPaths | None = None,
    device: str | torch.device | None = None,
) -> ControlOutput:
    """Like `compute_control`, also returning the parameters and models used (for the control's JSON)."""
    if modality not in MODALITIES:
        raise CosmosError(f"unknown control modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or len(array) == 0:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {array.dtype} {tuple(array.shape)}")
    if params is not None and not isinstance(params, Mapping):
        params = params.to_dict()  # a spec ControlSpec
    return MODALITIES[modality].compute(
        array, params or {}, models or ModelPaths.from_env(), resolve_device(device)
    )


def compute_control(
    modality: str,
    frames: np.ndarray | torch.Tensor,
    params: Mapping[str, Any] | Any | None = None,
    models: ModelPaths | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """The `modality` control video of (T, H, W, 3) uint8 RGB frames: (T, H, W, 3) uint8.

    `params` holds the block's keys (its modality's spec keys, e.g. preset_edge_threshold; a spec
    ControlSpec works too); `models` says where depth/seg models live (default: the environment);
    `device` None picks CUDA when present.
    """
    return compute_control_with_info(modality, frames, params, models, device)[0]
