"""Fidelity scores: how closely a control rendered from an output matches the control it was made from.

Pure functions over arrays, used by each modality's `score` (edge.py, blur.py, depth.py) and by the report:
- edge F1: binary edge maps, a match within a small pixel tolerance;
- SSIM (Wang et al. 2004) for blur;
- scale-invariant RMSE (Eigen et al. 2014) for relative depth;
- mIoU of label maps (seg; the report does not score seg, see the registry).
"""

from __future__ import annotations

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
