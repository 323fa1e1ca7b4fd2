"""The control branch, and TransferNet: backbone + control branch(es) as the official network computes them.

Official reference: `MinimalV4LVGControlVaceDiT` in
`cosmos_transfer2/_src/transfer2/networks/minimal_v4_lvg_dit_control_vace.py` (VACE-style control):
- control latents are zero-padded to `latent_channels * control_max_modalities` channels, the condition mask and
  padding mask are appended, and `control_embedder` patchifies them;
- control block 0 adds `before_proj(c)` to the backbone's embedded input tokens; every control block runs a
  full DiT block and emits a hint `after_proj(c)` (both projections zero-initialised, ControlNet-style);
- hint k is added to the output of backbone block `control_layers[k]` (blocks 0, 7, 14, 21 at 2B), scaled by
  the control weight (a scalar, or a spatio-temporal map on the token grid).

Several modalities at once follow the official multi-branch inference
(`multibranch_720p_t24_spaced_layer4_cr1pt1_rectified_flow_inference`: `num_control_branches=4`,
`use_after_proj_for_multi_branch=False`): one branch per modality, each loaded from that modality's checkpoint,
hints summed as sum_i weight_i * hint_i. Weights are normalised only where masks are used (as the official
`resize_control_weight`): every control then gets a map (mask * weight, or weight everywhere) and, per token,
maps are scaled down so their sum is at most 1. Scalar weights without masks are used as given.

Module names reproduce the official key layout: one branch is `control_embedder` + `control_blocks`; N > 1
branches are `control_embedder.{n}` + `control_blocks_{n}` (the official multi-branch names).

Timesteps follow diffusers: sigma in [0, 1] (official timesteps t in [0, 1000] times timestep_scale 0.001),
shape (B,) or per latent frame (B, T) (diffusers' (B, 1, T, 1, 1) is accepted too). Conditioning frames carry
their own (small) timestep; substituting their latents is the caller's job.

Where this API differs from a plain "(B, 1, T, H, W) mask on the latent grid": masks live on the *token* grid
(T, H/2, W/2), because the official code resamples the pixel mask straight to it (trilinear; first frame on its
own); `mask_video_to_token_grid` does that. ControlInput also names its `branch`, since one branch = one
modality's weights. Per-step cost stays free of host syncs: no data-dependent checks (the official skips
all-zero controls and treats all-ones masks as absent with `.any()`; callers decide that once per job).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cosmos_t2.model.attention import AttentionBackend, attention
from cosmos_t2.model.config import TEMPORAL_COMPRESSION, TransferConfig
from cosmos_t2.model.dit import Block, FinalLayer, PatchEmbed, TimestepEmbedding, Timesteps, unpatchify
from cosmos_t2.model.dit import RMSNorm as _RMSNorm
from cosmos_t2.model.rope import rope_table


@dataclass
class ControlInput:
    """One control modality for one forward.

    latent: (B, C<=latent_channels*max_modalities, T, H, W) VAE latents of the control video.
    weight: control_weight; a float, a 0-d tensor or a per-sample (B,) tensor.
    mask: None, or a spatio-temporal mask on the token grid (B or 1, 1, T, H/ph, W/pw) with values in [0, 1]
        (see `mask_video_to_token_grid`). Pass None rather than an all-ones mask (officially an all-ones mask
        counts as no mask).
    branch: index of the control branch (modality) to run; None means the control's position in the list.
    """

    latent: torch.Tensor
    weight: float | torch.Tensor = 1.0
    mask: torch.Tensor | None = None
    branch: int | None = None


def mask_video_to_token_grid(
    mask_video: torch.Tensor,
    latent_shape: tuple[int, int, int],
    patch_size: tuple[int, int, int] = (1, 2, 2),
    temporal_compression: int = TEMPORAL_COMPRESSION,
) -> torch.Tensor:
    """Pixel-space mask video (B, 1, F, Hpix, Wpix), F = 4*(T-1)+1, -> token grid (B, 1, T, H/ph, W/pw).

    As the official `resize_control_weight` (see `resample_frames_to_grid`). `latent_shape` is (T, H, W) of
    the latents.
    """
    t, h, w = latent_shape
    grid = (t // patch_size[0], h // patch_size[1], w // patch_size[2])
    mask = mask_video.float()
    if tuple(mask.shape[2:]) == grid:
        return mask
    if mask.shape[2] != temporal_compression * (grid[0] - 1) + 1:
        raise ValueError(
            f"mask has {mask.shape[2]} frames; expected {temporal_compression * (grid[0] - 1) + 1} for "
            f"{grid[0]} latent frames"
        )
    return resample_frames_to_grid(mask, grid)


def resample_frames_to_grid(mask: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """(B, 1, F, H, W) float -> (B, 1, *grid): the official `resize_control_weight` rule. The first frame maps
    to grid frame 0 alone, the remaining F-1 frames to the other grid[0]-1, each by trilinear interpolation
    (align_corners=False) straight to the grid."""
    parts = [F.interpolate(mask[:, :, :1], size=(1, *grid[1:]), mode="trilinear", align_corners=False)]
    if grid[0] > 1:
        rest = (grid[0] - 1, *grid[1:])
        parts.append(F.interpolate(mask[:, :, 1:], size=rest, mode="trilinear", align_corners=False))
    return torch.cat(parts, dim=2)


def control_weights(
    controls: list[ControlInput], batch: int, grid: tuple[int, int, int]
) -> list[torch.Tensor | float]:
    """Per control: its weight as a float, a (B, 1, 1) tensor, or a (B, L, 1) token map (official rule)."""

    def as_batch(w: float | torch.Tensor) -> float | torch.Tensor:
        if isinstance(w, torch.Tensor):
            return w.float().reshape(-1, 1, 1) if w.ndim else w.float()
        return float(w)

    if all(c.mask is None for c in controls):
        return [as_batch(c.weight) for c in controls]
    for c in controls:
        if c.mask is not None and tuple(c.mask.shape[2:]) != grid:
            raise ValueError(
                f"control mask grid {tuple(c.mask.shape[2:])} != token grid {grid}; use mask_video_to_token_grid"
            )
    ref = next(c.mask for c in controls if c.mask is not None)
    ones = torch.ones((batch, 1, *grid), device=ref.device, dtype=torch.float32)
    maps = []
    for c in controls:
        w = c.weight.float().reshape(-1, 1, 1, 1, 1) if isinstance(c.weight, torch.Tensor) else c.weight
        maps.append((c.mask.float() if c.mask is not None else ones) * w * ones)
    total = torch.stack(maps).sum(0)
    scale = 1.0 / total.clamp_min(1.0)  # cap the per-token sum of weights at 1
    return [rearrange(m * scale, "b 1 t h w -> b (t h w) 1") for m in maps]


class ControlBlock(Block):
    """A DiT block of the control branch: block 0 takes the backbone tokens in, every block emits a hint."""

    def __init__(self, *args: object, first: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        dim = self.self_attn.q_proj.in_features
        if first:
            self.before_proj = nn.Linear(dim, dim)
        self.after_proj = nn.Linear(dim, dim)

    def forward_control(
        self, c: torch.Tensor, x: torch.Tensor, *args: object, shared_halves: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self, "before_proj"):
            c = self.before_proj(c) + x
        c = self.forward(c, *args, shared_halves=shared_halves)
        return c, self.after_proj(c)


class TransferNet(nn.Module):
    """Cosmos-Transfer2.5 network: DiT backbone + `num_control_branches` control branches.

    forward(x, timesteps, text_emb, *, condition_mask, controls, padding_mask=None, image_context=None)
      x: (B, C, T, H, W) noisy latents (conditioning frames already substituted); returns the velocity
         (B, C, T, H, W) in fp32.
      timesteps: (B,), (B, T) or (B, 1, T, 1, 1): sigma in [0, 1] (see module docstring).
      text_emb: (B, L, crossattn_proj_in_channels) raw text-encoder features, or (B, L, crossattn_emb_channels)
         already projected (`project_text`), e.g. precomputed once per job.
      condition_mask: (B, 1, T, H, W), 1 on conditioning frames (may be (B, 1, T, 1, 1); it is broadcast).
      controls: list of ControlInput; an empty list runs the backbone alone.
      padding_mask: (B or 1, 1, Hpix, Wpix) or None (no padding); resized (nearest) to the latent grid.
      image_context: (B, N, image_context_dim) reference-image tokens; None feeds zeros, as the official and
         diffusers pipelines do without a reference image.

    `attn_fn` is the hook for self-attention ((B, L, H, D) q, k, v -> out); context parallelism swaps it.
    """

    def __init__(
        self, config: TransferConfig, num_control_branches: int = 1, attn_backend: AttentionBackend = "auto"
    ) -> None:
        super().__init__()
        cfg = self.config = config
        self.num_control_branches = num_control_branches
        dim = cfg.model_channels
        image = cfg.image_context_dim is not None
        block_args = (
            dim,
            cfg.crossattn_emb_channels,
            cfg.num_heads,
            cfg.mlp_ratio,
            cfg.adaln_lora_dim,
            image,
        )

        self.x_embedder = PatchEmbed(cfg.x_in_channels, dim, cfg.patch_size)
        self.t_embedder = nn.Sequential(Timesteps(dim), TimestepEmbedding(dim))
        self.t_embedding_norm = _RMSNorm(dim, cfg.eps)
        self.crossattn_proj = nn.Sequential(
            nn.Linear(cfg.crossattn_proj_in_channels, cfg.crossattn_emb_channels), nn.GELU()
        )
        if image:
            self.img_context_proj = nn.Sequential(nn.Linear(cfg.image_context_dim, dim), nn.GELU())
        self.blocks = nn.ModuleList(Block(*block_args, eps=cfg.eps) for _ in range(cfg.num_blocks))
        out_features = cfg.latent_channels * cfg.patch_temporal * cfg.patch_spatial**2
        self.final_layer = FinalLayer(dim, cfg.adaln_lora_dim, out_features, cfg.eps)

        def control_blocks() -> nn.ModuleList:
            return nn.ModuleList(
                ControlBlock(*block_args, eps=cfg.eps, first=i == 0) for i in range(cfg.num_control_blocks)
            )

        def embedder() -> PatchEmbed:
            return PatchEmbed(cfg.control_in_channels, dim, cfg.patch_size)

        if num_control_branches == 1:
            self.control_embedder = embedder()
            self.control_blocks = control_blocks()
        else:
            self.control_embedder = nn.ModuleList(embedder() for _ in range(num_control_branches))
            for n in range(num_control_branches):
                self.add_module(f"control_blocks_{n}", control_blocks())
        self._hint_of_block = {block: k for k, block in enumerate(cfg.control_layers)}
        self._rope_tables: dict[tuple[tuple[int, int, int], str], tuple[torch.Tensor, torch.Tensor]] = {}
        self.set_attention_backend(attn_backend)
        self.init_weights()

    def set_attention_backend(self, backend: AttentionBackend) -> None:
        self.attn_backend: AttentionBackend = backend
        self.attn_fn = functools.partial(attention, backend=backend)

    def control_branch(self, n: int) -> tuple[PatchEmbed, nn.ModuleList]:
        if not 0 <= n < self.num_control_branches:
            raise ValueError(f"control branch {n} requested; the network has {self.num_control_branches}")
        if self.num_control_branches == 1:
            return self.control_embedder, self.control_blocks
        return self.control_embedder[n], getattr(self, f"control_blocks_{n}")

    @torch.no_grad()
    def init_weights(self) -> None:
        """Official initialisation: truncated normal (std 1/sqrt(fan_in)) for linears; zeros for the AdaLN
        up-projections and the control branch's before/after projections, so a fresh control branch is a no-op."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = module.in_features**-0.5
                nn.init.trunc_normal_(module.weight, std=std, a=-3 * std, b=3 * std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
                if name.endswith(("before_proj", "after_proj")) or (
                    ".adaln_modulation" in name and name[-1] == "2"
                ):
                    nn.init.zeros_(module.weight)
            elif isinstance(module, _RMSNorm):
                nn.init.ones_(module.weight)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the backbone (incl. text and image projections) and of the control branch(es)."""
        counts = {"backbone": 0, "control": 0}
        for name, p in self.named_parameters():
            counts["control" if name.startswith("control_") else "backbone"] += p.numel()
        return counts

    def embed_timesteps(self, timesteps: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """timesteps -> (emb (B, T, D), adaln_lora (B, T, 3D)), both fp32."""
        t = timesteps.reshape(batch, -1)  # (B,) -> (B, 1); (B, 1, T, 1, 1) -> (B, T)
        features = self.t_embedder[0](t)
        return self.t_embedding_norm(features), self.t_embedder[1](features)

    def project_text(self, text_emb: torch.Tensor) -> torch.Tensor:
        """Raw text-encoder features -> cross-attention context; already projected features pass through."""
        cfg = self.config
        if text_emb.shape[-1] == cfg.crossattn_emb_channels:
            return text_emb.to(self._dtype)
        if text_emb.shape[-1] != cfg.crossattn_proj_in_channels:
            raise ValueError(
                f"text_emb has {text_emb.shape[-1]} channels; expected {cfg.crossattn_proj_in_channels} (raw) "
                f"or {cfg.crossattn_emb_channels} (projected)"
            )
        return self.crossattn_proj(text_emb.to(self._dtype))

    def project_image(self, image_context: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        cfg = self.config
        if cfg.image_context_dim is None:
            if image_context is not None:
                raise ValueError("this network has no image-context cross-attention")
            return None
        if image_context is None:
            # Officially 256 zero tokens; they project to identical keys and values, so attention over them
            # equals attention over one of them, which the cross-attention computes without a softmax.
            image_context = torch.zeros(
                batch, 1, cfg.image_context_dim, device=self._device, dtype=self._dtype
            )
        return self.img_context_proj(image_context.to(self._dtype))

    def rope(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if any(g > m // p for g, m, p in zip(grid, cfg.max_size, cfg.patch_size, strict=True)):
            raise ValueError(f"token grid {grid} exceeds the network's maximum {cfg.max_size} / patch")
        key = (grid, str(device))
        if key not in self._rope_tables:  # the same grid every step of a job: compute once
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in any later mode
                self._rope_tables[key] = rope_table(
                    grid, cfg.head_dim, cfg.rope_scale, cfg.rope_theta, device
                )
        return self._rope_tables[key]

    @property
    def _dtype(self) -> torch.dtype:
        return self.x_embedder.proj[1].weight.dtype

    @property
    def _device(self) -> torch.device:
        return self.x_embedder.proj[1].weight.device

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        text_emb: torch.Tensor,
        *,
        condition_mask: torch.Tensor,
        controls: list[ControlInput],
        padding_mask: torch.Tensor | None = None,
        image_context: torch.Tensor | None = None,
        cfg_halves: bool = False,
    ) -> torch.Tensor:
        """`cfg_halves=True` promises that the batch is a CFG pair [a; a]: the two halves have the same
        latents, timesteps, condition mask and controls and differ only in text. Until the first
        cross-attention their tokens are then equal, so the first self-attention of the backbone and of each
        control branch runs once for both (2 of the step's 64 attentions at 720p with one control)."""
        cfg, dtype = self.config, self._dtype
        b, _, t, h, w = x.shape
        grid = (t // cfg.patch_temporal, h // cfg.patch_spatial, w // cfg.patch_spatial)
        cond = condition_mask.to(dtype).expand(b, 1, t, h, w)
        if padding_mask is None:
            pad = x.new_zeros((b, 1, t, h, w), dtype=dtype)
        else:
            pad = F.interpolate(padding_mask.to(dtype), size=(h, w), mode="nearest")
            pad = pad.unsqueeze(2).expand(b, 1, t, h, w)

        tokens = self.x_embedder(torch.cat([x.to(dtype), cond, pad], dim=1))  # (B, L, D)
        emb, adaln_lora = self.embed_timesteps(timesteps, b)
        text, image = self.project_text(text_emb), self.project_image(image_context, b)
        rope = self.rope(grid, x.device)
        args = (emb, adaln_lora, text, image, rope, self.attn_fn, self.attn_backend)

        hints = self._control_hints(tokens, controls, cond, pad, grid, args, cfg_halves)
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, *args, shared_halves=cfg_halves and i == 0)
            k = self._hint_of_block.get(i)
            if k is not None and hints:
                tokens = tokens + hints[k]
        out = self.final_layer(tokens, emb, adaln_lora)
        return unpatchify(out, grid, cfg.patch_size, cfg.latent_channels)

    def _control_hints(
        self,
        tokens: torch.Tensor,
        controls: list[ControlInput],
        cond: torch.Tensor,
        pad: torch.Tensor,
        grid: tuple[int, int, int],
        args: tuple,
        cfg_halves: bool = False,
    ) -> list[torch.Tensor]:
        """Run every control branch once; hints (B, L, D) per control block, weighted and summed."""
        cfg, dtype = self.config, self._dtype
        weights = control_weights(controls, tokens.shape[0], grid) if controls else []
        hints: list[torch.Tensor] = []
        for i, (control, weight) in enumerate(zip(controls, weights, strict=True)):
            embedder, blocks = self.control_branch(i if control.branch is None else control.branch)
            latent = control.latent.to(dtype)
            slots = cfg.latent_channels * cfg.control_max_modalities
            if latent.shape[1] > slots:
                raise ValueError(
                    f"control latent has {latent.shape[1]} channels; the branch takes at most {slots}"
                )
            latent = F.pad(
                latent, (0, 0, 0, 0, 0, 0, 0, slots - latent.shape[1])
            )  # zero channels, as officially
            c = embedder(torch.cat([latent, cond, pad], dim=1))
            scale = weight.to(dtype) if isinstance(weight, torch.Tensor) else weight
            for k, block in enumerate(blocks):
                c, hint = block.forward_control(c, tokens, *args, shared_halves=cfg_halves and k == 0)
                hint = hint * scale
                if i == 0:
                    hints.append(hint)
                else:
                    hints[k] = hints[k] + hint
        return hints
