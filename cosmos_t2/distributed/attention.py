"""Exact self-attention across a frame split: Ulysses all-to-all over heads, ring attention otherwise.

The process groups and the frame split are in `cosmos_t2.distributed.context`; `ParallelNet` in `distributed.net`.
Ulysses turns ``(B, L/N, H, D)`` into ``(B, L, H/N, D)`` with one all-to-all, drops padded keys, attends
and sends the output back; when N does not divide the heads, the ring variant passes K/V blocks around
the ranks and merges them with a running log-sum-exp (a correctness fallback, not a fast path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from einops import rearrange

from cosmos_t2.distributed.context import ParallelContext, SequenceShard

# --- exact attention across the split -------------------------------------------------------------

AttnFn = Callable[..., torch.Tensor]


def _all_to_all(x: torch.Tensor, group: Any) -> torch.Tensor:
    """Exchange chunk ``j`` of axis 0 with rank ``j``; returns what every rank sent to this one."""
    x = x.contiguous()
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    shard: SequenceShard,
    ctx: ParallelContext,
    attn_fn: AttnFn,
    **kwargs: Any,
) -> torch.Tensor:
    """Exact self-attention over the whole sequence from local shards ``(B, L/N, H, D)``.

    One all-to-all carries Q, K and V together (fewer, larger messages); ``attn_fn`` sees
    ``(B, L, H/N, D)`` with padded frames removed, so no mask is needed.
    """
    n = shard.size
    if n == 1:
        return attn_fn(q, k, v, **kwargs)
    heads = q.shape[2]
    if heads % n:
        raise ValueError(f"{heads} heads do not split over {n} ranks; use ring attention")
    qkv = torch.stack([q, k, v])  # (3, B, l, H, D)
    qkv = _all_to_all(rearrange(qkv, "c b l (n h) d -> n c b l h d", n=n), ctx.cp_group)
    qkv = rearrange(qkv, "n c b l h d -> c b (n l) h d")
    per = q.shape[1] // shard.local_frames
    length = shard.frames * per
    out = attn_fn(qkv[0, :, :length], qkv[1, :, :length], qkv[2, :, :length], **kwargs)
    out = torch.nn.functional.pad(out, (0, 0, 0, 0, 0, qkv.shape[2] - length))
    out = _all_to_all(rearrange(out, "b (n l) h d -> n b l h d", n=n), ctx.cp_group)
    return rearrange(out, "n b l h d -> b l (n h) d")


def ring_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    shard: SequenceShard,
    ctx: ParallelContext,
    scale: float | None = None,
) -> torch.Tensor:
    """Exact softmax attention for any number of ranks: K/V blocks travel around the ring while
    each rank folds them into its queries with a running max and sum (fp32 accumulators).

    Plain math, not a fused kernel: for more ranks than heads, not the fast path.
    """
    n, b, lq, h, d = shard.size, *q.shape
    scale = scale if scale is not None else d**-0.5
    qf = rearrange(q, "b l h d -> b h l d").float() * scale
    per = lq // shard.local_frames
    length = shard.frames * per
    acc = qf.new_zeros(b, h, lq, d)
    run_max = qf.new_full((b, h, lq, 1), float("-inf"))
    run_sum = qf.new_zeros(b, h, lq, 1)
    kv = torch.stack([k, v]).contiguous()
    group_ranks = [dist.get_global_rank(ctx.cp_group, r) for r in range(n)] if n > 1 else [0]
    for step in range(n):
        src = (shard.rank - step) % n
        pending: list[Any] = []
        if step < n - 1:
            incoming = torch.empty_like(kv)
            # One batch: NCCL would deadlock on separately issued sends that all wait for receives.
            pending = dist.batch_isend_irecv(
                [
                    dist.P2POp(dist.isend, kv, group_ranks[(shard.rank + 1) % n], group=ctx.cp_group),
                    dist.P2POp(dist.irecv, incoming, group_ranks[(shard.rank - 1) % n], group=ctx.cp_group),
                ]
            )
        valid = min(max(length - src * lq, 0), lq)  # keys of this block that are real tokens
        if valid:
            kb = rearrange(kv[0, :, :valid], "b l h d -> b h l d").float()
            vb = rearrange(kv[1, :, :valid], "b l h d -> b h l d").float()
            scores = qf @ kb.transpose(-1, -2)
            new_max = torch.maximum(run_max, scores.amax(dim=-1, keepdim=True))
            p = torch.exp(scores - new_max)
            rescale = torch.exp(run_max - new_max)
            acc = acc * rescale + p @ vb
            run_sum = run_sum * rescale + p.sum(dim=-1, keepdim=True)
            run_max = new_max
        for work in pending:
            work.wait()
        if pending:
            kv = incoming
    out = acc / run_sum.clamp_min(torch.finfo(acc.dtype).tiny)  # all-padding query rows stay zero
    return rearrange(out, "b h l d -> b l h d").to(q.dtype)


def sequence_parallel_attention(shard: SequenceShard, ctx: ParallelContext, attn_fn: AttnFn) -> AttnFn:
    """An attention function with ``attn_fn``'s call signature that works on local shards:
    Ulysses when the heads split evenly over the ranks, ring otherwise."""

    # Collectives stay outside torch.compile'd blocks (compile_blocks): one clean graph break
    # around attention instead of dynamo tracing process-group calls.
    @torch.compiler.disable
    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if shard.size == 1:
            return attn_fn(q, k, v, **kwargs)
        if q.shape[2] % shard.size == 0:
            return ulysses_attention(q, k, v, shard=shard, ctx=ctx, attn_fn=attn_fn, **kwargs)
        unsupported = {key for key, value in kwargs.items() if value is not None and key != "scale"}
        if unsupported:
            raise ValueError(f"ring attention does not support {sorted(unsupported)}")
        return ring_attention(q, k, v, shard=shard, ctx=ctx, scale=kwargs.get("scale"))

    return attend
