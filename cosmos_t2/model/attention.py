"""The one attention function of the model, with a backend switch.

Layout is (B, L, heads, head_dim) in and out ("bshd", as the official network and all-to-all context
parallelism use it). Backends:

- "auto": on a Hopper GPU with FlashAttention-4 installed (`pip install 'cosmos-t2[fa4]'`), its CuTe-DSL SM90
  kernel (7% faster than cuDNN at the 720p job's 84,480 tokens, docs/benchmarks.md); otherwise cuDNN where it
  takes the inputs (1.5x faster than flash on Hopper); else, and on CPU, PyTorch's own choice.
- "fa4": FlashAttention-4 only (an error if it is not installed or the GPU is not Hopper).
- "cudnn", "flash", "efficient", "math": that PyTorch SDPA kernel only (an error if it cannot run the inputs).
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

AttentionBackend = Literal["auto", "fa4", "cudnn", "flash", "efficient", "math"]
BACKENDS: tuple[str, ...] = ("auto", "fa4", "cudnn", "flash", "efficient", "math")

_KERNELS: dict[str, list[SDPBackend]] = {
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}


@functools.cache
def fa4_unavailable_reason() -> str | None:
    """Why FlashAttention-4's Hopper kernel can't run here, or None when it can."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    if torch.cuda.get_device_capability()[0] != 9:
        return f"its SM90 kernel needs a Hopper GPU, found {torch.cuda.get_device_name()}"
    try:
        import flash_attn.cute  # noqa: F401
    except ImportError as exc:
        return f"flash_attn.cute is not importable ({exc}); install cosmos-t2[fa4]"
    return None


# An opaque op for torch.compile: dynamo must not trace into the CuTe DSL's Python.
@torch.library.custom_op("cosmos_t2::flash_attention_cute", mutates_args=())
def _flash_attention_cute(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from flash_attn.cute import flash_attn_func

    return flash_attn_func(q, k, v)[0]


@_flash_attention_cute.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


def _fa4_ready() -> bool:
    # Evaluated once at trace time inside compiled blocks, not traced: compile_blocks marks it so
    # (`mark_trace_constants`), which keeps torch._dynamo's ~2 s import out of eager processes.
    return fa4_unavailable_reason() is None


def mark_trace_constants() -> None:
    """Tell torch.compile that the kernel checks called inside the blocks give one answer per process."""
    torch.compiler.assume_constant_result(_fa4_ready)


def _fa4_shape_ok(q: torch.Tensor, v: torch.Tensor) -> bool:
    # The SM90 kernel takes head dims 8..256 in multiples of 16 bytes, and half-precision inputs.
    d = q.shape[-1]
    return q.dtype in (torch.bfloat16, torch.float16) and 8 <= d <= 256 and d % 8 == 0 and v.shape[-1] == d


def _cudnn_applies(q: torch.Tensor, v: torch.Tensor) -> bool:
    d = q.shape[-1]
    return (
        q.is_cuda
        and q.dtype in (torch.bfloat16, torch.float16)
        and d <= 128
        and d % 8 == 0
        and v.shape[-1] == d
    )


def _fa4_applies(q: torch.Tensor, v: torch.Tensor) -> bool:
    return q.is_cuda and _fa4_shape_ok(q, v) and _fa4_ready()


def attention_kernel(backend: str, device: torch.device) -> str:
    """The kernel `backend` runs the full network's attention (bf16, head dim 128) with on `device`."""
    if backend != "auto":
        return backend
    if device.type != "cuda":
        return "sdpa (PyTorch's choice)"
    return "fa4" if fa4_unavailable_reason() is None else "cudnn"


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: AttentionBackend = "auto"
) -> torch.Tensor:
    """Softmax attention without mask: q (B, Lq, H, D), k and v (B, Lk, H, D) -> (B, Lq, H, D)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose from {sorted(BACKENDS)}")
    if backend == "fa4" or (backend == "auto" and _fa4_applies(q, v)):
        if not _fa4_ready():
            raise RuntimeError(f"attention backend 'fa4' can't run: {fa4_unavailable_reason()}")
        if not _fa4_shape_ok(q, v):
            raise RuntimeError(
                f"attention backend 'fa4' can't run {q.dtype} with head dims {q.shape[-1]}/{v.shape[-1]}: "
                "it needs bf16/fp16 and equal head dims, multiples of 8 up to 256"
            )
        return _flash_attention_cute(q, k, v)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # -> (B, H, L, D), views
    kernel: str | None = backend
    if backend == "auto":
        # cuDNN by name where it takes the inputs, else PyTorch's own choice. No `set_priority`: PyTorch does not
        # restore its priority order exactly, and the change would leak into other code in the process.
        kernel = "cudnn" if _cudnn_applies(q, v) else None
    if kernel is None:
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        with sdpa_kernel(_KERNELS[kernel]):
            out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2)
