"""The Wan2.1 causal video VAE ("tokenizer" of Cosmos-Transfer2.5): 8x spatial, 4x temporal, 16 channels.

    video (B, 3, 1+4k, H, W) in [-1, 1]  --encode-->  latent (B, 16, 1+k, H/8, W/8), normalised
    latent                               --decode-->  video, clamped to [-1, 1]

Encoding runs frame 0 alone and then groups of 4 frames (as the official tokenizer does), carrying
the causal cache; decoding runs `chunk_frames` latent frames at a time, so working memory does not
grow with the video's length. An optional spatial tiling with linear blending over the overlaps
bounds memory further on small GPUs. Layers are in `vae_blocks.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cosmos_t2.errors import CosmosError
from cosmos_t2.model.checkpoint import mismatch_report, torch_load_refusal
from cosmos_t2.model.vae_blocks import CausalConv3d, Decoder3d, Encoder3d, StreamState

# Per-channel statistics of the raw latent (Wan2.1 `WanVAE`; Cosmos' tokenizer uses the same).
WAN21_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class VAEConfig:
    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    latent_mean: tuple[float, ...] = field(default=WAN21_LATENT_MEAN)
    latent_std: tuple[float, ...] = field(default=WAN21_LATENT_STD)

    @classmethod
    def wan21(cls) -> VAEConfig:
        """The released Wan2.1 VAE (127 M parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> VAEConfig:
        """Same topology (so the same key pattern and compression), 12x fewer channels, for tests."""
        return cls(base_dim=8)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


class WanVAE(nn.Module):
    """Encoder, decoder and the two 1x1x1 convs around the latent, named as in `Wan2.1_VAE.pth`."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or VAEConfig()
        self.encoder = Encoder3d(c)
        z = c.z_dim
        self.conv1 = CausalConv3d(2 * z, 2 * z, 1)  # -> (mu, log_var); we keep mu
        self.conv2 = CausalConv3d(z, z, 1)
        self.decoder = Decoder3d(c)
        self.channels_last = False

    def set_channels_last(self, enabled: bool) -> WanVAE:
        """Store conv weights (and run activations) channels-last: cuDNN's faster layout on GPUs."""
        self.channels_last = enabled
        for m in self.modules():
            if isinstance(m, nn.Conv3d | nn.Conv2d):
                fmt = torch.channels_last_3d if isinstance(m, nn.Conv3d) else torch.channels_last
                m.weight.data = m.weight.data.contiguous(
                    memory_format=fmt if enabled else torch.contiguous_format
                )
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.conv2.weight.dtype

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.conv2.weight.device, dtype=self.dtype)
        return x.contiguous(
            memory_format=torch.channels_last_3d if self.channels_last else torch.contiguous_format
        )

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.config.latent_mean, device=like.device, dtype=torch.float32).view(shape)
        std = torch.tensor(self.config.latent_std, device=like.device, dtype=torch.float32).view(shape)
        return mean, std

    @torch.no_grad()
    def encode(self, video: torch.Tensor, *, chunk_frames: int = 4) -> torch.Tensor:
        """(B, 3, 1+4k, H, W) in [-1, 1] -> normalised latent (B, 16, 1+k, H/8, W/8) in video's dtype.

        `chunk_frames` (a multiple of 4) frames go through the encoder at a time after frame 0;
        the result does not depend on it (4 is the official tokenizer's choice and the least memory).
        """
        tf, sf = self.config.temporal_factor, self.config.spatial_factor
        _, c, t, h, w = video.shape
        if c != 3 or (t - 1) % tf or h % sf or w % sf:
            raise CosmosError(
                f"the VAE encodes (B, 3, 1+{tf}k, H, W) videos with H and W multiples of {sf}; "
                f"got {tuple(video.shape)}"
            )
        if chunk_frames < tf or chunk_frames % tf:
            raise CosmosError(f"encode chunk_frames must be a positive multiple of {tf}, got {chunk_frames}")
        state = StreamState()
        mus = []
        for start, stop in [(0, 1), *((s, min(s + chunk_frames, t)) for s in range(1, t, chunk_frames))]:
            out = self.conv1(self.encoder(self._prepare(video[:, :, start:stop]), state))
            mus.append(out[:, : self.config.z_dim].float())
        mean, std = self._stats(video)
        return ((torch.cat(mus, dim=2) - mean) / std).to(video.dtype)

    @torch.no_grad()
    def decode_chunks(
        self,
        latent: torch.Tensor,
        *,
        chunk_frames: int | None = 1,
        tile: tuple[int, ...] | None = None,
    ) -> Iterator[torch.Tensor]:
        """Decode `chunk_frames` latent frames at a time (None: all at once); yields consecutive video
        chunks (B, 3, t, H, W) in [-1, 1] and the latent's dtype. The first latent frame gives 1 video
        frame, every later one 4. See `decode` for `tile`."""
        _, c, t, h, w = latent.shape
        if c != self.config.z_dim:
            raise CosmosError(
                f"the VAE decodes latents with {self.config.z_dim} channels, got shape {tuple(latent.shape)}"
            )
        step = t if chunk_frames is None else chunk_frames
        if step < 1:
            raise CosmosError(f"decode chunk_frames must be >= 1, got {chunk_frames}")
        mean, std = self._stats(latent)
        sf = self.config.spatial_factor
        spans_h, spans_w = _tile_spans(h, w, tile)
        states = {(i, j): StreamState() for i in range(len(spans_h)) for j in range(len(spans_w))}
        for start in range(0, t, step):
            z = self._prepare(latent[:, :, start : start + step].float() * std + mean)
            x = self.conv2(z)
            if len(states) == 1:
                out = self.decoder(x, states[0, 0])
            else:
                out = _blend_tiles(lambda ij, xt: self.decoder(xt, states[ij]), x, spans_h, spans_w, sf)
            yield out.clamp_(-1.0, 1.0).to(latent.dtype)

    @torch.no_grad()
    def decode(
        self,
        latent: torch.Tensor,
        *,
        chunk_frames: int | None = 1,
        tile: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """Normalised latent (B, 16, T, h, w) -> video (B, 3, 1+4(T-1), 8h, 8w) in [-1, 1].

        chunk_frames: latent frames per decoder call (None: all at once). Any value gives the same
            video; 1 (the official tokenizer's choice) needs the least memory.
        tile: (tile_h, tile_w) or (tile_h, tile_w, overlap) in latent pixels: decode overlapping
            spatial tiles separately (each with its own causal cache) and blend them linearly over the
            overlap (default overlap: a quarter of the smaller tile side). Seams are not bit-exact.
        """
        b, _, t, h, w = latent.shape
        tf, sf = self.config.temporal_factor, self.config.spatial_factor
        video = latent.new_empty((b, 3, 1 + tf * (t - 1), h * sf, w * sf))
        pos = 0
        for chunk in self.decode_chunks(latent, chunk_frames=chunk_frames, tile=tile):
            video[:, :, pos : pos + chunk.shape[2]] = chunk
            pos += chunk.shape[2]
        return video


def _tile_spans(h: int, w: int, tile: tuple[int, ...] | None) -> tuple[list[tuple[int, int]], ...]:
    """Start/stop of overlapping tiles along height and width (one span per axis when not tiling)."""
    if tile is None:
        return [(0, h)], [(0, w)]
    if len(tile) not in (2, 3) or min(tile[:2]) < 1:
        raise CosmosError(
            f"tile must be (height, width) or (height, width, overlap) in latent pixels, got {tile}"
        )
    th, tw = tile[0], tile[1]
    overlap = tile[2] if len(tile) == 3 else min(th, tw) // 4
    if overlap < 0 or overlap >= min(th, tw):
        raise CosmosError(f"tile overlap must be in [0, {min(th, tw)}), got {overlap}")

    def spans(size: int, n: int) -> list[tuple[int, int]]:
        if n >= size:
            return [(0, size)]
        starts = [*range(0, size - n, n - overlap), size - n]
        return [(s, s + n) for s in starts]

    return spans(h, th), spans(w, tw)


def _ramp(n: int, lead: int, trail: int) -> torch.Tensor:
    """Weights along one axis of a tile: rising over the `lead` pixels it shares with the previous
    tile, falling over the `trail` pixels it shares with the next; neighbours' ramps sum to 1."""
    r = torch.ones(n)
    if lead:
        r[:lead] = torch.arange(1, lead + 1) / (lead + 1)
    if trail:
        r[n - trail :] = torch.arange(trail, 0, -1) / (trail + 1)
    return r


def _blend_tiles(
    fn: Callable[[tuple[int, int], torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    spans_h: list[tuple[int, int]],
    spans_w: list[tuple[int, int]],
    scale: int,
) -> torch.Tensor:
    """Apply `fn((i, j), x_tile)` to overlapping spatial tiles of x (B, C, T, h, w), each output being
    `scale` times larger in space, and blend the outputs with linear ramps over the overlaps."""
    acc: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    for i, (h0, h1) in enumerate(spans_h):
        for j, (w0, w1) in enumerate(spans_w):
            out = fn((i, j), x[..., h0:h1, w0:w1]).float()
            if acc is None:
                b, c, t = out.shape[:3]
                acc = out.new_zeros((b, c, t, x.shape[3] * scale, x.shape[4] * scale))
                weight = out.new_zeros(acc.shape[3:])

            def overlaps(spans: list[tuple[int, int]], k: int) -> tuple[int, int]:
                lead = spans[k - 1][1] - spans[k][0] if k > 0 else 0
                trail = spans[k][1] - spans[k + 1][0] if k + 1 < len(spans) else 0
                return lead * scale, trail * scale

            wh = _ramp((h1 - h0) * scale, *overlaps(spans_h, i)).to(out.device)
            ww = _ramp((w1 - w0) * scale, *overlaps(spans_w, j)).to(out.device)
            mask = wh[:, None] * ww[None, :]
            region = (..., slice(h0 * scale, h1 * scale), slice(w0 * scale, w1 * scale))
            acc[region] += out * mask
            weight[region[1:]] += mask
    assert acc is not None and weight is not None
    return (acc / weight).to(x.dtype)


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CosmosError("VAE checkpoint not found", file=path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure is a bad file from the user's point of view
        reason = (
            f"not a readable safetensors file ({exc})"
            if path.suffix == ".safetensors"
            else torch_load_refusal(exc)
        )
        raise CosmosError(f"VAE checkpoint: {reason}", file=path) from exc
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CosmosError("VAE checkpoint is not a flat state dict of tensors", file=path)
    return sd


def load_vae(
    path: str | Path,
    config: VAEConfig | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    *,
    channels_last: bool | None = None,
) -> WanVAE:
    """Load the official tokenizer (`Wan2.1_VAE.pth` or a .safetensors of the same keys), strictly.

    dtype defaults to bf16 on CUDA and fp32 on CPU; channels_last defaults to on for CUDA.
    """
    path, device = Path(path), torch.device(device)
    config = config or VAEConfig.wan21()
    sd = _read_state_dict(path)
    with torch.device("meta"):
        model = WanVAE(config)
    report = mismatch_report(model, sd)  # the network's loader lists missing/unexpected/mis-shaped keys
    if report:
        raise CosmosError(f"not a Wan2.1 VAE checkpoint for this config: {report}", file=path)
    dtype = dtype or _default_dtype(device)
    model.load_state_dict(
        {k: v.to(device=device, dtype=dtype) for k, v in sd.items()}, strict=True, assign=True
    )
    model.eval().requires_grad_(False)
    return model.set_channels_last(device.type == "cuda" if channels_last is None else channels_last)


def build_vae(
    config: VAEConfig | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    *,
    seed: int = 0,
    channels_last: bool | None = None,
) -> WanVAE:
    """A VAE with seeded random weights, the same on every device (speed and memory do not depend on
    weight values). The caller's global RNG state is left as it was."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanVAE(config)
    model = model.to(device=device, dtype=dtype or _default_dtype(device))
    model.eval().requires_grad_(False)
    return model.set_channels_last(device.type == "cuda" if channels_last is None else channels_last)
