"""Same bytes on any x86-64 CPU: pin what the numeric and video libraries would otherwise pick per machine.

Left alone, three choices follow the machine rather than the job, and each changes the bytes a job writes:
- **x264** (bundled in the `av` wheel, core 165) takes its thread count from the cores (1.5 x cores) and its
  asm level from the CPU; the bitstream depends on both. Its AVX-512 `mbtree_propagate_list` handles 8
  macroblocks per pass with no tail mask, so where width / 16 is not a multiple of 8 it reads past the row,
  on the last row into uninitialised heap, and the same frames encode differently from call to call
  (measured on an AVX-512 Xeon, 2026-12-06). `x264_params()` fixes both: 8 threads, asm up to SSE4.2.
  Every level from plain C to AVX2 gave the same bytes there; SSE2 alone did not, so SSE4.2 is the floor
  too, and a CPU without it (none since 2008) encodes with x264's own choice, recorded as such.
- **PyTorch's CPU kernels** (ATen's vectorised loops, MKL's GEMM, oneDNN's convolutions) dispatch on the SIMD
  level and the CPU vendor, and MKL splits GEMM reductions by thread count: a tiny job's latents moved by up
  to 1.7e-4 between 1 and 2 threads and between AVX-512 and AVX2. MKL's strict CNR mode (`AVX2,STRICT`)
  fixed the thread count's effect on an Intel Xeon but not on an AMD EPYC (2026-12-07: a 10x64 @ 64x16 GEMM
  differed between 1 and 2 threads), and MKL runs other kernels on AMD than on Intel. So
  `pin_cpu_numerics()` puts MKL on its `COMPATIBLE` path (the one Intel documents as giving the same results
  on Intel and other x86 CPUs) with one thread (GEMM then cannot depend on the thread count; ATen's and
  oneDNN's loops still use every core, and a tiny job ran no slower), and caps ATen and oneDNN at AVX2.
  Then 1 and 2 threads gave bit-identical latents. That path computes a GEMM's rows in blocks of 8 and the
  rest otherwise, so a row's bits depend on where it falls: on CPU the CFG pair runs as two batches of one
  (`job.diffuse`), as `--gpus 2` runs it, and a chunked MLP slices at multiples of 8 rows (`model.dit`). These pins cost a CPU-side GEMM of a GPU
  job (a text encoder that did not fit on the GPU) up to ~8x, so they are set only for a process that sees
  no NVIDIA GPU or is told `--device cpu`; there the CPU path is the job. They must be set before torch
  first computes anything: the CLI's entry point does it. A value the user set in the environment is kept
  (and recorded).
- swscale's RGB -> YUV conversion: its C path rounds differently from its SIMD paths (<= 2/255), but every
  x86 SIMD level agrees, so nothing to pin on x86-64.

`numerics_record()` is what the sidecar records of all this, so `cosmos-t2 reproduce` can say which part of
the environment differs when a rerun does. This module imports no torch: it runs before torch is loaded.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

X264_THREADS = 8  # fixed, so the bitstream does not follow the core count; as fast as auto at 720p
X264_ASM = "SSE4.2"  # the highest level below the broken AVX-512 path that every x86-64-v2 CPU has
# MKL on any x86-64 CPU: a vendor-independent code path, and one thread (STRICT CNR holds on Intel only).
MKL_PINS = {"MKL_CBWR": "COMPATIBLE", "MKL_NUM_THREADS": "1"}
# Where the CPU has AVX2 (x86-64-v3); below that the kernels run at the CPU's own level.
AVX2_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised CPU kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (CPU convolutions)
}
CPU_PINS = {**MKL_PINS, **AVX2_PINS}
# The CPU features that decide which code paths run, as /proc/cpuinfo names them.
RELEVANT_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "amx_tile",
)


def is_x86_64() -> bool:
    return platform.machine().lower() in {"x86_64", "amd64"}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags") and ":" in line:
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def sees_nvidia_gpu(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether this process could open an NVIDIA GPU (the driver lists one and CUDA_VISIBLE_DEVICES does not
    hide them all), without importing torch."""
    env = os.environ if environ is None else environ
    if env.get("CUDA_VISIBLE_DEVICES", "x").strip() in {"", "-1"}:
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def asks_for_cpu(argv: list[str]) -> bool:
    """`--device cpu` (or `--device=cpu`) among the command's arguments."""
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return any(a == "--device=cpu" or (a == "--device" and b == "cpu") for a, b in pairs)


def pin_cpu_numerics(
    environ: MutableMapping[str, str] | None = None, *, cpu_job: bool = True
) -> dict[str, str]:
    """Set CPU_PINS in `environ` (default: this process's) where the CPU can run them, the user set nothing
    and `cpu_job` (the process computes on the CPU); returns the pins in force afterwards."""
    env = os.environ if environ is None else environ
    if cpu_job and is_x86_64():
        pins = {**MKL_PINS, **(AVX2_PINS if "avx2" in cpu_flags() else {})}
        for key, value in pins.items():
            env.setdefault(key, value)
    return {key: env[key] for key in CPU_PINS if key in env}


def pin_for_command(argv: list[str]) -> dict[str, str]:
    """The CLI's pins: a CPU job is one told `--device cpu` or run where no NVIDIA GPU is visible."""
    return pin_cpu_numerics(cpu_job=asks_for_cpu(argv) or not sees_nvidia_gpu())


def x264_asm() -> str | None:
    """The asm level x264 is held to here, or None for its own choice (not x86-64, or no SSE4.2)."""
    return X264_ASM if is_x86_64() and "sse4_2" in cpu_flags() else None


def x264_params() -> str:
    """libx264's `x264-params` for every H.264 write: a fixed thread count, and the asm cap on x86-64."""
    asm = x264_asm()
    return f"threads={X264_THREADS}" + (f":asm={asm}" if asm else "")


def numerics_record() -> dict[str, object]:
    """What the CPU side of a job's bytes depends on (the sidecar's `environment.cpu`)."""
    flags = cpu_flags()
    return {
        "machine": platform.machine(),
        "flags": [f for f in RELEVANT_FLAGS if f in flags],
        "pins": {key: os.environ[key] for key in CPU_PINS if key in os.environ},
        "x264_params": x264_params(),
    }
