"""What each rank runs in the parallel tests: spawned with torch.multiprocessing (``run_ranks``) or
started by torchrun as a script (``python parallel_worker.py MODE``)."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from cosmos_t2.distributed.attention import sequence_parallel_attention
from cosmos_t2.distributed.context import (
    ParallelContext,
    SequenceShard,
    gather_frames,
    init_distributed,
    map_over_ranks,
    parallel_job,
    shutdown_distributed,
    split_frames,
)
from cosmos_t2.distributed.launch import exit_rank
from cosmos_t2.distributed.net import ParallelNet, parallel_velocity
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import ControlInput, TransferNet
from cosmos_t2.model.vae import VAEConfig, build_vae


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
    # forkserver, not fork: a pytest worker has threads (pytest-timeout's, xdist's, torch's) whose locks a
    # plain fork copies mid-use, and CI's ranks hung in rendezvous that way. The server is a fresh process
    # that imports torch and this module once, so each rank still starts in well under a second.
    multiprocessing.set_forkserver_preload(["torch", "parallel_worker"])
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            _entry,
            args=(world, _free_port(), fn, args, out),
            nprocs=world,
            join=True,
            start_method="forkserver",
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


def tiny_net(heads: int) -> TransferNet:
    """The tiny TransferNet with every weight random: the zero-initialised gates and control
    projections would otherwise hide a wrong split behind outputs that do not depend on it."""
    torch.manual_seed(0)
    net = TransferNet(replace(TransferConfig.tiny(), num_heads=heads)).eval().requires_grad_(False)
    for p in net.parameters():
        if p.ndim == 2:
            p.normal_(0.0, p.shape[1] ** -0.5)
    return net


def tiny_inputs(frames: int = 3, size: int = 6) -> dict[str, Any]:
    """One sample, `frames` latent frames of size x size latents (9 tokens a frame at size 6): the
    token count is a multiple of neither 2 nor 4. Per-frame timesteps, a conditioning frame, one
    masked control, an image context: every per-frame and per-token input the network takes."""
    gen = torch.Generator().manual_seed(1)
    cfg = TransferConfig.tiny()
    grid = (frames, size // 2, size // 2)
    mask = torch.zeros(1, 1, frames, size, size)
    mask[:, :, 0] = 1.0
    return {
        "x": torch.randn(1, cfg.latent_channels, frames, size, size, generator=gen),
        "timesteps": torch.tensor([[0.1] + [0.7] * (frames - 1)]),
        "text": torch.randn(1, 5, cfg.crossattn_proj_in_channels, generator=gen),
        "negative": torch.randn(1, 5, cfg.crossattn_proj_in_channels, generator=gen),
        "condition_mask": mask,
        "controls": [
            ControlInput(
                latent=torch.randn(1, cfg.latent_channels, frames, size, size, generator=gen),
                weight=0.8,
                mask=torch.rand(1, 1, *grid, generator=gen),
            )
        ],
        "image_context": torch.randn(1, cfg.image_context_tokens, cfg.image_context_dim, generator=gen),
    }


def velocities(net: TransferNet | ParallelNet, ctx: ParallelContext, inputs: dict[str, Any]) -> torch.Tensor:
    """(2, B, C, T, H, W): prompt and negative-prompt velocities, as the sampler asks for them."""

    def forward(x: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return net(
            x,
            timesteps,
            text,
            condition_mask=inputs["condition_mask"],
            controls=inputs["controls"],
            image_context=inputs["image_context"],
        )

    velocity = parallel_velocity(forward, inputs["text"], inputs["negative"], ctx, batch_cfg=False)
    return velocity(inputs["x"], inputs["timesteps"], guided=True)


def denoiser_outputs(heads: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Both CFG velocities of the tiny network per head count, context parallel over all ranks and
    with CFG parallel (half the ranks per pass)."""
    inputs = tiny_inputs()
    results = {}
    for cfg_parallel in (False, True):
        ctx = init_distributed("cpu", cfg_parallel=cfg_parallel)
        for h in heads:
            results[f"heads={h} cfg_parallel={cfg_parallel}"] = velocities(
                ParallelNet(tiny_net(h), ctx), ctx, inputs
            )
    return results


def vae_latents() -> list[torch.Tensor]:
    """Three independent latents (separate videos or chunks): what a decode may split over ranks."""
    gen = torch.Generator().manual_seed(2)
    return [torch.randn(1, 16, 2, 4, 4, generator=gen) for _ in range(3)]


def vae_decodes() -> list[torch.Tensor] | None:
    ctx = init_distributed("cpu")
    return map_over_ranks(ctx, vae_latents(), build_vae(VAEConfig.tiny()).decode)


def run_all(heads: tuple[int, ...], cases: list[tuple[int, int, int]]) -> dict[str, Any]:
    """Everything one spawn of ranks checks (process start-up is the test's cost)."""
    return {"attention": attention_errors(cases), "denoiser": denoiser_outputs(heads), "vae": vae_decodes()}


def _fail_mode() -> None:
    with parallel_job("cpu") as ctx:
        _fail(ctx)


def _fail(ctx: ParallelContext) -> None:
    if ctx.rank == 1:
        time.sleep(0.5)  # rank 0 is already waiting in the barrier
        raise CosmosError("rank one broke: disk full", file="out/x.mp4")
    dist.barrier()  # would wait for the 15-minute collective timeout if nobody stopped it


if __name__ == "__main__":
    try:
        {"fail": _fail_mode}[sys.argv[1]](*sys.argv[2:])
    except Exception as exc:
        exit_rank(exc)  # the launcher reports the root cause
