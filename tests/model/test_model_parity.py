"""Parity of TransferNet with diffusers' CosmosTransformer3DModel + CosmosControlNetModel (tiny, fp32, CPU).

The same random weights go into both through the official key names. Tolerance: max abs error <= 1e-4 in fp32;
both sides compute the same operations in a different order (fused vs per-token modulation, table layout), so
differences are float rounding only (observed <= 2.1e-5 on outputs of size ~1). diffusers runs one controlnet per modality; several
controls are combined on the diffusers side as the official multi-branch network does: sum of weight * hints.
"""

from __future__ import annotations

import pytest
import torch
from _diffusers_keys import build_diffusers_models, diffusers_to_official_state_dict

from cosmos_t2.model.checkpoint import load_state_dict_strict
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import ControlInput, TransferNet, mask_video_to_token_grid

CFG = TransferConfig.tiny()
T, H, W = 3, 8, 8  # latent grid; tokens (3, 4, 4)
TOL = 1e-4


def _models(n_controls: int, seed: int = 0):
    transformer, controlnets = build_diffusers_models(CFG, n_controls, seed)
    net = TransferNet(CFG, num_control_branches=n_controls).eval()
    state = diffusers_to_official_state_dict(transformer.state_dict(), [c.state_dict() for c in controlnets])
    load_state_dict_strict(net, state)
    return transformer, controlnets, net


def _inputs(batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cond = torch.zeros(batch, 1, T, H, W)
    cond[:, :, 0] = 1.0  # one conditioning latent frame
    sigma = torch.rand(batch, 1, generator=g) * 0.9 + 0.05
    timesteps = torch.where(cond[:, 0, :, 0, 0] > 0, torch.tensor(0.1), sigma)  # (B, T), per frame
    return {
        "x": torch.randn(batch, CFG.latent_channels, T, H, W, generator=g),
        "timesteps": timesteps,
        "text": torch.randn(batch, 7, CFG.crossattn_proj_in_channels, generator=g),
        "image": torch.randn(batch, CFG.image_context_tokens, CFG.image_context_dim, generator=g),
        "cond": cond,
        "controls": [torch.randn(batch, CFG.latent_channels, T, H, W, generator=g) for _ in range(2)],
    }


@torch.no_grad()
def _diffusers_velocity(transformer, controlnets, scales, inp, image, padding_mask=None) -> torch.Tensor:
    b = inp["x"].shape[0]
    t5 = inp["timesteps"].view(b, 1, T, 1, 1)
    pad = torch.zeros(1, 1, H * 8, W * 8) if padding_mask is None else padding_mask
    context = (inp["text"], image)
    hints = None
    for net, latent, scale in zip(controlnets, inp["controls"], scales, strict=False):
        out = net(
            controls_latents=latent,
            latents=inp["x"],
            timestep=t5,
            encoder_hidden_states=context,
            condition_mask=inp["cond"],
            conditioning_scale=scale,
            padding_mask=pad,
            return_dict=False,
        )[0]
        hints = out if hints is None else [a + b for a, b in zip(hints, out, strict=True)]
    return transformer(
        hidden_states=inp["x"],
        timestep=t5,
        encoder_hidden_states=context,
        block_controlnet_hidden_states=hints,
        condition_mask=inp["cond"],
        padding_mask=pad,
        return_dict=False,
    )[0]


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def test_one_control_matches_diffusers() -> None:
    transformer, controlnets, net = _models(1)
    inp = _inputs(batch=1)
    zeros_image = torch.zeros(1, CFG.image_context_tokens, CFG.image_context_dim)
    expected = _diffusers_velocity(transformer, controlnets, [0.8], inp, zeros_image)
    # image_context=None must mean "zeros", as in the official and diffusers pipelines.
    ours = net(
        inp["x"],
        inp["timesteps"],
        inp["text"],
        condition_mask=inp["cond"],
        controls=[ControlInput(inp["controls"][0], weight=0.8)],
    )
    assert ours.shape == expected.shape
    assert _max_err(ours, expected) <= TOL
    # The control really matters (hints are not zero): dropping it changes the output.
    without = net(inp["x"], inp["timesteps"], inp["text"], condition_mask=inp["cond"], controls=[])
    assert _max_err(without, expected) > 100 * TOL


@torch.no_grad()
def test_two_controls_with_different_weights_match_diffusers() -> None:
    transformer, controlnets, net = _models(2)
    inp = _inputs(batch=1, seed=2)
    expected = _diffusers_velocity(transformer, controlnets, [0.7, 0.3], inp, inp["image"])
    controls = [ControlInput(inp["controls"][0], weight=0.7), ControlInput(inp["controls"][1], weight=0.3)]
    ours = net(
        inp["x"],
        inp["timesteps"],
        inp["text"],
        condition_mask=inp["cond"],
        controls=controls,
        image_context=inp["image"],
    )
    assert _max_err(ours, expected) <= TOL
    # Branch order matters: swapping which branch sees which latent gives another result.
    swapped = [ControlInput(c.latent, c.weight, branch=1 - i) for i, c in enumerate(controls)]
    other = net(
        inp["x"],
        inp["timesteps"],
        inp["text"],
        condition_mask=inp["cond"],
        controls=swapped,
        image_context=inp["image"],
    )
    assert _max_err(other, expected) > 100 * TOL


def test_mask_video_to_token_grid_follows_official_rule() -> None:
    # Pixel mask: frame 0 off; later frames on in the left half. Token grid (3, 4, 4), 16 pixels per token.
    mask = torch.zeros(1, 1, 4 * (T - 1) + 1, H * 8, W * 8)
    mask[:, :, 1:, :, : W * 4] = 1.0
    tokens = mask_video_to_token_grid(mask, (T, H, W))
    expected = torch.zeros(1, 1, T, H // 2, W // 2)
    expected[:, :, 1:, :, : W // 4] = 1.0
    assert torch.equal(tokens, expected)
    with pytest.raises(ValueError, match="frames"):
        mask_video_to_token_grid(mask[:, :, :4], (T, H, W))


@torch.no_grad()
def test_spatiotemporal_mask_matches_diffusers() -> None:
    transformer, controlnets, net = _models(2)
    inp = _inputs(batch=1, seed=3)
    mask = torch.zeros(1, 1, 4 * (T - 1) + 1, H * 8, W * 8)
    mask[:, :, 1:, :, : W * 4] = 1.0
    token_mask = mask_video_to_token_grid(mask, (T, H, W))
    # Official rule: control 0 gets mask * 0.9, control 1 gets 0.6 everywhere; where they overlap the sum 1.5
    # is scaled to 1 (0.6 and 0.4), elsewhere control 1 keeps 0.6.
    m0, m1 = token_mask * 0.9, torch.full_like(token_mask, 0.6)
    scale = 1.0 / (m0 + m1).clamp_min(1.0)
    maps = [(m * scale).flatten(2).transpose(1, 2) for m in (m0, m1)]  # (B, L, 1)
    scales = [[m] * CFG.num_control_blocks for m in maps]
    expected = _diffusers_velocity(transformer, controlnets, scales, inp, inp["image"])
    controls = [
        ControlInput(inp["controls"][0], weight=0.9, mask=token_mask),
        ControlInput(inp["controls"][1], weight=0.6),
    ]
    ours = net(
        inp["x"],
        inp["timesteps"],
        inp["text"],
        condition_mask=inp["cond"],
        controls=controls,
        image_context=inp["image"],
    )
    assert _max_err(ours, expected) <= TOL


@torch.no_grad()
def test_cfg_batch_of_two_matches_diffusers() -> None:
    transformer, controlnets, net = _models(1, seed=4)
    inp = _inputs(batch=2, seed=5)  # two different prompts (cond / uncond), per-frame timesteps
    padding = torch.zeros(1, 1, H * 8, W * 8)
    padding[..., -16:] = 1.0  # a padded strip on the right, exercising the padding-mask channel
    expected = _diffusers_velocity(transformer, controlnets, [1.0], inp, inp["image"], padding_mask=padding)
    ours = net(
        inp["x"],
        inp["timesteps"],
        inp["text"],
        condition_mask=inp["cond"],
        controls=[ControlInput(inp["controls"][0])],
        padding_mask=padding,
        image_context=inp["image"],
    )
    assert _max_err(ours, expected) <= TOL
    # Each batch entry equals its own single-sample forward (no cross-talk in the batched CFG pass).
    single = net(
        inp["x"][1:],
        inp["timesteps"][1:],
        inp["text"][1:],
        condition_mask=inp["cond"][1:],
        controls=[ControlInput(inp["controls"][0][1:])],
        padding_mask=padding,
        image_context=inp["image"][1:],
    )
    assert _max_err(single, ours[1:]) <= TOL
