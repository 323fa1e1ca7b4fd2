"""Does `sdpa_kernel(..., set_priority=True)` change which kernel later, unrelated SDPA calls get?

Times PyTorch's default SDPA choice at the job's attention shape (B=1) before and after one call inside
`sdpa_kernel([cuDNN, flash, efficient, math], set_priority=True)`, and prints the priority order each time
(run on the device machine). A process that benchmarks a peer library after our own model must not hand it a
different kernel than it would pick on its own.
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from cosmos_t2.bench.timing import time_callable


def main() -> None:
    dev = torch.device("cuda")
    q, k, v = (torch.randn(1, 16, 84480, 128, device=dev, dtype=torch.bfloat16) for _ in range(3))

    def default_ms() -> float:
        return (
            statistics.median(time_callable(lambda: F.scaled_dot_product_attention(q, k, v), dev, 1, 3)) * 1e3
        )

    print(f"before: order {torch._C._get_sdp_priority_order()}, default SDPA {default_ms():.1f} ms")
    order = [
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ]
    with sdpa_kernel(order, set_priority=True):
        F.scaled_dot_product_attention(q, k, v)
    print(f"after:  order {torch._C._get_sdp_priority_order()}, default SDPA {default_ms():.1f} ms")


if __name__ == "__main__":
    main()
