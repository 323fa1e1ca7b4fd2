"""Layers of the Wan2.1 causal video VAE.

Module and attribute names (including the `nn.Sequential` positions of `residual`, `resample`,
`head`, `downsamples`, `upsamples`, `middle`) mirror the official checkpoint `Wan2.1_VAE.pth`, so its
state dict loads without renaming.

Causality in time: every temporal convolution sees only the current and earlier frames. A video can
be processed in temporal chunks of any length; a `StreamState` carries, per layer, the frames from
earlier chunks that the next chunk still needs, so chunked and one-shot processing agree exactly
(up to float rounding). `state=None` means "this call sees the whole video".
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

if TYPE_CHECKING:
    from cosmos_t2.model.vae import VAEConfig


class StreamState:
    """What each causal layer keeps from the earlier temporal chunks of one video."""

    def __init__(self) -> None:
        self.tails: dict[nn.Module, torch.Tensor] = {}  # input frames a layer still needs
        self.started: set[nn.Module] = set()  # layers that have already seen frame 0


def _layout(t: torch.Tensor) -> torch.memory_format:
    cl = t.is_contiguous(memory_format=torch.channels_last_3d) and not t.is_contiguous()
    return torch.channels_last_3d if cl else torch.contiguous_format


def _zeros_like_format(ref: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero frames shaped like `ref` in time, in `ref`'s memory format (so torch.cat keeps it)."""
    b, c, _, h, w = ref.shape
    return ref.new_zeros((b, c, frames, h, w)).contiguous(memory_format=_layout(ref))


def _pairs_to_frames(doubled: torch.Tensor) -> torch.Tensor:
    """(B, 2C, T, H, W) -> (B, C, 2T, H, W): channel half k of frame t becomes frame 2t + k.

    Written into a buffer of the input's memory format: the einops spelling
    "b (two c) t h w -> b c (t two) h w" would copy into NCTHW and undo channels-last.
    """
    b, c2, t, h, w = doubled.shape
    out = torch.empty(
        (b, c2 // 2, 2 * t, h, w), dtype=doubled.dtype, device=doubled.device, memory_format=_layout(doubled)
    )
    out[:, :, 0::2] = doubled[:, : c2 // 2]
    out[:, :, 1::2] = doubled[:, c2 // 2 :]
    return out


class CausalConv3d(nn.Conv3d):
    """3D convolution that pads time only on the past side (2 * padding_t frames) and streams.

    Spatial zero padding is left to the convolution itself (no padded copy of the activation).
    Streaming: the input is appended to the frames kept from earlier chunks; every full window is
    convolved, and the frames the next window starts from are kept. This is exact for any chunking,
    strided (the encoder's temporal downsampling) or not.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        pad = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, pad[1], pad[2]))
        self.causal_pad = 2 * pad[0]

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        kt, st = self.kernel_size[0], self.stride[0]
        if kt == 1 and st == 1:
            return super().forward(x)
        prev = state.tails.get(self) if state is not None else None
        if prev is None:
            prev = _zeros_like_format(x, self.causal_pad)
        buf = torch.cat([prev, x], dim=2) if prev.shape[2] else x
        n_out = (buf.shape[2] - kt) // st + 1 if buf.shape[2] >= kt else 0
        if state is not None:
            # clone: a view would keep the whole chunk alive until the next call
            state.tails[self] = buf[:, :, n_out * st :].clone()
        if n_out == 0:
            h_out, w_out = (
                (n + 2 * p - k) // s + 1
                for n, p, k, s in zip(
                    x.shape[3:], self.padding[1:], self.kernel_size[1:], self.stride[1:], strict=True
                )
            )
            return x.new_empty((x.shape[0], self.out_channels, 0, h_out, w_out))
        return super().forward(buf)


class RMSNorm(nn.Module):
    """L2-normalise over channels, times sqrt(dim) and a learned per-channel gain (`gamma`)."""

    def __init__(self, dim: int, images: bool = True) -> None:
        super().__init__()
        # the checkpoint stores gamma as (C,1,1) for 2D (attention) and (C,1,1,1) for 3D inputs
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))
        self.scale = dim**0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * (self.gamma * self.scale)


class Upsample2x(nn.Module):
    """Nearest-neighbour 2x spatial upsampling of (N, C, H, W); copies values, so exact in bf16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest-exact")


class Resample(nn.Module):
    """Spatial 2x down/up-sampling per frame, plus optional 2x temporal resampling (`time_conv`).

    Temporal rules of the official tokenizer: frame 0 passes without temporal resampling (1 frame in,
    1 frame out); later frames are halved by a strided causal conv (encoder) or doubled by a conv to
    2x channels whose halves become two consecutive frames (decoder).
    """

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(Upsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        elif mode in ("downsample2d", "downsample3d"):
            # asymmetric (right/bottom) zero pad, as trained
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        else:
            raise ValueError(f"unknown resample mode {mode!r}")
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        x = self.resample(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(x, "(b t) c h w -> b c t h w", t=t)

    def _starts_video(self, state: StreamState | None) -> bool:
        if state is None:
            return True
        first = self not in state.started
        state.started.add(self)
        return first

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        if self.mode == "upsample3d":
            first = self._starts_video(state)
            head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (None, x)
            parts = [] if head is None else [head]
            if rest.shape[2]:
                parts.append(_pairs_to_frames(self.time_conv(rest, state)))
            x = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        x = self._spatial(x)
        if self.mode == "downsample3d":
            first = self._starts_video(state)
            halved = self.time_conv(x, state)
            x = torch.cat([x[:, :, :1], halved], dim=2) if first else halved
        return x


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        # positions 0, 2, 3, 6 hold weights in the checkpoint: keep this exact order
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False),
            nn.SiLU(inplace=True),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, images=False),
            nn.SiLU(inplace=True),
            nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, state) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no mixing across time)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        b, h = x.shape[0], x.shape[3]
        y = self.norm(rearrange(x, "b c t h w -> (b t) c h w"))
        q, k, v = rearrange(self.to_qkv(y), "n (three c) h w -> three n 1 (h w) c", three=3)
        y = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
        y = self.proj(rearrange(y, "n 1 (h w) c -> n c h w", h=h))
        return x + rearrange(y, "(b t) c h w -> b c t h w", b=b)


def _run(seq: nn.Sequential, x: torch.Tensor, state: StreamState | None) -> torch.Tensor:
    for layer in seq:
        x = layer(x, state) if isinstance(layer, ResidualBlock | AttentionBlock | Resample) else layer(x)
    return x


def _head(dim: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        RMSNorm(dim, images=False), nn.SiLU(inplace=True), CausalConv3d(dim, out_channels, 3, padding=1)
    )


def _run_head(head: nn.Sequential, x: torch.Tensor, state: StreamState | None) -> torch.Tensor:
    return head[2](head[1](head[0](x)), state)


def _middle(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        ResidualBlock(dim, dim, dropout), AttentionBlock(dim), ResidualBlock(dim, dim, dropout)
    )


def _stage(in_dim: int, out_dim: int, num_blocks: int, attention: bool, dropout: float) -> list[nn.Module]:
    """One resolution level's residual blocks (the first maps in_dim -> out_dim), each followed by
    attention at the scales that have it."""
    layers: list[nn.Module] = []
    for _ in range(num_blocks):
        layers.append(ResidualBlock(in_dim, out_dim, dropout))
        if attention:
            layers.append(AttentionBlock(out_dim))
        in_dim = out_dim
    return layers


class Encoder3d(nn.Module):
    """Video (B, 3, T, H, W) -> (B, z_channels, 1 + (T-1)/4, H/8, W/8) with the full-size config."""

    def __init__(self, config: VAEConfig, dropout: float = 0.0) -> None:
        super().__init__()
        dim, z_channels, dim_mult = config.base_dim, 2 * config.z_dim, config.dim_mult
        num_res_blocks, attn_scales, temporal_downsample = (
            config.num_res_blocks,
            config.attn_scales,
            config.temporal_downsample,
        )
        dims = [dim * u for u in (1, *dim_mult)]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(pairwise(dims)):
            layers += _stage(in_dim, out_dim, num_res_blocks, scale in attn_scales, dropout)
            if i != len(dim_mult) - 1:
                layers.append(Resample(out_dim, "downsample3d" if temporal_downsample[i] else "downsample2d"))
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)
        self.middle = _middle(dims[-1], dropout)
        self.head = _head(dims[-1], z_channels)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = self.conv1(x, state)
        x = _run(self.downsamples, x, state)
        x = _run(self.middle, x, state)
        return _run_head(self.head, x, state)


class Decoder3d(nn.Module):
    """Latent (B, z, T, h, w) -> video (B, 3, 1 + 4(T-1), 8h, 8w) with the full-size config."""

    def __init__(self, config: VAEConfig, dropout: float = 0.0) -> None:
        super().__init__()
        dim, z_channels, dim_mult = config.base_dim, config.z_dim, config.dim_mult
        num_res_blocks, attn_scales, temporal_upsample = (
            config.num_res_blocks,
            config.attn_scales,
            config.temporal_downsample[::-1],
        )
        dims = [dim * u for u in (dim_mult[-1], *dim_mult[::-1])]
        scale = 1.0 / 2 ** (len(dim_mult) - 2)
        self.conv1 = CausalConv3d(z_channels, dims[0], 3, padding=1)
        self.middle = _middle(dims[0], dropout)
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(pairwise(dims)):
            if i > 0:
                in_dim //= 2  # each upsampling conv halves the channels
            layers += _stage(in_dim, out_dim, num_res_blocks + 1, scale in attn_scales, dropout)
            if i != len(dim_mult) - 1:
                layers.append(Resample(out_dim, "upsample3d" if temporal_upsample[i] else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)
        self.head = _head(dims[-1], 3)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = self.conv1(x, state)
        x = _run(self.middle, x, state)
        x = _run(self.upsamples, x, state)
        return _run_head(self.head, x, state)
