"""Counted work of one denoising step, and the floor it implies at measured rates.

The floor is what no implementation of the *exact* computation can beat on a given GPU: the step's matmul
FLOPs over the measured bf16 matmul rate plus its attention FLOPs over the measured attention rate. Elementwise
work (norms, RoPE, modulation) is memory-bound and small next to these at 720p, so it is left out of the floor:
the gap between a measured step and the floor is what those ops and launch overheads cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosmos_t2.model.config import TransferConfig


@dataclass(frozen=True)
class StepShape:
    """One denoising step: `batch` network passes (2 for CFG) over a latent grid (T, H, W)."""

    latent_frames: int
    latent_height: int
    latent_width: int
    text_tokens: int = 512
    batch: int = 2
    num_controls: int = 1
    # Reference-image tokens: 0 or 1 when no image is given (the one-token shortcut in the cross-attention:
    # one value projection, no attention), 256 with a style reference.
    image_tokens: int = 1
    # The CFG pair shares its tokens until the first cross-attention: the first self-attention of the
    # backbone and of each control branch runs once for both passes (`TransferNet(cfg_halves=True)`).
    cfg_shared_first_attention: bool = True

    def tokens(self, cfg: TransferConfig) -> int:
        pt, ph, pw = cfg.patch_size
        return (self.latent_frames // pt) * (self.latent_height // ph) * (self.latent_width // pw)


@dataclass(frozen=True)
class StepFlops:
    matmul: float
    attention: float

    @property
    def total(self) -> float:
        return self.matmul + self.attention

    def floor_seconds(self, matmul_tflops: float, attention_tflops: float) -> float:
        return self.matmul / (matmul_tflops * 1e12) + self.attention / (attention_tflops * 1e12)


def _block_flops(
    cfg: TransferConfig, tokens: int, text_tokens: int, image_tokens: int
) -> tuple[float, float]:
    """(matmul, attention) FLOPs of one DiT block for one sample."""
    d, n = cfg.model_channels, tokens
    ctx = cfg.crossattn_emb_channels
    matmul = 8 * n * d * d  # self-attention q, k, v, out projections
    matmul += 4 * n * d * d + 4 * text_tokens * ctx * d  # cross-attention q, out; k, v of the text
    matmul += 4 * n * d * int(d * cfg.mlp_ratio)  # MLP up and down
    attention = 4 * n * n * d  # QK^T and PV of self-attention
    attention += 4 * n * text_tokens * d
    if cfg.image_context_dim is not None and image_tokens == 1:
        matmul += 2 * d * d  # v of the single token, broadcast to every query
    elif cfg.image_context_dim is not None and image_tokens > 1:
        matmul += 2 * n * d * d + 4 * image_tokens * d * d
        attention += 4 * n * image_tokens * d
    return float(matmul), float(attention)


def step_flops(cfg: TransferConfig, shape: StepShape) -> StepFlops:
    """FLOPs of one step: backbone + every control branch, for `shape.batch` passes.

    Text projection (100352 -> 1024) is excluded: it depends only on the prompt and is done once per job.
    """
    n = shape.tokens(cfg)
    d = cfg.model_channels
    patch = cfg.patch_temporal * cfg.patch_spatial**2
    block_mm, block_attn = _block_flops(cfg, n, shape.text_tokens, shape.image_tokens)
    blocks = cfg.num_blocks + shape.num_controls * cfg.num_control_blocks
    matmul = blocks * block_mm
    matmul += 2 * n * cfg.x_in_channels * patch * d  # x embedder
    matmul += shape.num_controls * 2 * n * cfg.control_in_channels * patch * d  # control embedders
    matmul += shape.num_controls * (cfg.num_control_blocks + 1) * 2 * n * d * d  # before/after projections
    matmul += 2 * n * d * cfg.latent_channels * patch  # final layer
    matmul, attention = shape.batch * matmul, shape.batch * blocks * block_attn
    if shape.batch == 2 and shape.cfg_shared_first_attention:
        shared = 1 + shape.num_controls  # backbone block 0 and each branch's control block 0
        matmul -= shared * 8 * n * d * d  # q, k, v, out projections of one pass
        attention -= shared * 4 * n * n * d
    return StepFlops(matmul=matmul, attention=attention)
