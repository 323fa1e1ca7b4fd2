"""Shape of the Cosmos-Transfer2.5 network: the released 2B model and a tiny one of the same family.

Every value of `full_2b()` comes from nvidia-cosmos/cosmos-transfer2.5:
- `cosmos_transfer2/_src/transfer2/configs/vid2vid_transfer/defaults/net.py` (TRANSFER2_CONTROL2WORLD_NET_2B:
  2048 channels, 28 blocks, 16 heads, patch 1x2x2, max size 128x240x240, AdaLN-LoRA 256, rope3d),
- `.../vid2vid_transfer/experiment/exp_large_scale.py`, experiment
  `vid2vid_2B_control_720p_t24_control_layer4_cr1pt1_embedding_rectified_flow` (RoPE extrapolation h=3, w=3, t=1,
  no fps modulation, timestep_scale 0.001, cross-attention projection 100352 -> 1024, vace_block_every_n=7) and its
  `..._with_image_context_with_image_data` variant (extra_image_context_dim=1152, separate image query),
- `cosmos_transfer2/_src/transfer2/networks/minimal_v4_lvg_dit_control_vace.py` (control input: 16 latent channels
  x num_max_modalities 8, + condition mask, + padding mask = 130 channels),
and agrees with diffusers' `scripts/convert_cosmos_to_diffusers.py` ("Cosmos-2.5-Transfer-General-2B").
"""

from __future__ import annotations

from dataclasses import dataclass

# Frames per latent frame after the first one (Wan2.1 VAE): F pixel frames <-> 1 + (F - 1) // 4 latent frames.
TEMPORAL_COMPRESSION = 4


@dataclass(frozen=True)
class TransferConfig:
    """The backbone + control-branch network; field names follow the official constructor arguments."""

    latent_channels: int = 16  # VAE latent channels (in_channels / out_channels officially)
    model_channels: int = 2048
    num_heads: int = 16
    num_blocks: int = 28
    mlp_ratio: float = 4.0
    patch_temporal: int = 1
    patch_spatial: int = 2
    max_size: tuple[int, int, int] = (128, 240, 240)  # (frames, height, width) of the latent grid
    adaln_lora_dim: int = 256
    # RoPE NTK extrapolation ratios (t, h, w); the released model has fps modulation off.
    rope_scale: tuple[float, float, float] = (1.0, 3.0, 3.0)
    rope_theta: float = 10000.0
    # Text: Cosmos-Reason1 hidden states (28 layers x 3584) projected to the cross-attention width.
    crossattn_proj_in_channels: int = 100352
    crossattn_emb_channels: int = 1024
    # Reference-image context: SigLIP2 tokens, projected to model_channels; None disables it.
    image_context_dim: int | None = 1152
    image_context_tokens: int = 256
    # Control branch: one control block per `control_block_every_n` backbone blocks, starting at block 0.
    control_block_every_n: int = 7
    control_max_modalities: int = 8  # control latents are zero-padded to latent_channels * this
    # Official timesteps are t in [0, 1000] times timestep_scale; we take the product (sigma in [0, 1]).
    timestep_scale: float = 0.001
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.model_channels // self.num_heads

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return (self.patch_temporal, self.patch_spatial, self.patch_spatial)

    @property
    def x_in_channels(self) -> int:
        """Backbone input: latents + condition mask + padding mask."""
        return self.latent_channels + 2

    @property
    def control_in_channels(self) -> int:
        """Control input: padded control latents + condition mask + padding mask (130 at 2B)."""
        return self.latent_channels * self.control_max_modalities + 2

    @property
    def control_layers(self) -> tuple[int, ...]:
        """Backbone blocks that receive a control hint, in order (0, 7, 14, 21 at 2B)."""
        return tuple(range(0, self.num_blocks, self.control_block_every_n))

    @property
    def num_control_blocks(self) -> int:
        return len(self.control_layers)

    @classmethod
    def full_2b(cls) -> TransferConfig:
        """The released Cosmos-Transfer2.5-2B network (general edge/blur/depth/seg checkpoints)."""
        return cls()

    @classmethod
    def tiny(cls) -> TransferConfig:
        """Same family at toy size for CPU tests: 5 blocks, hints into blocks 0, 2, 4.

        Text input is 64 channels (the tiny random text encoder: 2 layers x 32) projected to 32.
        """
        return cls(
            model_channels=64,
            num_heads=2,
            num_blocks=5,
            adaln_lora_dim=16,
            crossattn_proj_in_channels=64,
            crossattn_emb_channels=32,
            image_context_dim=24,
            image_context_tokens=8,
            control_block_every_n=2,
            control_max_modalities=2,
        )

    def __post_init__(self) -> None:
        if self.model_channels % self.num_heads:
            raise ValueError("model_channels must be a multiple of num_heads")
        if self.head_dim % 2 or self.head_dim < 12:
            raise ValueError("head_dim must be even and >= 12 for the 3D RoPE split")
