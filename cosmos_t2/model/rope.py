"""3D rotary position embedding of the Cosmos DiT, as pure functions.

The head dimension is split into (t, h, w) parts: h and w get `head_dim // 6 * 2` channels each, t the rest.
Each axis has its own NTK-scaled base `theta * ratio ** (d / (d - 2))` (official `VideoRopePosition3DEmb` in
`cosmos_transfer2/_src/predict2/networks/minimal_v4_dit.py`). The table is laid out "rotate half" style: the
frequencies of (t, h, w) are concatenated and repeated twice, matching Transformer Engine's unfused
`apply_rotary_pos_emb` and diffusers' `apply_rotary_emb(use_real=True, use_real_unbind_dim=-2)`.

Tables cover the full token grid in (t h w) order, so a context-parallel split of the token sequence slices
them along their first axis the same way.
"""

from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of the head given to (t, h, w)."""
    dim_h = head_dim // 6 * 2
    return head_dim - 2 * dim_h, dim_h, dim_h


def _axis_freqs(dim: int, ratio: float, theta: float, device: torch.device | None) -> torch.Tensor:
    ntk_theta = theta * ratio ** (dim / (dim - 2))
    exponents = torch.arange(0, dim, 2, device=device, dtype=torch.float32)[: dim // 2] / dim
    return 1.0 / ntk_theta**exponents


def rope_table(
    grid: tuple[int, int, int],
    head_dim: int,
    scale: tuple[float, float, float] = (1.0, 3.0, 3.0),
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (T*H*W, head_dim) float32, for a token grid (T, H, W)."""
    device = torch.device(device) if device is not None else None
    dims = rope_axis_dims(head_dim)
    angles = []
    for axis, (size, dim, ratio) in enumerate(zip(grid, dims, scale, strict=True)):
        pos = torch.arange(size, device=device, dtype=torch.float32)
        ang = torch.outer(pos, _axis_freqs(dim, ratio, theta, device))  # (size, dim/2)
        shape = [1, 1, 1, dim // 2]
        shape[axis] = size
        angles.append(ang.view(shape).expand(*grid, dim // 2))
    half = torch.cat(angles, dim=-1).reshape(-1, head_dim // 2)  # (L, head_dim/2), (t h w) order
    freqs = torch.cat([half, half], dim=-1)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x: (B, L, heads, head_dim) by tables (L, head_dim); computed in fp32 (the official Wan fp32
    strategy) and returned in x's dtype."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    out = xf * cos[:, None, :] + rotated * sin[:, None, :]
    return out.to(x.dtype)
