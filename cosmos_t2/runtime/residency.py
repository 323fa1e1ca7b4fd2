"""Where a job's models sit while each stage runs: the memory plan (`runtime.memory`) applied.

`plan_memory` runs first in a job, before any model is built: it works out the job's shape from the spec and
the input's header, reads the device's budget (free memory, `--memory-cap`), picks the plan (`--offload`,
`auto` by default) and stops the job with one line when nothing fits. `place_net` / `place_vae` build a
model for that plan (in host memory when it is offloaded; the chunked MLP set before compilation), and
`Residency.use(model)` brings a model in for a stage and sends the other one out (`model` offload), or does
nothing where the plan keeps everything resident or the blocks stream themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.model.device import cuda_index
from cosmos_t2.model.offload import BlockStreamer, ModelSwap, set_mlp_chunks
from cosmos_t2.runtime.memory import PLANS, Plan, job_shape
from cosmos_t2.runtime.memory_choice import Choice, choose, device_budget, estimate_lines


def apply_memory_cap(device: torch.device, cap_gib: float | None) -> None:
    """Hold this process to `cap_gib` of the GPU (the allocator raises out-of-memory past it), as a smaller
    card would; on CPU the cap only bounds the plan."""
    if cap_gib is None:
        return
    if cap_gib <= 0:
        raise CosmosError(f"--memory-cap must be a positive number of GiB, got {cap_gib}", key="--memory-cap")
    if device.type == "cuda":
        index = cuda_index(device)
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(cap_gib * 2**30 / total, 1.0), index)


def plan_memory(
    spec: Spec,
    *,
    device: torch.device,
    dtype: torch.dtype,
    offload: str,
    memory_cap_gib: float | None,
    gpus: int,
    text_encoder: bool,
    tiny: bool,
    compiled: bool = False,
    cuda_graphs: bool = False,
) -> Choice:
    """The job's memory plan; raises CosmosError (with what would fit) when no plan of `offload` fits.

    `cuda_graphs` (compile modes that capture CUDA graphs): graphs replay fixed weight addresses, which
    offload changes every visit, so those runs keep every model resident."""
    apply_memory_cap(device, memory_cap_gib)
    if cuda_graphs and offload in ("model", "blocks"):
        raise CosmosError(
            f"--offload {offload} moves the weights, which a CUDA-graph compile mode cannot follow; use the "
            "default compile mode or --offload none",
            key="--offload",
        )
    if cuda_graphs:
        offload = "none"
    shape = job_shape(spec, gpus=gpus, dtype_bytes=torch.empty((), dtype=dtype).element_size(),
                      text_encoder=text_encoder, tiny=tiny, compiled=compiled, device=device.type)  # fmt: skip
    choice = choose(shape, offload, device_budget(device, memory_cap_gib))
    if device.type == "cuda" and (memory_cap_gib is not None or choice.plan != PLANS[0]):
        choice.expandable_segments = use_expandable_segments()
    return choice


def use_expandable_segments() -> bool:
    """Let the CUDA allocator grow segments in place instead of carving fixed ones, unless the user configured
    it (PYTORCH_CUDA_ALLOC_CONF). Without this, capped jobs on the H200 ran out of memory with 2.2-3.5 GiB
    reserved but unused (12 and 16 GiB caps, 2026-12-01): streamed blocks and stage changes fragment fixed
    segments. Only where memory is tight: the resident path's measured speed stays the path users get."""
    if "PYTORCH_CUDA_ALLOC_CONF" in os.environ:
        return False
    torch.cuda.memory._set_allocator_settings("expandable_segments:True")
    return True


def offload_key(plan: Plan) -> tuple[str, int | None]:
    """What of a plan changes a built model (a pool keeps one per key)."""
    return (plan.offload, plan.mlp_chunks)


def build_device(plan: Plan, device: torch.device) -> torch.device:
    """Offloaded models are built in host memory; the plan brings them to `device`."""
    return device if plan.offload == "none" else torch.device("cpu")


def place_net(net: nn.Module, plan: Plan, device: torch.device) -> ModelSwap | BlockStreamer | None:
    """Attach the plan's offload to a freshly built network (call `set_net_levers` before compiling it)."""
    if plan.offload == "blocks":
        return BlockStreamer(net, device)  # type: ignore[arg-type]
    if plan.offload == "model":
        return ModelSwap(net, device)
    return None


def set_net_levers(net: nn.Module, plan: Plan) -> None:
    set_mlp_chunks(net, plan.mlp_chunks)


def place_vae(vae: nn.Module, plan: Plan, device: torch.device) -> ModelSwap | None:
    return None if plan.offload == "none" else ModelSwap(vae, device)


def decode_tile(latent_shape: tuple[int, ...], plan: Plan) -> tuple[int, int, int] | None:
    """2 x 2 overlapping tiles of the latent frame (overlap: an eighth of the smaller side) when tiled."""
    if not plan.tiled_decode:
        return None
    h, w = latent_shape[-2:]
    overlap = max(min(h, w) // 8, 1)
    return (h // 2 + overlap, w // 2 + overlap, overlap)


@dataclass
class Residency:
    """The offload handles of one job's models (None: resident)."""

    plan: Plan
    handles: dict[int, Any] = field(default_factory=dict)  # id(model) -> ModelSwap | BlockStreamer

    @contextmanager
    def use(self, model: nn.Module) -> Iterator[None]:
        """`model` on the device for the enclosed stage; with whole-model offload, the others out first."""
        handle = self.handles.get(id(model))
        if isinstance(handle, ModelSwap):
            for other in self.handles.values():
                if other is not handle and isinstance(other, ModelSwap):
                    other.evict()
            handle.load()
        yield

    def __post_init__(self) -> None:
        self._start = self._counts()  # a pooled model's counters run on from earlier jobs

    def _counts(self) -> dict[str, int]:
        out = {"model_loads": 0, "block_fetches": 0, "block_misses": 0}
        for handle in self.handles.values():
            if isinstance(handle, ModelSwap):
                out["model_loads"] += handle.loads
            elif isinstance(handle, BlockStreamer):
                out["block_fetches"] += handle.fetches
                out["block_misses"] += handle.misses
        return out

    def record(self) -> dict[str, Any]:
        """What moved during this job: whole-model loads and block copies (and those not prefetched)."""
        return {k: v - self._start[k] for k, v in self._counts().items()}


@contextmanager
def on_device(residency: Residency | None, model: nn.Module) -> Iterator[None]:
    """`residency.use(model)`; nothing without a residency (every model resident)."""
    if residency is None:
        yield
        return
    with residency.use(model):
        yield


def estimate_job(
    spec: Spec,
    *,
    gpus: int,
    offload: str,
    memory_cap_gib: float | None,
    tiny: bool,
    text_encoder: bool,
    compiled: bool = False,
) -> list[str]:
    """`cosmos-t2 validate --estimate` for one effective spec: on this machine's GPU in bf16 (the tiny model:
    CPU, fp32), against its free memory or `memory_cap_gib`."""
    device = torch.device("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    shape = job_shape(spec, gpus=gpus, dtype_bytes=4 if tiny else 2, text_encoder=text_encoder, tiny=tiny,
                      compiled=compiled, device="cpu" if tiny else "cuda")  # fmt: skip
    # a full-size estimate is of a GPU job even on a machine without one (its budget then says "no GPU")
    return estimate_lines(shape, offload, device_budget(device, memory_cap_gib))
