"""Who this process is in a multi-GPU job: ranks and groups, the frame split, independent work over ranks.

Backends: NCCL on CUDA, gloo on CPU (how CI proves it). World size 1 never touches
``torch.distributed``: the plain path stays the plain path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from cosmos_t2.distributed.launch import failures_recorded
from cosmos_t2.errors import CosmosError

T = TypeVar("T")

# A collective that waits longer than this means a peer is gone; fail instead of hanging.
DEFAULT_TIMEOUT_S = float(os.environ.get("COSMOS_T2_DIST_TIMEOUT_S", "900"))


@dataclass(frozen=True)
class ParallelContext:
    """Who this process is in the job and which groups it talks to.

    Rank layout with CFG parallel: ranks ``[0, cp)`` run the conditional pass, ``[cp, 2cp)`` the
    unconditional one; rank ``r`` has ``cp_rank = r % cp`` and ``cfg_rank = r // cp``.
    """

    world_size: int = 1
    rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cp_size: int = 1
    cp_rank: int = 0
    cp_group: Any = None  # dist.ProcessGroup | None (None: no sequence split)
    cfg_size: int = 1  # 2 when the two CFG passes run on different ranks
    cfg_rank: int = 0  # 0: conditional pass, 1: unconditional pass
    cfg_group: Any = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 is the only one that writes files or prints results."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def init_distributed(
    device: str | torch.device = "cpu", *, cfg_parallel: bool = False, timeout_s: float | None = None
) -> ParallelContext:
    """Join the job described by torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_*).

    Without that environment (or with WORLD_SIZE=1) this returns a single-process context and does
    not initialise ``torch.distributed`` at all.
    """
    device = torch.device(device)
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return ParallelContext(device=device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise CosmosError(
                f"rank {rank} needs GPU {local_rank} but only {torch.cuda.device_count()} are visible"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if cfg_parallel and world_size % 2:
        raise CosmosError(f"CFG parallel needs an even number of processes, got {world_size}")
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=timedelta(seconds=timeout_s or DEFAULT_TIMEOUT_S),
            rank=rank,
            world_size=world_size,
            device_id=device if device.type == "cuda" else None,
        )
    cfg_size = 2 if cfg_parallel else 1
    cp_size = world_size // cfg_size
    # Every rank must create every group, in the same order.
    cp_groups = [dist.new_group(list(range(c * cp_size, (c + 1) * cp_size))) for c in range(cfg_size)]
    cfg_groups = [dist.new_group([i, i + cp_size]) for i in range(cp_size)] if cfg_parallel else []
    return ParallelContext(
        world_size=world_size,
        rank=rank,
        device=device,
        cp_size=cp_size,
        cp_rank=rank % cp_size,
        cp_group=cp_groups[rank // cp_size] if cp_size > 1 else None,
        cfg_size=cfg_size,
        cfg_rank=rank // cp_size,
        cfg_group=cfg_groups[rank % cp_size] if cfg_parallel else None,
    )


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def parallel_job(
    device: str | torch.device = "cpu", *, cfg_parallel: bool = False
) -> Iterator[ParallelContext]:
    """The body of one rank: join the job, record a failure for the launcher, leave cleanly.

    On failure the group is deliberately not destroyed: peers may be blocked on this rank (NCCL's
    teardown can then hang) and the message must be recorded before this rank's sockets close, so
    that the launcher sees it as the first failure.
    """
    # Nested inside another rank body (a batch of jobs, `service.batch`), the group stays up for the outer
    # one: torchrun's store does not host a second rendezvous of the same ranks.
    owner = not dist.is_initialized()
    with failures_recorded():
        ctx = init_distributed(device, cfg_parallel=cfg_parallel)
        yield ctx
    if owner:
        shutdown_distributed()


# --- sequence split along frames -----------------------------------------------------------------


@dataclass(frozen=True)
class SequenceShard:
    """How ``frames`` latent frames are dealt out to ``size`` ranks (T padded to a multiple of size)."""

    frames: int
    size: int
    rank: int

    @property
    def padded_frames(self) -> int:
        return -(-self.frames // self.size) * self.size

    @property
    def local_frames(self) -> int:
        return self.padded_frames // self.size

    @classmethod
    def of(cls, frames: int, ctx: ParallelContext) -> SequenceShard:
        return cls(frames=frames, size=ctx.cp_size, rank=ctx.cp_rank)


def _per_frame(n: int, shard: SequenceShard) -> int:
    if n % shard.frames:
        raise ValueError(f"axis of length {n} is not a whole number of {shard.frames} frames")
    return n // shard.frames


def split_frames(x: torch.Tensor, shard: SequenceShard, dim: int = 1) -> torch.Tensor:
    """This rank's frames of ``x``, whose axis ``dim`` is frame-major (tokens ``T*H*W``, per-frame
    values ``T``, RoPE rows ``T*H*W``); the tail is zero-padded to whole frames for every rank."""
    if shard.size == 1:
        return x
    dim = dim % x.ndim
    per = _per_frame(x.shape[dim], shard)
    pad = (shard.padded_frames - shard.frames) * per
    if pad:
        shape = list(x.shape)
        shape[dim] = pad
        x = torch.cat([x, x.new_zeros(shape)], dim=dim)
    return x.narrow(dim, shard.rank * shard.local_frames * per, shard.local_frames * per)


def gather_frames(x: torch.Tensor, shard: SequenceShard, ctx: ParallelContext, dim: int = 1) -> torch.Tensor:
    """Inverse of :func:`split_frames`: every rank gets the whole, unpadded axis."""
    if shard.size == 1:
        return x
    dim = dim % x.ndim
    parts = [torch.empty_like(x) for _ in range(shard.size)]
    dist.all_gather(parts, x.contiguous(), group=ctx.cp_group)
    full = torch.cat(parts, dim=dim)
    per = x.shape[dim] // shard.local_frames
    return full.narrow(dim, 0, shard.frames * per)


# --- independent work dealt over ranks -------------------------------------------------------------


def map_over_ranks(ctx: ParallelContext, items: Sequence[T], fn: Callable[[T], Any]) -> list[Any] | None:
    """Apply ``fn`` to independent work items dealt round-robin over all ranks; rank 0 gets the
    results in order, other ranks None.

    For the VAE this is exact only across independent decode calls (separate chunks or videos): the
    causal decoder carries a per-frame cache through every frame of one call, so time slices of one
    call are not independent.
    """
    mine = {i: fn(items[i]) for i in range(ctx.rank, len(items), ctx.world_size)}
    if not ctx.distributed:
        return [mine[i] for i in range(len(items))]
    cpu = {i: (r.cpu() if isinstance(r, torch.Tensor) else r) for i, r in mine.items()}
    gathered: list[Any] = [None] * ctx.world_size if ctx.is_main else []
    dist.gather_object(cpu, gathered if ctx.is_main else None, dst=0)
    if not ctx.is_main:
        return None
    merged = {i: r for part in gathered for i, r in part.items()}
    return [merged[i] for i in range(len(items))]
