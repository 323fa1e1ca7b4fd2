"""Building blocks of the Cosmos 2.5 diffusion transformer ("minimal_v4" DiT).

Modules and attribute names follow `cosmos_transfer2/_src/predict2/networks/minimal_v4_dit.py` and
`cosmos_transfer2/_src/transfer2/networks/minimal_v4_lvg_dit_control_vace.py` so that official state-dict keys
(`blocks.3.self_attn.q_proj.weight`, `final_layer.adaln_modulation.1.weight`, ...) load without renaming.

Tokens are flat between patchify and unpatchify: x (B, L, D) with L = T*H*W in (t h w) order. Time conditioning
is per latent frame: emb (B, T, D) and the AdaLN-LoRA term (B, T, 3D), broadcast over the H*W tokens of each
frame (T may be 1 for one timestep per sample). A context-parallel split of L must fall on frame boundaries,
with emb, adaln_lora and the RoPE tables sliced alike.

Precision follows the official "Wan fp32 strategy": timestep embedding, AdaLN modulation, RoPE rotation and the
final layer run in fp32 whatever the weights' dtype; the rest runs in the weights' dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from einops.layers.torch import Rearrange
from torch import nn

from cosmos_t2.model.attention import AttentionBackend, attention
from cosmos_t2.model.rope import apply_rope

AttnFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def linear_fp32(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """`layer(x)` computed in fp32 (weights upcast on the fly; they stay in their stored dtype)."""
    bias = layer.bias.float() if layer.bias is not None else None
    return F.linear(x.float(), layer.weight.float(), bias)


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features [cos | sin] of t (any shape) -> (*t.shape, dim), fp32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class Timesteps(nn.Module):
    """Parameter-free slot 0 of the official `t_embedder` Sequential."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return timestep_features(t, self.dim)


class TimestepEmbedding(nn.Module):
    """Maps timestep features to the AdaLN-LoRA term (B, T, 3D) shared by every block."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim, dim, bias=False)
        self.linear_2 = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return linear_fp32(F.silu(linear_fp32(features, self.linear_1)), self.linear_2)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class PatchEmbed(nn.Module):
    """(B, C, T, H, W) -> tokens (B, T'*H'*W', D); slot 0 of `proj` is the parameter-free rearrange."""

    def __init__(self, in_channels: int, dim: int, patch: tuple[int, int, int]) -> None:
        super().__init__()
        pt, ph, pw = patch
        self.proj = nn.Sequential(
            Rearrange("b c (t r) (h m) (w n) -> b (t h w) (c r m n)", r=pt, m=ph, n=pw),
            nn.Linear(in_channels * pt * ph * pw, dim, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def unpatchify(
    x: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int], channels: int
) -> torch.Tensor:
    """Tokens (B, L, ph*pw*pt*C) -> (B, C, T, H, W); the channel order is the official final layer's."""
    t, h, w = grid
    pt, ph, pw = patch
    return rearrange(
        x, "b (t h w) (p1 p2 r c) -> b c (t r) (h p1) (w p2)", t=t, h=h, w=w, p1=ph, p2=pw, r=pt, c=channels
    )


def adaln_modulation(dim: int, lora_dim: int, chunks: int) -> nn.Sequential:
    """SiLU -> down -> up; slots 1 and 2 carry the official keys `adaln_modulation*.{1,2}.weight`."""
    return nn.Sequential(
        nn.SiLU(), nn.Linear(dim, lora_dim, bias=False), nn.Linear(lora_dim, chunks * dim, bias=False)
    )


def modulation(
    layers: nn.Sequential, emb: torch.Tensor, adaln_lora: torch.Tensor, chunks: int
) -> list[torch.Tensor]:
    """AdaLN(-LoRA) parameters in fp32, each (B, T, 1, D) to broadcast over a frame's tokens."""
    out = linear_fp32(linear_fp32(F.silu(emb.float()), layers[1]), layers[2])
    out = out + adaln_lora[..., : out.shape[-1]]
    return [m.unsqueeze(2) for m in out.chunk(chunks, dim=-1)]


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    # x: (B, T, S, D) with S tokens per frame; LayerNorm without affine, as officially.
    normed = F.layer_norm(x, x.shape[-1:], eps=eps)
    return normed * (1 + scale.to(x.dtype)) + shift.to(x.dtype)


class Attention(nn.Module):
    """Q/K/V projections with per-head RMSNorm on q and k (v is not normalised)."""

    def __init__(self, dim: int, context_dim: int, heads: int, image_context: bool, eps: float) -> None:
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(context_dim, dim, bias=False)
        self.v_proj = nn.Linear(context_dim, dim, bias=False)
        self.q_norm = RMSNorm(head_dim, eps)
        self.k_norm = RMSNorm(head_dim, eps)
        self.output_proj = nn.Linear(dim, dim, bias=False)
        if image_context:
            # Official I2VCrossAttentionFull: a separate query for the reference-image tokens, which arrive
            # already projected to `dim`.
            self.q_img = nn.Linear(dim, dim, bias=False)
            self.k_img = nn.Linear(dim, dim, bias=False)
            self.v_img = nn.Linear(dim, dim, bias=False)
            self.q_img_norm = RMSNorm(head_dim, eps)
            self.k_img_norm = RMSNorm(head_dim, eps)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return rearrange(t, "b l (h d) -> b l h d", h=self.heads)

    def self_attention(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_fn: AttnFn
    ) -> torch.Tensor:
        q = apply_rope(self.q_norm(self._heads(self.q_proj(x))), cos, sin)
        k = apply_rope(self.k_norm(self._heads(self.k_proj(x))), cos, sin)
        v = self._heads(self.v_proj(x))
        return self.output_proj(rearrange(attn_fn(q, k, v), "b l h d -> b l (h d)"))

    def cross_attention(
        self, x: torch.Tensor, text: torch.Tensor, image: torch.Tensor | None, backend: AttentionBackend
    ) -> torch.Tensor:
        q = self.q_norm(self._heads(self.q_proj(x)))
        k = self.k_norm(self._heads(self.k_proj(text)))
        out = attention(q, k, self._heads(self.v_proj(text)), backend)
        if image is not None and image.shape[1] == 1:
            # One key: its softmax weight is exactly 1, so every query gets that key's value. This is how the
            # no-reference-image case runs (256 identical tokens give identical keys: the same result).
            out = out + self._heads(self.v_img(image))
        elif image is not None:
            q_img = self.q_img_norm(self._heads(self.q_img(x)))
            k_img = self.k_img_norm(self._heads(self.k_img(image)))
            out = out + attention(q_img, k_img, self._heads(self.v_img(image)), backend)
        return self.output_proj(rearrange(out, "b l h d -> b l (h d)"))


GEMM_ROW_BLOCK = 8


class FeedForward(nn.Module):
    """`chunks` (None: off) runs the MLP on that many slices of the tokens, written into one output: the
    4x-wide hidden activation, the largest tensor of a block, then exists for one slice only. Each token's
    MLP is independent of the others, so the result is the same (`runtime.memory` turns it on where the
    activations would not fit)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(dim, hidden, bias=False)
        self.layer2 = nn.Linear(hidden, dim, bias=False)
        self.chunks: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if not self.chunks or self.chunks < 2 or flat.shape[0] < self.chunks:
            return self.layer2(F.gelu(self.layer1(x)))
        # Slices start on a multiple of 8 rows: MKL's reproducible CPU path computes rows in blocks of 8 and the
        # tail otherwise, so only aligned slices give the whole-tensor product's bits (cosmos_t2.reproducible).
        step = -(-flat.shape[0] // self.chunks)
        step = -(-step // GEMM_ROW_BLOCK) * GEMM_ROW_BLOCK
        out = torch.empty_like(flat)
        for start in range(0, flat.shape[0], step):
            out[start : start + step] = self.layer2(F.gelu(self.layer1(flat[start : start + step])))
        return out.view(x.shape)


class Block(nn.Module):
    """Self-attention (RoPE), cross-attention (text [+ image]) and MLP, each AdaLN-LoRA modulated and gated."""

    def __init__(
        self,
        dim: int,
        context_dim: int,
        heads: int,
        mlp_ratio: float,
        lora_dim: int,
        image_context: bool,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.self_attn = Attention(dim, dim, heads, image_context=False, eps=eps)
        self.cross_attn = Attention(dim, context_dim, heads, image_context=image_context, eps=eps)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        self.adaln_modulation_self_attn = adaln_modulation(dim, lora_dim, 3)
        self.adaln_modulation_cross_attn = adaln_modulation(dim, lora_dim, 3)
        self.adaln_modulation_mlp = adaln_modulation(dim, lora_dim, 3)

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        adaln_lora: torch.Tensor,
        text: torch.Tensor,
        image: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor],
        attn_fn: AttnFn,
        backend: AttentionBackend,
        shared_halves: bool = False,
    ) -> torch.Tensor:
        """`shared_halves`: the two halves of the batch hold the same tokens and timesteps (the CFG pair
        before any cross-attention has run), so self-attention runs on the first half and is reused."""
        b, seq_len, dim = x.shape
        frames = emb.shape[1]
        x = x.view(b, frames, seq_len // frames, dim)  # (B, T, S, D): modulation is per frame

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, seq_len, dim)

        def frames_of(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, frames, seq_len // frames, dim)

        shift, scale, gate = modulation(self.adaln_modulation_self_attn, emb, adaln_lora, 3)
        if shared_halves:
            half = b // 2
            xh = _modulate(x[:half], shift[:half], scale[:half], self.eps).reshape(half, seq_len, dim)
            h = self.self_attn.self_attention(xh, *rope, attn_fn)
            h = torch.cat([h, h])
        else:
            h = self.self_attn.self_attention(flat(_modulate(x, shift, scale, self.eps)), *rope, attn_fn)
        x = x + gate.to(x.dtype) * frames_of(h)

        shift, scale, gate = modulation(self.adaln_modulation_cross_attn, emb, adaln_lora, 3)
        h = self.cross_attn.cross_attention(flat(_modulate(x, shift, scale, self.eps)), text, image, backend)
        x = x + gate.to(x.dtype) * frames_of(h)

        shift, scale, gate = modulation(self.adaln_modulation_mlp, emb, adaln_lora, 3)
        x = x + gate.to(x.dtype) * self.mlp(_modulate(x, shift, scale, self.eps))
        return flat(x)


class FinalLayer(nn.Module):
    """AdaLN (shift, scale) + linear to patch pixels; all in fp32 as officially."""

    def __init__(self, dim: int, lora_dim: int, out_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.linear = nn.Linear(dim, out_features, bias=False)
        self.adaln_modulation = adaln_modulation(dim, lora_dim, 2)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, adaln_lora: torch.Tensor) -> torch.Tensor:
        b, seq_len, dim = x.shape
        frames = emb.shape[1]
        shift, scale = modulation(self.adaln_modulation, emb, adaln_lora, 2)
        h = _modulate(x.float().view(b, frames, seq_len // frames, dim), shift, scale, self.eps)
        return linear_fp32(h.reshape(b, seq_len, dim), self.linear)
