"""How a job's network runs: the optimisations `infer` applies, resolved once at the edge.

On CUDA `infer` runs what `cosmos-t2 bench --compile` measures, so the speed the project reports is the speed a
job gets: every DiT block compiled (`model.compile.compile_blocks`, the default mode: max-autotune measured no
faster, docs/benchmarks.md), the `auto` attention kernel (FlashAttention-4 where installed on Hopper, else
cuDNN), inference mode (no autograd bookkeeping), cuDNN autotuning of the VAE's convolutions (`--no-deterministic`
only), and the CFG pair
batched with its shared first-block work (`cfg_halves`, always on in `job.run`). Each is exact: the same
math, summed in another order at most. Around the steps: the job's inputs (decode, controls, masks) are read
on a thread while the text encoder and the models load (`Background`). On CPU nothing changes unless asked
(`--compile`), so CPU runs keep their byte-identical outputs and their checks-before-models order.

Deterministic mode (the CUDA default, `DETERMINISTIC_DEFAULT`; always on for CPU): deterministic algorithms, no cuDNN autotuning
(cuDNN's own deterministic choice instead), inductor without on-device benchmarking of numerics-changing
choices, cuBLAS on a fixed workspace; the attention kernel is what `auto` resolves to for the installed
software (FA4 or cuDNN, both deterministic in the forward pass), recorded. Two processes on the same GPU kind
and software then write the same latents and mp4.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from cosmos_t2.errors import CosmosError
from cosmos_t2.model.attention import BACKENDS, attention_kernel
from cosmos_t2.model.compile import compile_blocks, default_compile_cache_dir, enable_compile_cache
from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.device import cuda_index

# Whether CUDA jobs are deterministic unless asked otherwise: chosen by its measured cost (docs/benchmarks.md,
# 2026-12-07, one H100: +0.3% per steady step at full size, +1.8 s on a 4-step distilled job).
DETERMINISTIC_DEFAULT = True
CUBLAS_WORKSPACE = ":4096:8"  # the setting PyTorch documents for deterministic cuBLAS
AUTOTUNED_COMPILE_MODES = ("max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Acceleration:
    """The resolved optimisations of a run (recorded in the sidecar as `acceleration`)."""

    compile: bool
    compile_mode: str | None  # torch.compile mode; None: its default
    attn_backend: str  # as asked: auto | fa4 | cudnn | flash | efficient | math
    inference_mode: bool
    cudnn_benchmark: bool
    compile_cache: Path | None  # inductor's on-disk cache; None: torch's own default (/tmp)
    prefetch_inputs: bool = False  # read inputs on a thread while models load
    deterministic: bool = False  # the same bits in every process on the same GPU kind and software

    def record(self, device: torch.device) -> dict[str, Any]:
        return {
            "compile": self.compile,
            "compile_mode": (self.compile_mode or "default") if self.compile else None,
            "attention_backend": self.attn_backend,
            "attention_kernel": attention_kernel(self.attn_backend, device),
            "inference_mode": self.inference_mode,
            "cudnn_benchmark": self.cudnn_benchmark,
            "compile_cache": str(self.compile_cache) if self.compile and self.compile_cache else None,
            "prefetch_inputs": self.prefetch_inputs,
            "deterministic": self.deterministic,
        }


def resolve_acceleration(
    device: str | torch.device,
    *,
    compile: bool | None = None,
    compile_mode: str | None = None,
    attn_backend: str = "auto",
    compile_cache: Path | None = None,
    use_compile_cache: bool = True,
    deterministic: bool | None = None,
) -> Acceleration:
    """`compile=None`: on for CUDA, off for CPU. `compile_cache=None`: `default_compile_cache_dir()`.
    `deterministic=None`: DETERMINISTIC_DEFAULT on CUDA, except with an autotuning compile mode (asking for one
    is asking for kernels timed in each process); CPU runs are always deterministic."""
    cuda = torch.device(device).type == "cuda"
    if attn_backend not in BACKENDS:
        raise CosmosError(
            f"unknown attention backend {attn_backend!r}; choose from {', '.join(BACKENDS)}",
            key="--attn-backend",
        )
    compiled = cuda if compile is None else compile
    autotuned = compile_mode in AUTOTUNED_COMPILE_MODES
    default = DETERMINISTIC_DEFAULT and not autotuned
    exact = not cuda or (default if deterministic is None else deterministic)
    if exact and cuda and autotuned:
        raise CosmosError(
            f"--compile-mode {compile_mode} times kernels in each process; --deterministic needs another mode",
            key="--compile-mode",
        )
    cache = (compile_cache or default_compile_cache_dir()) if use_compile_cache else None
    return Acceleration(
        compile=compiled,
        compile_mode=compile_mode,
        attn_backend=attn_backend,
        inference_mode=cuda,
        cudnn_benchmark=cuda and not exact,
        compile_cache=cache,
        prefetch_inputs=cuda,
        deterministic=exact,
    )


def prepare_process(acc: Acceleration) -> None:
    """What must happen before torch compiles or multiplies anything in this process (idempotent)."""
    if acc.deterministic:
        # cuBLAS reads it when its handle is made (a process's first matmul on the GPU): one fixed workspace
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    if acc.deterministic and acc.compile:  # importing inductor's config costs a second: only when it compiles
        import torch._inductor.config as inductor_config

        inductor_config.deterministic = True  # no on-device benchmarking of choices that change numerics
    if acc.compile and acc.compile_cache is not None:
        enable_compile_cache(acc.compile_cache)


def accelerate(net: TransferNet, acc: Acceleration) -> TransferNet:
    """Set the attention backend and compile the blocks of a freshly built network, in place."""
    prepare_process(acc)
    net.set_attention_backend(acc.attn_backend)  # type: ignore[arg-type]  # checked in resolve_acceleration
    if acc.compile:
        compile_blocks(net, mode=acc.compile_mode)
    return net


@contextmanager
def accelerated(acc: Acceleration) -> Iterator[None]:
    """The process-wide switches a run needs while it runs (restored after)."""
    was = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    # A deterministic job in a process that autotuned before (a server's earlier job) turns it off for itself.
    torch.backends.cudnn.benchmark = acc.cudnn_benchmark or (was[0] and not acc.deterministic)
    if acc.deterministic:
        torch.backends.cudnn.deterministic = True
        # warn_only: an op without a deterministic kernel warns (the job's warnings) rather than failing it
        _deterministic_kernels(True, warn_only=True, compiled=acc.compile)
    try:
        with torch.inference_mode(acc.inference_mode):
            yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = was[0], was[1]
        _deterministic_kernels(was[2], warn_only=was[3], compiled=acc.compile)


def _deterministic_kernels(mode: bool, *, warn_only: bool, compiled: bool) -> None:
    """torch.use_deterministic_algorithms for this job's kernels. Its public form also imports inductor's
    config to set a flag only compiled graphs read, ~2.5 s of a CPU process's start; an eager job sets the
    kernels' switch alone (the public call where a torch lacks it)."""
    set_kernels = getattr(torch._C, "_set_deterministic_algorithms", None)
    if compiled or set_kernels is None:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        set_kernels(mode, warn_only=warn_only)


T = TypeVar("T")


class Background(Generic[T]):
    """`fn()` on its own thread from now on; `result()` waits for it and re-raises what it raised. `device`: the
    CUDA device `fn` works on (the thread's current device), None for work that touches no GPU."""

    def __init__(self, fn: Callable[[], T], device: torch.device | None = None) -> None:
        self.seconds = 0.0  # the thread's own run time
        # A bare "cuda" is resolved here, on the caller's thread, whose current device is the job's.
        index = cuda_index(device) if device is not None and device.type == "cuda" else None

        def run() -> T:
            if index is not None:  # the current device is per thread: the job's, not device 0
                torch.cuda.set_device(index)
            start = time.perf_counter()
            try:
                return fn()
            finally:
                self.seconds = time.perf_counter() - start

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cosmos-t2-background")
        self._future = self._pool.submit(run)

    def result(self) -> T:
        try:
            return self._future.result()
        finally:
            self._pool.shutdown(wait=True)
