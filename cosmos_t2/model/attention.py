"""The one attention function of the model, with a backend switch.

Layout is (B, L, heads, head_dim) in and out ("bshd", as the official network and all-to-all context
parallelism use it). Backends map onto PyTorch SDPA kernels:

- "auto": on CUDA, cuDNN first (fastest on Hopper: 90 ms vs 163 ms for flash at 84,480 tokens, see
  shared/reference/official.md), then flash, memory-efficient, math; on CPU, PyTorch's own choice.
- "cudnn", "flash", "efficient", "math": that kernel only (an error if it cannot run the inputs).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

AttentionBackend = Literal["auto", "cudnn", "flash", "efficient", "math"]

_KERNELS: dict[str, list[SDPBackend]] = {
    "auto": [
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ],
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend = "auto"
) -> torch.Tensor:
    """Softmax attention without mask: q (B, Lq, H, D), k and v (B, Lk, H, D) -> (B, Lq, H, D)."""
    if backend not in _KERNELS:
        raise ValueError(f"unknown attention backend {backend!r}; choose from {sorted(_KERNELS)}")
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # -> (B, H, L, D), views
    if backend == "auto" and q.device.type != "cuda":
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        with sdpa_kernel(_KERNELS[backend], set_priority=backend == "auto"):
            out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2)
