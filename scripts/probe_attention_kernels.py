"""Attention kernels at the full job's shape, side by side (run on the device machine).

Compares PyTorch SDPA's cuDNN kernel with FlashAttention-4's CuTe-DSL Hopper kernel (`flash_attn.cute`, when
installed) at 84,480 tokens x 16 heads x d128, both CFG samples batched (B=2): output agreement, and time per
call with the kernels interleaved round by round so that clock and temperature drift hit both alike. Also
prints the SM clock and power the card reports during the sustained run (read-only `nvidia-smi` query).
"""

from __future__ import annotations

import statistics
import subprocess
import threading

import torch

from cosmos_t2.bench.timing import time_callable
from cosmos_t2.model.attention import attention


def _watch_clocks(samples: list[str], stop: threading.Event) -> None:
    query = ["nvidia-smi", "--query-gpu=clocks.sm,power.draw,temperature.gpu", "--format=csv,noheader"]
    while not stop.wait(0.5):
        samples.append(subprocess.run(query, capture_output=True, text=True).stdout.strip())


def main() -> None:
    dev = torch.device("cuda")
    batch, tokens, heads, d = 2, 84480, 16, 128
    q, k, v = (torch.randn(batch, tokens, heads, d, device=dev, dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * batch * tokens * tokens * heads * d
    kernels = {"cudnn": lambda: attention(q, k, v, "cudnn")}
    try:
        from flash_attn.cute import flash_attn_func

        kernels["fa4-sm90"] = lambda: flash_attn_func(q, k, v)[0]
    except ImportError as exc:
        print(f"flash_attn.cute not importable: {exc}")

    ref = attention(q, k, v, "math" if tokens < 4096 else "cudnn").float()
    for name, fn in kernels.items():
        out = fn().float()
        print(f"{name:10s} rel err vs cudnn {((out - ref).norm() / ref.norm()).item():.2e}")

    samples: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_clocks, args=(samples, stop), daemon=True)
    watcher.start()
    times: dict[str, list[float]] = {name: [] for name in kernels}
    for _ in range(4):
        for name, fn in kernels.items():
            times[name] += time_callable(fn, dev, 1, 5)
    stop.set()
    watcher.join()
    print(
        "clock MHz, power W, temp C during the timed rounds:",
        "; ".join(samples[:: max(1, len(samples) // 8)]),
    )
    print(f"{'kernel':10s} {'median ms':>10s} {'min ms':>8s} {'TFLOP/s':>8s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:10s} {med * 1e3:10.1f} {min(ts) * 1e3:8.1f} {flops / med / 1e12:8.0f}")


if __name__ == "__main__":
    main()
