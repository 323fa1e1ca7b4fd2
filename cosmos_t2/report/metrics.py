"""Control fidelity: how closely an output video follows the controls it was made from.

Each metric compares the output, put through the same extractor as the control, with the control:
- edge F1: Canny of the output vs the edge control, a match within a small pixel tolerance;
- blur SSIM: the output blurred with the control's preset vs the blur (vis) control;
- depth si-RMSE: scale-invariant RMSE (Eigen et al. 2014) of depth estimated on the output vs the
  depth control, where a depth model is configured;
- seg mIoU: mean intersection over union of label maps (a function only: scoring seg needs GroundingDINO
  and SAM2 on the output, which the report does not run).

The metric functions are pure functions over arrays; `control_fidelity` reads the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SSIM_SIGMA = 1.5  # Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03
SSIM_K1, SSIM_K2 = 0.01, 0.03


def edge_f1(pred: np.ndarray, target: np.ndarray, tolerance: int = 2) -> float:
    """F1 of binary edge maps (..., H, W): a predicted edge pixel is correct when a target edge lies
    within `tolerance` pixels (Chebyshev distance), and a target edge is found when a predicted one does.

    Canny moves an edge by a pixel or two under small changes in shading, so exact pixel agreement
    would measure noise; 1.0 when both maps are empty.
    """
    pred = np.asarray(pred).astype(bool)
    target = np.asarray(target).astype(bool)
    if pred.shape != target.shape:
        raise ValueError(f"edge maps differ in shape: {pred.shape} vs {target.shape}")
    n_pred, n_target = int(pred.sum()), int(target.sum())
    if n_pred == 0 and n_target == 0:
        return 1.0
    if n_pred == 0 or n_target == 0:
        return 0.0
    near_target = _dilate(target, tolerance)
    near_pred = _dilate(pred, tolerance)
    precision = float((pred & near_target).sum()) / n_pred
    recall = float((target & near_pred).sum()) / n_target
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    flat = mask.reshape(-1, *mask.shape[-2:]).astype(np.uint8)
    grown = np.stack([cv2.dilate(m, kernel) for m in flat]).astype(bool)
    return grown.reshape(mask.shape)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM with a Gaussian window over images or videos: (H, W), (H, W, C), (T, H, W, C).

    Channels and frames are scored separately and averaged; borders use reflection, so the mean
    covers every pixel.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[None, ..., None], b[None, ..., None]
    elif a.ndim == 3:
        a, b = a[None], b[None]
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    scores = []
    for fa, fb in zip(a, b, strict=True):
        for ch in range(fa.shape[-1]):
            x, y = fa[..., ch], fb[..., ch]
            mx, my = _gauss(x), _gauss(y)
            vx = _gauss(x * x) - mx * mx
            vy = _gauss(y * y) - my * my
            cxy = _gauss(x * y) - mx * my
            num = (2 * mx * my + c1) * (2 * cxy + c2)
            den = (mx * mx + my * my + c1) * (vx + vy + c2)
            scores.append(float(np.mean(num / den)))
    return float(np.mean(scores))


def _gauss(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (11, 11), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def si_rmse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None, eps: float = 1e-6) -> float:
    """Scale-invariant RMSE of log depth: sqrt(mean(d^2) - mean(d)^2), d = log pred - log target.

    Invariant to a global scale of either map (relative depth models have none); pixels where either
    depth is not positive, or `mask` is False, are left out.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"depth maps differ in shape: {pred.shape} vs {target.shape}")
    valid = (pred > eps) & (target > eps)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if not valid.any():
        raise ValueError("no pixel has positive depth in both maps")
    d = np.log(pred[valid]) - np.log(target[valid])
    return float(np.sqrt(max(np.mean(d * d) - np.mean(d) ** 2, 0.0)))


def miou(pred: np.ndarray, target: np.ndarray, ignore_index: int | None = None) -> float:
    """Mean IoU over the classes present in either integer label map (..., H, W)."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"label maps differ in shape: {pred.shape} vs {target.shape}")
    keep = np.ones(pred.shape, bool) if ignore_index is None else target != ignore_index
    classes = np.union1d(np.unique(pred[keep]), np.unique(target[keep]))
    if classes.size == 0:
        raise ValueError("no labelled pixel")
    ious = []
    for c in classes:
        p, t = (pred == c) & keep, (target == c) & keep
        ious.append((p & t).sum() / (p | t).sum())
    return float(np.mean(ious))


def labels_from_colors(frames: np.ndarray) -> np.ndarray:
    """Integer labels of a colour-coded segmentation video (..., H, W, 3): one label per distinct colour."""
    frames = np.asarray(frames)
    packed = frames[..., 0].astype(np.int64) << 16 | frames[..., 1].astype(np.int64) << 8 | frames[..., 2]
    _, labels = np.unique(packed, return_inverse=True)
    return labels.reshape(packed.shape)


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
    scored: edge F1, blur SSIM, and depth si-RMSE when `depth_model_dir` is given (si-RMSE of the grey levels
    + 1, so black pixels stay in). The output is resized to the control's size (the control is at model
    resolution; the output may be back at the input's) and frames are sampled evenly, at most `max_frames`.
    Modalities whose control is absent are left out.
    """
    from cosmos_t2.controls.compute import compute_control_with_info
    from cosmos_t2.controls.models import ModelPaths
    from cosmos_t2.video import read_video

    if controls_dir is None or not controls_dir.is_dir():
        return {}
    wanted = ["edge", "vis"] + (["depth"] if depth_model_dir is not None else [])
    present = [m for m in wanted if (controls_dir / f"{m}.mkv").is_file()]
    if not present:
        return {}
    output = read_video(video).frames.numpy()
    models = ModelPaths(depth_model_dir=depth_model_dir)
    scores: dict[str, float] = {}
    for modality in present:
        control = read_video(controls_dir / f"{modality}.mkv").frames.numpy()
        idx = sample_frames(min(len(output), len(control)), max_frames)
        out = resize_frames(output[idx], control.shape[1], control.shape[2])
        params = _control_record(controls_dir / f"{modality}.json")
        rendered, _ = compute_control_with_info(modality, out, params, models, device)
        if modality == "edge":
            scores["edge_f1"] = edge_f1(rendered[..., 0] > 0, control[idx][..., 0] > 127)
        elif modality == "vis":
            scores["blur_ssim"] = ssim(rendered, control[idx])
        else:
            grey = lambda v: v[..., 0].astype(np.float64) + 1.0  # noqa: E731
            scores["depth_si_rmse"] = si_rmse(grey(rendered), grey(control[idx]))
    return scores


def _control_record(path: Path) -> dict[str, Any]:
    """The parameters a control was made with (its JSON); {} (the spec defaults) when it can't be read."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
