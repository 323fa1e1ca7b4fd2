"""GPU probes behind the performance choices in docs/benchmarks.md (run on the device machine).

Times, at the 720p/93-frame job's attention shape, SDPA with both CFG samples batched (B=2) against two B=1
calls, and one DiT block eager vs torch.compile'd, so each optimisation is measured in isolation.
"""

from __future__ import annotations

import statistics

import torch

from cosmos_t2.bench.timing import time_callable
from cosmos_t2.model.attention import attention


def main() -> None:
    dev = torch.device("cuda")
    tokens, heads, d = 84480, 16, 128
    q, k, v = (torch.randn(2, tokens, heads, d, device=dev, dtype=torch.bfloat16) for _ in range(3))
    rows = []
    for backend in ("cudnn", "flash"):
        b2 = statistics.median(time_callable(lambda b=backend: attention(q, k, v, b), dev, 2, 5))
        b1 = statistics.median(
            time_callable(
                lambda b=backend: [attention(q[i : i + 1], k[i : i + 1], v[i : i + 1], b) for i in range(2)],
                dev,
                2,
                5,
            )
        )
        rows.append((f"sdpa {backend} B=2", b2 * 1e3))
        rows.append((f"sdpa {backend} 2 x B=1", b1 * 1e3))
    qc, kc, vc = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    rows.append(
        (
            "sdpa cudnn B=2 bhsd-contiguous",
            statistics.median(time_callable(lambda: attention(qc, kc, vc, "cudnn"), dev, 2, 5)) * 1e3,
        )
    )
    for name, ms in rows:
        print(f"{name:40s} {ms:8.1f} ms")


if __name__ == "__main__":
    main()
