"""Depth control: Depth Anything V2 per frame, aligned over the clip, rendered as the official depth video.

Upstream (`_compute_depth_maps` in cosmos_transfer2/_src/transfer2/inference/utils.py) runs
Video-Depth-Anything (ViT-S), whose temporal head keeps the relative depth of consecutive frames on one
scale. Its weights are not a transformers class, so we run the image model it is built on, Depth Anything V2
(`DepthAnythingForDepthEstimation`), on each frame and put every frame on the first frame's scale: each
frame's relative disparity gets the scale and shift that best match it to the previous aligned frame where
the two agree (`align_depth_sequence`). The rendering is upstream's: min-max over the whole clip to 0..255, truncated
to uint8 (their float-to-uint8 copy truncates), grey in three channels, white = near.

Upstream estimates depth on the source-resolution video and resizes the result (INTER_LINEAR) to the model
size; we estimate on the model-size frames, which the model resizes to its own input size (518 px) anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cosmos_t2.controls.fidelity import si_rmse
from cosmos_t2.controls.models import DepthModel, ModelPaths, autocast, load_depth_model


def estimate_depth(frames: np.ndarray, depth_model: DepthModel, batch_size: int = 16) -> torch.Tensor:
    """Relative disparity of each (T, H, W, 3) uint8 frame: (T, H, W) float32 on the model's device.

    Each frame's values have their own unknown scale and shift; `align_depth_sequence` fixes that.
    """
    _, height, width, _ = frames.shape
    out = []
    for start in range(0, len(frames), batch_size):
        batch = list(frames[start : start + batch_size])
        inputs = depth_model.processor(images=batch, return_tensors="pt")
        pixels = inputs["pixel_values"].to(depth_model.device)
        with torch.inference_mode(), autocast(depth_model.device):
            predicted = depth_model.model(pixel_values=pixels).predicted_depth  # (B, h, w)
        # Video-Depth-Anything returns to the frame size with bilinear, align_corners=True
        predicted = F.interpolate(
            predicted[:, None].float(), size=(height, width), mode="bilinear", align_corners=True
        )
        out.append(predicted[:, 0])
    return torch.cat(out)


def align_depth_sequence(
    depth: torch.Tensor | np.ndarray, keep: float = 0.8, iterations: int = 3
) -> torch.Tensor:
    """Put every frame of a (T, H, W) relative-depth sequence on frame 0's scale and shift.

    Frame t gets the (s, b) minimising ||s * d_t + b - aligned_{t-1}||² over the pixels that agree: after
    each fit the `1 - keep` share of pixels with the largest residuals (what moved or appeared) is left
    out and the fit repeated, so moving objects do not bias the scale. Least squares, and this trimming,
    commute with an affine change of the target, so the fit of d_t to the raw d_{t-1} composed with frame
    t-1's own transform is the same thing; each pair is fitted on its own.
    """
    d = torch.as_tensor(depth)
    scales, shifts = [1.0], [0.0]  # the transform taking raw frame t onto frame 0's scale
    for t in range(1, d.shape[0]):
        s, b = fit_scale_shift(d[t].double().flatten(), d[t - 1].double().flatten(), keep, iterations)
        scales.append(scales[-1] * s)
        shifts.append(scales[-2] * b + shifts[-1])
    dtype = d.dtype if d.is_floating_point() else torch.float32
    scale = torch.tensor(scales, dtype=dtype, device=d.device)[:, None, None]
    shift = torch.tensor(shifts, dtype=dtype, device=d.device)[:, None, None]
    return d.to(dtype) * scale + shift


def fit_scale_shift(
    x: torch.Tensor, y: torch.Tensor, keep: float = 0.8, iterations: int = 3, eps: float = 1e-12
) -> tuple[float, float]:
    """Trimmed least-squares (s, b) with s * x + b ≈ y; a non-positive s (nothing shared) falls back to
    matching the standard deviations."""
    inliers = torch.ones_like(x, dtype=torch.bool)
    s, b = 1.0, 0.0
    for _ in range(iterations):
        xi, yi = x[inliers], y[inliers]
        x_c, y_c = xi - xi.mean(), yi - yi.mean()
        var_x = float((x_c * x_c).mean())
        s = float((x_c * y_c).mean()) / var_x if var_x > eps else 1.0
        if s <= 0:
            s = float(yi.std() / xi.std()) if var_x > eps else 1.0
        b = float(yi.mean()) - s * float(xi.mean())
        residual = (s * x + b - y).abs()
        k = max(1, int(keep * residual.numel()))
        inliers = residual <= residual.kthvalue(k).values
    return s, b


def render_depth(depth: torch.Tensor | np.ndarray) -> np.ndarray:
    """(T, H, W) depth -> (T, H, W, 3) uint8: min-max over the clip to 0..255, truncated, grey."""
    d = torch.as_tensor(depth).float()
    normalised = (d - d.min()) / (d.max() - d.min() + 1e-8) * 255.0
    grey = normalised.clamp(0, 255).to(torch.uint8).cpu().numpy()  # .to(uint8) truncates, as upstream
    return np.repeat(grey[..., None], 3, axis=-1)


def depth_control(
    frames: np.ndarray, model_dir: Path, device: torch.device, batch_size: int = 16
) -> tuple[np.ndarray, dict[str, Any]]:
    """Depth control video of (T, H, W, 3) uint8 frames, and what produced it."""
    depth_model = load_depth_model(model_dir, device)
    raw = estimate_depth(frames, depth_model, batch_size=batch_size)
    aligned = align_depth_sequence(raw)
    info = {
        "model_dir": str(model_dir),
        "model_class": type(depth_model.model).__name__,
        "temporal_alignment": "trimmed least-squares scale/shift of each frame onto the previous aligned one",
        "normalisation": "min-max over the clip to 0..255, truncated to uint8",
        "batch_size": batch_size,
    }
    return render_depth(aligned), info


def compute(
    frames: np.ndarray, params: Mapping[str, Any], models: ModelPaths, device: torch.device
) -> tuple[np.ndarray, dict[str, Any]]:
    """The registry's entry point: the depth control of `frames` with the configured depth model."""
    batch_size = int(params.get("batch_size") or 16)
    return depth_control(frames, models.require("depth_model_dir"), device, batch_size=batch_size)


def score(rendered: np.ndarray, control: np.ndarray) -> float:
    """si-RMSE of the grey levels + 1 (so black pixels, the farthest, stay in)."""
    grey = lambda v: v[..., 0].astype(np.float64) + 1.0  # noqa: E731
    return si_rmse(grey(rendered), grey(control))
