"""Decode speed of the two FFmpeg-bundling options, on the clip size the model eats (93 frames, 1280x704).

Compared, both ending in a uint8 array (T, H, W, 3):
- PyAV (`av`): libavcodec in-process, frames converted to rgb24 by libswscale.
- ffmpeg-python driving the binary that imageio-ffmpeg ships: a subprocess that writes rawvideo rgb24 to a pipe.

The clip is an H.264 mp4 (yuv420p, crf 18) of moving textured content, written once by PyAV. The decoders
alternate for `--runs` rounds; the median wall time and CPU time (with children) of each are reported. Usage:

    .venv/bin/python scripts/bench_video_decode.py [--frames 93] [--height 704] [--width 1280] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, frames: int, height: int, width: int, fps: int = 16) -> None:
    """A clip with texture at several scales moving each frame, so the decoder has real work to do."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(
        0, 256, ((height + frames) // 8 + 1, (width + 2 * frames) // 8 + 1, 3), dtype=np.uint8
    )
    texture = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"crf": "18"}
        for t in range(frames):
            shifted = texture[t : t + height, 2 * t : 2 * t + width]
            stripes = ((np.sin((xx + 5 * t) / 9.0) + np.cos((yy - 3 * t) / 13.0)) * 40).astype(np.int16)
            image = np.clip(shifted.astype(np.int16) + stripes[..., None], 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def decode_pyav(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads, as video.read_video does
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def decode_ffmpeg_python(path: Path) -> np.ndarray:
    import ffmpeg  # ffmpeg-python; dev extra, only this script uses it
    import imageio_ffmpeg

    with av.open(str(path)) as container:  # probing through the same binary would add a second process
        stream = container.streams.video[0]
        height, width = stream.codec_context.height, stream.codec_context.width
    out, _ = (
        ffmpeg.input(str(path))
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
        .run(cmd=imageio_ffmpeg.get_ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    )
    return np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)


def time_runs(
    decoders: dict[str, Callable[[Path], np.ndarray]], path: Path, runs: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, np.ndarray]]:
    """Alternate the decoders run by run, so load from other processes hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in decoders}
    cpu: dict[str, list[float]] = {name: [] for name in decoders}
    frames: dict[str, np.ndarray] = {}
    for _ in range(runs):
        for name, fn in decoders.items():
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            frames[name] = fn(path)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_cpu_seconds() - cpu_start)
    return times, cpu, frames


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the ffmpeg binary): steadier than wall time
    on a machine shared with other work."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=93)
    parser.add_argument("--height", type=int, default=704)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.frames, args.height, args.width)
        decoders = {"pyav": decode_pyav, "ffmpeg-python+imageio-ffmpeg": decode_ffmpeg_python}
        for fn in decoders.values():
            fn(clip)  # warm the page cache and the dynamic loader
        times, cpu, decoded = time_runs(decoders, clip, args.runs)
        results = {
            name: {
                "median_s": round(statistics.median(t), 4),
                "median_cpu_s": round(statistics.median(cpu[name]), 4),
                "runs_s": [round(x, 4) for x in t],
            }
            for name, t in times.items()
        }
        a, b = decoded.values()
        assert a.shape == b.shape == (args.frames, args.height, args.width, 3), (a.shape, b.shape)
        report = {
            "clip": f"{args.frames} frames {args.width}x{args.height} H.264 yuv420p crf 18",
            "clip_bytes": clip.stat().st_size,
            "cpu_cores": os.cpu_count(),
            "machine": platform.machine(),
            "pyav": av.__version__,
            "max_abs_diff_between_decoders": int(np.abs(a.astype(np.int16) - b).max()),
            "results": results,
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
