"""Context parallelism (sequence split + exact all-to-all attention) and CFG parallelism.

One job on N processes, as NVIDIA's inference does under ``torchrun --nproc_per_node=N``:

- The token sequence ``(B, T*H*W, D)`` is split along *frames* (T padded up to a multiple of the
  context-parallel size), so per-frame tensors (timesteps, AdaLN modulation, RoPE tables) split the
  same way as tokens. Everything but self-attention is token-wise and runs on the local shard.
- Self-attention is exact: Ulysses all-to-all turns ``(B, L/N, H, D)`` into ``(B, L, H/N, D)``
  (each rank sees every token for a slice of heads), padded keys are dropped, attention runs, and a
  second all-to-all brings the output back. When N does not divide the heads, a ring variant passes
  K/V blocks around the ranks and merges them with a running log-sum-exp (`cosmos_t2.distributed.attention`).
- CFG parallel: with an even number of ranks and guidance on, the prompt and negative-prompt passes
  run on two halves of the ranks; an all-gather across the halves gives every rank both predictions, so
  every rank takes the identical sampler step.

Backends: NCCL on CUDA, gloo on CPU (how CI proves it). World size 1 never touches
``torch.distributed``: the plain path stays the plain path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cosmos_t2.distributed.attention import sequence_parallel_attention
from cosmos_t2.distributed.context import ParallelContext, SequenceShard, gather_frames, split_frames
from cosmos_t2.sampling.unipc import guided_velocity

# --- CFG parallel ---------------------------------------------------------------------------------


def cfg_pair(
    ctx: ParallelContext, cond: Callable[[], torch.Tensor], uncond: Callable[[], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional, unconditional) predictions. With CFG parallel each half of the ranks runs one
    pass and an all-gather gives every rank both; otherwise both run here, one after the other."""
    if ctx.cfg_size == 1:
        return cond(), uncond()
    mine = (cond if ctx.cfg_rank == 0 else uncond)().contiguous()
    both = [torch.empty_like(mine) for _ in range(2)]
    dist.all_gather(both, mine, group=ctx.cfg_group)
    return both[0], both[1]


# --- the network on a frame slice ------------------------------------------------------------------


def _frames_of(x: torch.Tensor | None, shard: SequenceShard, dim: int) -> torch.Tensor | None:
    """This rank's frames of a per-frame input; inputs without a frame axis of length T pass as they are."""
    if x is None or x.ndim <= dim or x.shape[dim] != shard.frames:
        return x
    return split_frames(x, shard, dim)


@contextmanager
def _swapped(net: nn.Module, **attrs: Any) -> Iterator[None]:
    """Set instance attributes of ``net`` (its attention and RoPE hooks) for one call."""
    saved = {name: net.__dict__[name] for name in attrs if name in net.__dict__}
    net.__dict__.update(attrs)
    try:
        yield
    finally:
        for name in attrs:
            net.__dict__.pop(name, None)
        net.__dict__.update(saved)


class ParallelNet:
    """A TransferNet whose forward runs on this rank's latent frames; same call signature, same result.

    Every per-frame input (latents, timesteps (B, T) or (B, 1, T, 1, 1), condition mask, control
    latents and masks) is cut to this rank's frames, so the network's token-wise work (patchify,
    AdaLN, cross-attention, MLP, control branch, final layer) is local. Two hooks make the rest
    exact: self-attention goes through :func:`sequence_parallel_attention`, and the RoPE table is
    the full grid's, sliced to this rank's frames. The output frames are gathered on every rank.
    With one context-parallel rank this is a plain call to the network.
    """

    def __init__(self, net: nn.Module, ctx: ParallelContext) -> None:
        if ctx.cp_size > 1 and net.config.patch_temporal != 1:
            raise ValueError("the frame split assumes a temporal patch of 1")
        self.net, self.ctx = net, ctx

    def __call__(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        text_emb: torch.Tensor,
        *,
        condition_mask: torch.Tensor,
        controls: list[Any],
        padding_mask: torch.Tensor | None = None,
        image_context: torch.Tensor | None = None,
        cfg_halves: bool = False,
    ) -> torch.Tensor:
        net, ctx = self.net, self.ctx
        if ctx.cp_size == 1:
            return net(
                x,
                timesteps,
                text_emb,
                condition_mask=condition_mask,
                controls=controls,
                padding_mask=padding_mask,
                image_context=image_context,
                cfg_halves=cfg_halves,
            )
        shard = SequenceShard.of(x.shape[2], ctx)
        full_rope = net.rope  # the class's table function, before the swap below

        def local_rope(grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
            cos, sin = full_rope((shard.frames, grid[1], grid[2]), device)
            return split_frames(cos, shard, 0), split_frames(sin, shard, 0)

        local_controls = [
            replace(c, latent=_frames_of(c.latent, shard, 2), mask=_frames_of(c.mask, shard, 2))
            for c in controls
        ]
        attend = sequence_parallel_attention(shard, ctx, net.attn_fn)
        with _swapped(net, attn_fn=attend, rope=local_rope):
            out = net(
                split_frames(x, shard, 2),
                _frames_of(timesteps, shard, 2 if timesteps.ndim == 5 else 1),
                text_emb,
                condition_mask=_frames_of(condition_mask, shard, 2),
                controls=local_controls,
                padding_mask=padding_mask,
                image_context=image_context,
                cfg_halves=cfg_halves,
            )
        return gather_frames(out, shard, ctx, dim=2)


def parallel_velocity(
    forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    prompt_embedding: torch.Tensor,
    negative_embedding: torch.Tensor | None,
    ctx: ParallelContext,
    *,
    batch_cfg: bool = True,
) -> Callable[..., torch.Tensor]:
    """The sampler's VelocityFn (see ``sampling.guided_velocity``) for this job's layout: with CFG
    parallel the prompt pass runs on the first half of the ranks and the negative-prompt pass on
    the second, and every rank returns both; otherwise ``guided_velocity`` as it is."""
    if ctx.cfg_size == 1:
        return guided_velocity(forward, prompt_embedding, negative_embedding, batch_cfg=batch_cfg)

    def velocity(x: torch.Tensor, timesteps: torch.Tensor, *, guided: bool) -> torch.Tensor:
        if not guided:  # both halves compute the prompt pass; no exchange needed
            return forward(x, timesteps, prompt_embedding)[None]
        assert negative_embedding is not None, "guidance needs a negative prompt embedding"
        cond, uncond = cfg_pair(
            ctx,
            lambda: forward(x, timesteps, prompt_embedding),
            lambda: forward(x, timesteps, negative_embedding),
        )
        return torch.stack([cond, uncond])

    return velocity
