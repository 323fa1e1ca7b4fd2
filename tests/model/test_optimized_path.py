"""The optimised path computes what the plain path computes.

Optimisations under test: the one-token image context (no reference image), torch.compile of the blocks, and
on GPU the bf16 weights with cuDNN attention. Tolerances: fp32 on CPU 1e-4 (compile reorders float sums, so
results differ by rounding only); bf16 on GPU 1e-2 relative (bf16 has an 8-bit mantissa: ~4e-3 per rounding).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cosmos_t2.model.compile import compile_blocks
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import ControlInput, TransferNet


def _net(cfg: TransferConfig, seed: int = 0) -> TransferNet:
    torch.manual_seed(seed)
    net = TransferNet(cfg, num_control_branches=2).eval()
    with torch.no_grad():  # official init zeroes the control projections; randomise so controls matter
        for p in net.parameters():
            p.normal_(0.0, p.shape[-1] ** -0.5 if p.ndim > 1 else 0.1).add_(1.0 if p.ndim == 1 else 0.0)
    return net


def _inputs(cfg: TransferConfig, device: str = "cpu", t: int = 3, h: int = 8, w: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    x = randn(2, cfg.latent_channels, t, h, w)
    timesteps = torch.rand(2, t, generator=g).to(device)
    text = randn(2, 7, cfg.crossattn_proj_in_channels)
    cond = torch.zeros(2, 1, t, 1, 1, device=device)
    cond[:, :, 0] = 1
    controls = [
        ControlInput(latent=randn(2, cfg.latent_channels, t, h, w), weight=0.7),
        ControlInput(latent=randn(2, cfg.latent_channels, t, h, w), weight=0.3),
    ]
    return (x, timesteps, text), {"condition_mask": cond, "controls": controls}


@torch.no_grad()
def test_one_token_image_context_equals_official_zero_tokens() -> None:
    cfg = TransferConfig.tiny()
    net = _net(cfg)
    args, kwargs = _inputs(cfg)
    zeros = torch.zeros(2, cfg.image_context_tokens, cfg.image_context_dim)
    official = net(*args, **kwargs, image_context=zeros)
    ours = net(*args, **kwargs)
    assert (ours - official).abs().max().item() <= 1e-5
    # and a real reference image still goes through the full attention (different output)
    image = torch.randn(2, cfg.image_context_tokens, cfg.image_context_dim)
    assert (net(*args, **kwargs, image_context=image) - official).abs().max().item() > 1e-3


@torch.no_grad()
def test_cfg_pair_shares_its_first_self_attention() -> None:
    """A CFG pair [a; a] differing only in text: attending once before the first cross-attention equals
    attending twice; a batch whose halves differ must not use the shortcut (the output would change)."""
    cfg = TransferConfig.tiny()
    net = _net(cfg)
    (x, timesteps, text), kwargs = _inputs(cfg)
    pair = {"condition_mask": kwargs["condition_mask"][:1].expand(2, -1, -1, -1, -1)}
    pair["controls"] = [
        ControlInput(latent=c.latent[:1].expand(2, -1, -1, -1, -1), weight=c.weight)
        for c in kwargs["controls"]
    ]
    x2, t2 = x[:1].expand(2, -1, -1, -1, -1), timesteps[:1].expand(2, -1)
    expected = net(x2, t2, text, **pair)
    got = net(x2, t2, text, **pair, cfg_halves=True)
    assert (got - expected).abs().max().item() <= 1e-5
    assert (got[0] - got[1]).abs().max().item() > 1e-3  # the text still differs between the halves
    unequal = net(x, timesteps, text, **kwargs, cfg_halves=True)
    assert (unequal - net(x, timesteps, text, **kwargs)).abs().max().item() > 1e-3


@torch.no_grad()
def test_compiled_blocks_match_eager_fp32_cpu() -> None:
    cfg = dataclasses.replace(TransferConfig.tiny(), num_blocks=3)
    eager = _net(cfg)
    compiled = compile_blocks(_net(cfg))
    args, kwargs = _inputs(cfg)
    expected = eager(*args, **kwargs)
    got = compiled(*args, **kwargs)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4
    assert set(compiled.state_dict()) == set(eager.state_dict())  # compile keeps official key names


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["auto", "cudnn", "fa4"])
@torch.no_grad()
def test_optimised_bf16_gpu_matches_plain_fp32(backend: str) -> None:
    """bf16 weights + fast attention + compiled blocks vs fp32 eager math attention, at full width."""
    from cosmos_t2.model.attention import fa4_unavailable_reason

    if backend == "fa4" and fa4_unavailable_reason() is not None:
        pytest.skip(f"FlashAttention-4: {fa4_unavailable_reason()}")
    cfg = dataclasses.replace(TransferConfig.full_2b(), num_blocks=4, control_block_every_n=2)
    plain = _net(cfg).cuda()
    plain.set_attention_backend("math")
    fast = compile_blocks(_net(cfg).cuda().to(torch.bfloat16))
    fast.set_attention_backend(backend)
    args, kwargs = _inputs(cfg, "cuda", t=4, h=16, w=24)
    expected = plain(*args, **kwargs)
    got = fast(*args, **kwargs)
    rel = ((got.float() - expected).norm() / expected.norm()).item()
    assert rel <= 1e-2, rel
