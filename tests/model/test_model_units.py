"""Behaviour of TransferNet beyond parity: initialisation, weights, hooks, precision, input conventions."""

from __future__ import annotations

import pytest
import torch

from cosmos_t2.model.attention import attention, attention_kernel
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import ControlInput, TransferNet
from cosmos_t2.model.rope import rope_table

CFG = TransferConfig.tiny()
B, T, H, W = 2, 3, 4, 6


def _inputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(B, 16, T, H, W, generator=g),
        "timesteps": torch.rand(B, generator=g),
        "text_emb": torch.randn(B, 5, CFG.crossattn_proj_in_channels, generator=g),
        "condition_mask": torch.zeros(B, 1, T, H, W),
        "control": torch.randn(B, 16, T, H, W, generator=g),
    }


def _run(net: TransferNet, inp: dict, controls: list[ControlInput], **kw: object) -> torch.Tensor:
    with torch.no_grad():
        return net(
            inp["x"], kw.pop("timesteps", inp["timesteps"]), kw.pop("text_emb", inp["text_emb"]),
            condition_mask=inp["condition_mask"], controls=controls, **kw,
        )  # fmt: skip


def _random_net(branches: int = 1, seed: int = 0) -> TransferNet:
    net = TransferNet(CFG, num_control_branches=branches).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)  # un-zero the zero-initialised projections
    return net


def test_fresh_control_branch_is_a_no_op() -> None:
    torch.manual_seed(0)
    net = TransferNet(CFG).eval()
    inp = _inputs()
    assert net.control_blocks[0].before_proj.weight.abs().sum() == 0
    assert all(b.after_proj.weight.abs().sum() == 0 for b in net.control_blocks)
    assert torch.equal(_run(net, inp, [ControlInput(inp["control"])]), _run(net, inp, []))


def test_control_weight_scales_hints_per_sample() -> None:
    net, inp = _random_net(), _inputs(1)
    none = _run(net, inp, [])
    full = _run(net, inp, [ControlInput(inp["control"], weight=1.0)])
    assert (full - none).abs().max() > 1e-3
    zero = _run(net, inp, [ControlInput(inp["control"], weight=0.0)])
    assert torch.allclose(zero, none, atol=1e-6)
    mixed = _run(net, inp, [ControlInput(inp["control"], weight=torch.tensor([1.0, 0.0]))])
    assert torch.allclose(mixed[0], full[0], atol=1e-6) and torch.allclose(mixed[1], none[1], atol=1e-6)


def test_timestep_shapes_and_projected_text_are_equivalent() -> None:
    net, inp = _random_net(), _inputs(2)
    controls = [ControlInput(inp["control"], weight=0.5)]
    ref = _run(net, inp, controls)
    per_frame = inp["timesteps"][:, None].expand(
        B, T
    )  # same values; per-frame broadcasting rounds differently
    assert torch.allclose(_run(net, inp, controls, timesteps=per_frame), ref, atol=1e-5)
    assert torch.allclose(
        _run(net, inp, controls, timesteps=per_frame.reshape(B, 1, T, 1, 1)), ref, atol=1e-5
    )
    projected = net.project_text(inp["text_emb"])
    assert projected.shape[-1] == CFG.crossattn_emb_channels
    assert torch.allclose(_run(net, inp, controls, text_emb=projected), ref, atol=1e-6)
    with pytest.raises(ValueError, match="text_emb has 7 channels"):
        _run(net, inp, controls, text_emb=torch.zeros(B, 5, 7))


def test_attention_hook_sees_every_self_attention() -> None:
    net, inp = _random_net(branches=2), _inputs(3)
    calls: list[tuple[int, ...]] = []
    default = net.attn_fn

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(q.shape))
        return default(q, k, v)

    net.attn_fn = spy
    controls = [ControlInput(inp["control"], branch=1), ControlInput(inp["control"], branch=0)]
    _run(net, inp, controls)
    tokens = T * (H // 2) * (W // 2)
    assert len(calls) == CFG.num_blocks + 2 * CFG.num_control_blocks
    assert set(calls) == {(B, tokens, CFG.num_heads, CFG.head_dim)}


def test_attention_backends_agree_and_bad_names_fail() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 10, 2, 16, generator=g) for _ in range(3))
    reference = torch.softmax(torch.einsum("blhd,bmhd->bhlm", q, k) / 4.0, dim=-1)
    reference = torch.einsum("bhlm,bmhd->blhd", reference, v)
    assert torch.allclose(attention(q, k, v, "math"), reference, atol=1e-5)
    assert torch.allclose(attention(q, k, v, "auto"), reference, atol=1e-5)
    with pytest.raises(ValueError, match="unknown attention backend"):
        attention(q, k, v, "fast")


def test_fa4_backend_off_gpu_fails_clearly() -> None:
    q = torch.randn(1, 8, 2, 16)
    with pytest.raises(RuntimeError, match="attention backend 'fa4' can't run"):
        attention(q, q, q, "fa4")
    cpu = torch.device("cpu")
    assert attention_kernel("auto", cpu) == "sdpa (PyTorch's choice)"
    assert attention_kernel("cudnn", cpu) == "cudnn"  # a named backend is what runs, or an error


def test_rope_tables_slice_along_frames() -> None:
    cos, sin = rope_table((4, 3, 5), CFG.head_dim)
    cos2, sin2 = rope_table((2, 3, 5), CFG.head_dim)
    assert cos.shape == (60, CFG.head_dim)
    assert torch.equal(cos[:30], cos2) and torch.equal(sin[:30], sin2)


def test_bf16_forward_tracks_fp32() -> None:
    net, inp = _random_net(seed=4), _inputs(4)
    controls = [ControlInput(inp["control"], weight=0.7)]
    ref = _run(net, inp, controls)
    low = _run(net.to(torch.bfloat16), inp, controls)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - ref).abs().max() / ref.abs().max() < 0.05


def test_input_errors_are_explicit() -> None:
    net, inp = _random_net(), _inputs(5)
    bad_mask = ControlInput(inp["control"], mask=torch.ones(B, 1, T, H, W))  # latent grid, not token grid
    with pytest.raises(ValueError, match="use mask_video_to_token_grid"):
        _run(net, inp, [bad_mask])
    with pytest.raises(ValueError, match="control branch 1 requested"):
        _run(net, inp, [ControlInput(inp["control"], branch=1)])
    with pytest.raises(ValueError, match="at most 32"):
        _run(net, inp, [ControlInput(torch.zeros(B, 40, T, H, W))])
