"""The network and the VAE a job runs, built from a located model folder or as the tiny random model.

`--tiny`: the same network family at toy size (`TransferConfig.tiny`, `VAEConfig.tiny`) with seeded
random weights, or tiny-shaped weights from DIR when one is given. See `weights.locate` for the folder's
layout and `checkpoint.load_checkpoint` for where the backbone comes from.
"""

from __future__ import annotations

import torch

from cosmos_t2.model.checkpoint import load_checkpoint
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.vae import VAEConfig, WanVAE, build_vae, load_vae
from cosmos_t2.weights.locate import ModelFiles

TINY_NET_SEED = 0
TINY_VAE_SEED = 1
TINY_LABEL = "tiny random-weight model"
# What a DMD2 (distilled) training checkpoint carries besides the student `net.*`.
DISTILLED_EXTRA_PREFIXES = ("net_fake_score.", "net_teacher.", "discriminator.")


@torch.no_grad()
def randomize(net: torch.nn.Module, seed: int) -> None:
    """Seeded random values for every parameter, including those the official init zeroes (AdaLN
    up-projections, the control branch's before/after projections), so every path of the tiny model
    does something: std 1/sqrt(fan_in) for matrices, small values around 1 for norms, around 0 for biases."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in sorted(net.named_parameters()):
        if param.ndim >= 2:
            std = param[0].numel() ** -0.5
            values = torch.randn(param.shape, generator=gen) * std
        elif name.endswith("norm.weight") or ".q_norm." in name or ".k_norm." in name or "_norm." in name:
            values = 1.0 + 0.1 * torch.randn(param.shape, generator=gen)
        else:
            values = 0.02 * torch.randn(param.shape, generator=gen)
        param.copy_(values.to(param.dtype))


def build_net(
    files: ModelFiles,
    modalities: list[str],
    *,
    tiny: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[TransferNet, bool]:
    """The network with one control branch per modality; returns (net, distilled)."""
    config = TransferConfig.tiny() if tiny else TransferConfig.full_2b()
    branches = max(len(modalities), 1)
    if not files.checkpoints:
        net = TransferNet(config, num_control_branches=branches)
        randomize(net, TINY_NET_SEED)
        return net.to(device=device, dtype=dtype).eval().requires_grad_(False), False
    with torch.device("meta"):
        net = TransferNet(config, num_control_branches=branches)
    dropped = load_checkpoint(net, [files.checkpoints[m] for m in modalities], dtype=dtype)
    distilled = files.distilled or any(k.startswith(DISTILLED_EXTRA_PREFIXES) for k in dropped)
    return net.to(device).eval().requires_grad_(False), distilled


def build_tokenizer(
    files: ModelFiles,
    *,
    tiny: bool,
    device: torch.device,
    dtype: torch.dtype,
    channels_last: bool | None = None,
) -> WanVAE:
    """`channels_last=None`: on for CUDA (a VAE built in host memory for a GPU passes True)."""
    config = VAEConfig.tiny() if tiny else VAEConfig.wan21()
    if files.vae is None:
        return build_vae(config, dtype=dtype, device=device, seed=TINY_VAE_SEED, channels_last=channels_last)
    return load_vae(files.vae, config, dtype=dtype, device=device, channels_last=channels_last)
