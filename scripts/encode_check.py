"""Does this machine's H.264 write give the project's bytes? `python scripts/encode_check.py [--time]`.

Encodes a moving colour gradient at 64x112 (width / 16 = 7, not a multiple of 8: the case x264's AVX-512
`mbtree_propagate_list` gets wrong) four times through `cosmos_t2.video.write_video` and prints one JSON line:
the four sha256 (equal when the pin holds), the x264 parameters in force and this CPU's flags. With --time it
also times a 1280x704, 93-frame write, pinned against x264's own thread count and asm level (best of 2).
tests/test_reproducible.py runs it in two processes; scripts/gpu_e2e.sh part 13 on the GPU host.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cosmos_t2.video as video
from cosmos_t2.reproducible import cpu_flags, pin_cpu_numerics, x264_params


def moving_gradient(frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8: three gradients sliding at different speeds (real motion, no noise to hide in)."""
    y, x = np.mgrid[0:height, 0:width]
    out = [
        np.stack([(x * 3 + i * 5) % 256, (y * 4 + i * 3) % 256, ((x + y) * 2 + i * 7) % 256], axis=-1)
        for i in range(frames)
    ]
    return np.stack(out).astype(np.uint8)


def encode_sha256(frames: np.ndarray, folder: Path) -> str:
    path = video.write_video(folder / "check.mp4", frames, 24.0)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def time_write(frames: np.ndarray, folder: Path) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        video.write_video(folder / "timed.mp4", frames, 24.0)
        best = min(best, time.perf_counter() - start)
    return round(best, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time", action="store_true", help="also time a 720p 93-frame write")
    args = parser.parse_args()
    pin_cpu_numerics()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gradient = moving_gradient(24, 64, 112)
        result: dict[str, object] = {
            "sha256": [encode_sha256(gradient, folder) for _ in range(4)],
            "x264_params": x264_params(),
            "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "sse4"))),
        }
        if args.time:
            frames = moving_gradient(93, 704, 1280)
            result["write_720p93_pinned_s"] = time_write(frames, folder)
            video.x264_params = lambda: "threads=0"  # type: ignore[assignment]  # x264's own choice
            result["write_720p93_auto_s"] = time_write(frames, folder)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
