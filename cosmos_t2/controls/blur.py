"""Vis (blur) control: the official bilateral blur with its presets.

Follows `AddControlInputBlur` and `Blur` (cosmos_transfer2/_src/transfer2/datasets/augmentors/control_input.py
and blur.py) at inference (`use_random=False`, default `bilateral_blur_config`):
1. shrink each frame by the preset's `blur_downsize` with INTER_AREA, run one `cv2.bilateralFilter(d=30,
   sigmaColor=150, sigmaSpace=100)`, grow it back with INTER_LINEAR;
2. resize to 1/`downup` of the size and back, both bicubic with antialias (torchvision's tensor resize:
   float interpolation, then clamp to 0..255 and round to uint8).
The Gaussian stage of `Blur` is only drawn at training time; inference uses the bilateral combination alone.
The presets are upstream's, odd as they look (low shrinks more before the bilateral than medium does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from cosmos_t2.controls.fidelity import ssim
from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.errors import CosmosError

MIN_DOWNUP, MAX_DOWNUP = 4, 16  # upstream's min_downup_factor / max_downup_factor


@dataclass(frozen=True)
class BlurParams:
    """What one preset does; recorded in the control's JSON."""

    blur_downsize: int  # frames shrink by this before the bilateral filter
    downup: int  # final bicubic down/up factor
    bilateral_d: int = 30
    bilateral_sigma_color: int = 150
    bilateral_sigma_space: int = 100
    bilateral_iterations: int = 1

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


BLUR_PRESETS: dict[str, BlurParams] = {
    "very_low": BlurParams(blur_downsize=1, downup=MIN_DOWNUP),
    "low": BlurParams(blur_downsize=4, downup=MIN_DOWNUP),
    "medium": BlurParams(blur_downsize=2, downup=(MIN_DOWNUP + MAX_DOWNUP) // 2),
    "high": BlurParams(blur_downsize=1, downup=MAX_DOWNUP),
    "very_high": BlurParams(blur_downsize=4, downup=MAX_DOWNUP),
}


def blur_params(preset: str) -> BlurParams:
    """The parameters of a preset_blur_strength value."""
    if preset not in BLUR_PRESETS:
        raise CosmosError(
            f"unknown preset {preset!r}; expected one of {', '.join(BLUR_PRESETS)}",
            key="vis.preset_blur_strength",
        )
    return BLUR_PRESETS[preset]


def blur_video(frames: np.ndarray, preset: str = "medium", *, workers: int | None = None) -> np.ndarray:
    """Vis control video of (T, H, W, 3) uint8 RGB frames: (T, H, W, 3) uint8.

    Frames go through OpenCV on `workers` threads (default: one per CPU): OpenCV releases the GIL, and each
    frame is computed alone by the same calls, so the result is the same bytes as one thread's."""
    params = blur_params(preset)
    _, height, width, _ = frames.shape
    small = (width // params.blur_downsize, height // params.blur_downsize)
    filtered = np.empty_like(frames)

    def one(i: int) -> None:
        image = cv2.resize(np.ascontiguousarray(frames[i]), small, interpolation=cv2.INTER_AREA)
        for _ in range(params.bilateral_iterations):
            image = cv2.bilateralFilter(
                image, params.bilateral_d, params.bilateral_sigma_color, params.bilateral_sigma_space
            )
        filtered[i] = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)

    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(frames) == 1:
        for i in range(len(frames)):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(frames))) as pool:
            list(pool.map(one, range(len(frames))))  # list(): re-raises a worker's exception
    return _bicubic_down_up(filtered, params.downup)


def _bicubic_down_up(frames: np.ndarray, factor: int) -> np.ndarray:
    """torchvision `resize(..., BICUBIC, antialias=True)` on a uint8 tensor, down by `factor` and back."""
    _, height, width, _ = frames.shape
    x = rearrange(torch.from_numpy(frames), "t h w c -> t c h w").float()
    for size in ((int(height / factor), int(width / factor)), (height, width)):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp(0, 255).round()  # each resize returns uint8 upstream
    return rearrange(x.to(torch.uint8), "t c h w -> t h w c").numpy()


def compute(
    frames: np.ndarray, params: Mapping[str, Any], _: ModelPaths, __: torch.device
) -> tuple[np.ndarray, dict[str, Any]]:
    """The registry's entry point: the vis control of `frames` and the preset's parameters."""
    preset = params.get("preset_blur_strength") or "medium"
    info = {"preset_blur_strength": preset, **blur_params(preset).to_dict()}
    return blur_video(frames, preset), info


def score(rendered: np.ndarray, control: np.ndarray) -> float:
    """SSIM of the output blurred with the control's preset against the control."""
    return ssim(rendered, control)
