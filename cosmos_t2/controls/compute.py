"""Control videos computed from the input video: edge, vis (blur), depth, seg.

One function per modality, each taking (T, H, W, 3) uint8 RGB frames at the model resolution and returning
a control video of the same shape plus a dict of what produced it. `compute_control` is the one entry point;
`compute_missing_controls` (run.py) does it for every control block of a spec without `control_path`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from cosmos_t2.controls.blur import blur_params, blur_video
from cosmos_t2.controls.depth import depth_control
from cosmos_t2.controls.edge import canny_edges, edge_thresholds
from cosmos_t2.controls.models import ModelPaths, resolve_device
from cosmos_t2.controls.seg import seg_control
from cosmos_t2.errors import CosmosError
from cosmos_t2.spec.job import MODALITIES

ControlOutput = tuple[np.ndarray, dict[str, Any]]  # (T, H, W, 3) uint8 video, what produced it
ControlFn = Callable[[np.ndarray, Mapping[str, Any], ModelPaths, torch.device], ControlOutput]


def _edge(frames: np.ndarray, params: Mapping[str, Any], _: ModelPaths, __: torch.device) -> ControlOutput:
    preset = params.get("preset_edge_threshold") or "medium"
    lower, upper = edge_thresholds(preset)
    info = {"preset_edge_threshold": preset, "canny_lower": lower, "canny_upper": upper}
    return canny_edges(frames, preset), info


def _vis(frames: np.ndarray, params: Mapping[str, Any], _: ModelPaths, __: torch.device) -> ControlOutput:
    preset = params.get("preset_blur_strength") or "medium"
    info = {"preset_blur_strength": preset, **blur_params(preset).to_dict()}
    return blur_video(frames, preset), info


def _depth(
    frames: np.ndarray, params: Mapping[str, Any], models: ModelPaths, device: torch.device
) -> ControlOutput:
    batch_size = int(params.get("batch_size") or 16)
    return depth_control(frames, models.require("depth_model_dir"), device, batch_size=batch_size)


def _seg(
    frames: np.ndarray, params: Mapping[str, Any], models: ModelPaths, device: torch.device
) -> ControlOutput:
    return seg_control(
        frames, params.get("control_prompt"), models, device, int(params.get("color_seed") or 0)
    )


_CONTROLS: dict[str, ControlFn] = {"edge": _edge, "vis": _vis, "depth": _depth, "seg": _seg}


def compute_control_with_info(
    modality: str,
    frames: np.ndarray | torch.Tensor,
    params: Mapping[str, Any] | Any | None = None,
    models: ModelPaths | None = None,
    device: str | torch.device | None = None,
) -> ControlOutput:
    """Like `compute_control`, also returning the parameters and models used (for the control's JSON)."""
    if modality not in _CONTROLS:
        raise CosmosError(f"unknown control modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or len(array) == 0:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {array.dtype} {tuple(array.shape)}")
    if params is not None and not isinstance(params, Mapping):
        params = params.to_dict()  # a spec ControlSpec
    return _CONTROLS[modality](array, params or {}, models or ModelPaths.from_env(), resolve_device(device))


def compute_control(
    modality: str,
    frames: np.ndarray | torch.Tensor,
    params: Mapping[str, Any] | Any | None = None,
    models: ModelPaths | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """The `modality` control video of (T, H, W, 3) uint8 RGB frames: (T, H, W, 3) uint8.

    `params` holds the block's keys (preset_edge_threshold, preset_blur_strength, control_prompt; a spec
    ControlSpec works too); `models` says where depth/seg models live (default: the environment);
    `device` None picks CUDA when present.
    """
    return compute_control_with_info(modality, frames, params, models, device)[0]
