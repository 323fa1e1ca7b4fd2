"""Checkpoint loading: the full official 2B key set (on the meta device), strictness, file errors, conversion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _diffusers_keys import (
    controlnet_kwargs,
    controlnet_to_official,
    transformer_kwargs,
    transformer_to_official,
)
from diffusers import CosmosControlNetModel, CosmosTransformer3DModel
from typer.testing import CliRunner

from cosmos_t2.cli import app
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.checkpoint import (
    convert_checkpoint,
    expected_keys,
    load_checkpoint,
    load_state_dict_strict,
    official_state_dict,
    read_state_dict,
)
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import ControlInput, TransferNet

FULL = TransferConfig.full_2b()
TINY = TransferConfig.tiny()


def _meta_net(branches: int = 1) -> TransferNet:
    with torch.device("meta"):
        return TransferNet(FULL, num_control_branches=branches)


@pytest.fixture(scope="module")
def diffusers_full_keys() -> dict[str, tuple[int, ...]]:
    """Official key -> shape of the released 2B model, derived independently from diffusers' classes built at
    the conversion script's "Cosmos-2.5-Transfer-General-2B" size."""
    with torch.device("meta"):
        transformer = CosmosTransformer3DModel(**transformer_kwargs(FULL))
        controlnet = CosmosControlNetModel(**controlnet_kwargs(FULL))
    keys = transformer_to_official(transformer.state_dict()) | controlnet_to_official(controlnet.state_dict())
    counts = {
        "transformer": sum(p.numel() for p in transformer.parameters()),
        "controlnet": sum(p.numel() for p in controlnet.parameters()),
    }
    return {"keys": {k: tuple(v.shape) for k, v in keys.items()}, "counts": counts}


def test_full_2b_key_set_and_parameter_counts(diffusers_full_keys: dict) -> None:
    net = _meta_net()
    ours = expected_keys(FULL)
    assert ours == diffusers_full_keys["keys"]
    assert len(ours) == len(net.state_dict()) == 822
    counts = net.parameter_counts()
    # Backbone incl. the 100352->1024 text projection and the image-context projection: 2.414 B.
    assert counts["backbone"] == 2_413_864_960 == diffusers_full_keys["counts"]["transformer"]
    # Control branch by official keys: 0.349 B. diffusers' CosmosControlNetModel (0.471 B) also holds copies of
    # the shared patch embedding, timestep embedding and text/image projections.
    assert counts["control"] == 349_205_504
    shared = sum(
        p.numel()
        for name, p in net.named_parameters()
        if name.startswith(
            ("x_embedder.", "t_embedder.", "t_embedding_norm.", "crossattn_proj.", "img_context_proj.")
        )
    )
    assert counts["control"] + shared == diffusers_full_keys["counts"]["controlnet"]
    assert round(diffusers_full_keys["counts"]["controlnet"] / 1e9, 3) == 0.471
    assert FULL.control_layers == (0, 7, 14, 21)
    assert FULL.control_in_channels == 130


def _synthetic_official(net: TransferNet) -> dict[str, torch.Tensor]:
    """Every official key as a meta tensor, wrapped as in a released .pt: `net.` prefix and non-weights."""
    state = {f"net.{k}": torch.empty(v.shape, device="meta") for k, v in net.state_dict().items()}
    state["net.accum_video_sample_counter"] = torch.empty((), device="meta")
    state["net.blocks.0.self_attn.attn_op._extra_state"] = torch.empty(0, device="meta")
    state["net.pos_embedder.seq"] = torch.empty(128, device="meta")
    state["logvar.0.freqs"] = torch.empty(128, device="meta")
    return state


def test_strict_loading_accepts_official_keys_and_names_every_problem() -> None:
    net = _meta_net()
    state, dropped = official_state_dict(_synthetic_official(net))
    assert sorted(dropped) == sorted(
        [
            "net.accum_video_sample_counter",
            "net.blocks.0.self_attn.attn_op._extra_state",
            "net.pos_embedder.seq",
            "logvar.0.freqs",
        ]
    )
    load_state_dict_strict(net, state, dtype=torch.bfloat16)
    assert net.blocks[27].mlp.layer2.weight.dtype == torch.bfloat16

    missing = dict(state)
    del missing["blocks.5.cross_attn.k_img.weight"]
    with pytest.raises(CosmosError, match=r"1 missing key\(s\): blocks\.5\.cross_attn\.k_img\.weight"):
        load_state_dict_strict(_meta_net(), missing, file="edge.pt")

    extra = dict(state) | {"blocks.28.mlp.layer1.weight": torch.empty(1, device="meta")}
    with pytest.raises(
        CosmosError, match=r"edge\.pt: .*1 unexpected key\(s\): blocks\.28\.mlp\.layer1\.weight"
    ):
        load_state_dict_strict(_meta_net(), extra, file="edge.pt")

    shaped = dict(state) | {"crossattn_proj.0.weight": torch.empty(1024, 4096, device="meta")}
    with pytest.raises(
        CosmosError, match=r"1 mis-shaped key\(s\): crossattn_proj\.0\.weight \(1024, 4096\) in file"
    ):
        load_state_dict_strict(_meta_net(), shaped)


def _save_tiny_official(net: TransferNet, path: Path) -> None:
    torch.save({f"net.{k}": v.clone() for k, v in net.state_dict().items()}, path)


def _randomise(net: TransferNet, seed: int) -> TransferNet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


def _velocity(net: TransferNet, controls: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    latents = [ControlInput(torch.randn(1, 16, 2, 4, 4, generator=g), weight=0.5) for _ in range(controls)]
    with torch.no_grad():
        return net(
            x,
            torch.tensor([0.5]),
            torch.randn(1, 3, 64, generator=g),
            condition_mask=torch.zeros(1, 1, 2, 4, 4),
            controls=latents,
        )


def test_round_trip_pt_and_safetensors_and_cli(tmp_path: Path) -> None:
    source = _randomise(TransferNet(TINY), seed=1)
    _save_tiny_official(source, tmp_path / "edge.pt")
    loaded = TransferNet(TINY).eval()
    load_checkpoint(loaded, tmp_path / "edge.pt")
    assert torch.equal(_velocity(loaded, 1), _velocity(source, 1))

    out = convert_checkpoint(tmp_path / "edge.pt", tmp_path / "edge.safetensors", TINY, dtype=None)
    again = TransferNet(TINY).eval()
    load_checkpoint(again, out)
    assert torch.equal(_velocity(again, 1), _velocity(source, 1))

    result = CliRunner().invoke(
        app, ["convert-checkpoint", str(tmp_path / "edge.pt"), str(tmp_path / "cli.safetensors"), "--tiny"]
    )
    assert result.exit_code == 0, result.output
    assert read_state_dict(tmp_path / "cli.safetensors")["blocks.0.mlp.layer1.weight"].dtype == torch.bfloat16
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_one_file_per_modality_loads_branches(tmp_path: Path) -> None:
    edge = _randomise(TransferNet(TINY), seed=2)
    depth = _randomise(TransferNet(TINY), seed=3)
    _save_tiny_official(edge, tmp_path / "edge.pt")
    _save_tiny_official(depth, tmp_path / "depth.pt")
    net = TransferNet(TINY, num_control_branches=2).eval()
    load_checkpoint(net, [tmp_path / "edge.pt", tmp_path / "depth.pt"])
    assert torch.equal(
        net.blocks[1].mlp.layer1.weight, edge.blocks[1].mlp.layer1.weight
    )  # backbone: first file
    assert torch.equal(net.control_blocks_1[0].after_proj.weight, depth.control_blocks[0].after_proj.weight)
    assert torch.equal(net.control_embedder[0].proj[1].weight, edge.control_embedder.proj[1].weight)
    with pytest.raises(CosmosError, match="3 checkpoint files"):
        load_checkpoint(net, [tmp_path / "edge.pt"] * 3)


def test_bad_files_are_clear_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(CosmosError, match=r"missing\.pt: checkpoint file not found"):
        read_state_dict(tmp_path / "missing.pt")

    good = tmp_path / "edge.pt"
    _save_tiny_official(TransferNet(TINY), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CosmosError, match=r"truncated\.pt: not a readable PyTorch checkpoint"):
        read_state_dict(truncated)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CosmosError, match=r"garbage\.safetensors: not a readable safetensors file"):
        read_state_dict(garbage)

    not_weights = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(CosmosError, match=r"list\.pt: the file holds no state dict"):
        read_state_dict(not_weights)

    wrong_model = tmp_path / "wrong.pt"
    torch.save({"net.encoder.weight": torch.zeros(2)}, wrong_model)
    with pytest.raises(CosmosError, match=r"wrong\.pt: checkpoint does not match the TransferNet network"):
        load_checkpoint(TransferNet(TINY), wrong_model)

    result = CliRunner().invoke(
        app, ["convert-checkpoint", str(truncated), str(tmp_path / "x.safetensors"), "--tiny"]
    )
    assert result.exit_code != 0 and isinstance(result.exception, CosmosError)
