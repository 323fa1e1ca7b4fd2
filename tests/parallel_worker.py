"""What each rank runs in the parallel tests: spawned with torch.multiprocessing (``run_ranks``) or
started by torchrun as a script (``python parallel_worker.py MODE``)."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from cosmos_t2.errors import CosmosError
from cosmos_t2.parallel import (
    ParallelContext,
    SequenceShard,
    cfg_pair,
    gather_frames,
    init_distributed,
    on_main,
    parallel_job,
    sequence_parallel_attention,
    shutdown_distributed,
    split_frames,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    try:
        result = fn(*args)
        if rank == 0:
            torch.save(result, Path(out) / "result.pt")
    finally:
        shutdown_distributed()


def run_ranks(world: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on ``world`` gloo processes; return rank 0's result."""
    with tempfile.TemporaryDirectory() as out:
        # fork: the children inherit the imported torch instead of paying seconds each to import it
        # (safe here: conftest pins OMP_NUM_THREADS=1, so no thread pool is forked mid-use).
        mp.start_processes(
            _entry, args=(world, _free_port(), fn, args, out), nprocs=world, join=True, start_method="fork"
        )
        return torch.load(Path(out) / "result.pt", weights_only=False)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Reference attention on (B, L, H, D)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale)
    return out.transpose(1, 2)


def attention_errors(cases: list[tuple[int, int, int]]) -> dict[str, float]:
    """For each (frames, tokens per frame, heads): max |sharded attention - full attention|, plus the
    split/gather round trip and the CFG exchange. Every rank builds the same full tensors."""
    ctx = init_distributed("cpu")
    errors: dict[str, float] = {}
    for frames, per_frame, heads in cases:
        gen = torch.Generator().manual_seed(frames * 100 + per_frame * 10 + heads)
        q, k, v = torch.randn(3, 2, frames * per_frame, heads, 8, generator=gen).unbind(0)
        shard = SequenceShard.of(frames, ctx)
        attend = sequence_parallel_attention(shard, ctx, sdpa)
        local = attend(split_frames(q, shard), split_frames(k, shard), split_frames(v, shard))
        errors[f"attn T={frames} hw={per_frame} H={heads}"] = (
            (gather_frames(local, shard, ctx) - sdpa(q, k, v)).abs().max().item()
        )
        roundtrip = gather_frames(split_frames(q, shard), shard, ctx)
        errors[f"roundtrip T={frames} hw={per_frame} H={heads}"] = (
            (roundtrip - q).abs().max().item() if roundtrip.shape == q.shape else 1.0
        )
    return errors


def _fail_mode() -> None:
    with parallel_job("cpu") as ctx:
        _fail(ctx)


def _fail(ctx: ParallelContext) -> None:
    if ctx.rank == 1:
        time.sleep(0.5)  # rank 0 is already waiting in the barrier
        raise CosmosError("rank one broke: disk full", file="out/x.mp4")
    dist.barrier()  # would wait for the 15-minute collective timeout if nobody stopped it


def _write_mode(out_dir: str) -> None:
    with parallel_job("cpu") as ctx:
        _write(ctx, out_dir)


def _write(ctx: ParallelContext, out_dir: str) -> None:
    # Every rank draws the same seeded noise; only rank 0 writes it.
    noise = torch.randn(4, 5, generator=torch.Generator().manual_seed(7))
    both = cfg_pair(ctx, lambda: noise, lambda: noise)
    gathered = gather_frames(
        split_frames(noise, SequenceShard.of(4, ctx), dim=0), SequenceShard.of(4, ctx), ctx, dim=0
    )
    assert torch.equal(gathered, noise) and torch.equal(both[0], both[1])
    on_main(ctx, torch.save, noise, Path(out_dir) / f"noise-rank{ctx.rank}.pt")


if __name__ == "__main__":
    try:
        {"fail": _fail_mode, "write": _write_mode}[sys.argv[1]](*sys.argv[2:])
    except Exception:
        sys.exit(1)  # the launcher reports the root cause
