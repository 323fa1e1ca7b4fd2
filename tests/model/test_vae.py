"""The Wan2.1 VAE: parity with diffusers' AutoencoderKLWan (independent implementation, same weights),
chunk invariance, official key names, strict loading, tiling, and the bench function's code path."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from safetensors.torch import save_file

from cosmos_t2.bench.vae import bench_vae
from cosmos_t2.errors import CosmosError
from cosmos_t2.model.vae import (
    VAEConfig,
    WanVAE,
    _blend_tiles,
    _tile_spans,
    build_vae,
    load_vae,
)
from cosmos_t2.model.vae_blocks import StreamState


def _diffusers_vae(config: VAEConfig) -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=config.base_dim,
        z_dim=config.z_dim,
        dim_mult=list(config.dim_mult),
        num_res_blocks=config.num_res_blocks,
        attn_scales=list(config.attn_scales),
        temperal_downsample=list(config.temporal_downsample),
    )


def _official_to_diffusers(official_keys: list[str]) -> dict[str, str]:
    """diffusers' own official->diffusers key conversion, as a name map (official name -> diffusers)."""
    converted = convert_wan_vae_to_diffusers({k: k for k in official_keys})
    return {official: new for new, official in converted.items()}


@pytest.fixture(scope="module")
def tiny_pair() -> tuple[WanVAE, AutoencoderKLWan]:
    """Ours and diffusers' tiny VAE with the same random weights (moved from diffusers into our
    official-named modules through the inverted conversion map)."""
    config = VAEConfig.tiny()
    torch.manual_seed(0)
    oracle = _diffusers_vae(config).eval()
    with torch.no_grad():
        for p in oracle.parameters():  # default init leaves gammas at 1 and biases at 0: perturb them all
            p.add_(torch.randn_like(p) * 0.1)
    ours = WanVAE(config).eval()
    names = _official_to_diffusers(list(ours.state_dict()))
    oracle_sd = oracle.state_dict()
    ours.load_state_dict({k: oracle_sd[names[k]] for k in ours.state_dict()}, strict=True)
    return ours, oracle


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand((1, 3, 9, 32, 48), generator=gen) * 2 - 1


def test_encode_decode_match_diffusers(tiny_pair, clip) -> None:
    # fp32 on CPU; both implementations do the same arithmetic in a slightly different order
    # (fused norm gain, no spatial pre-padding), so 1e-4 leaves ~10x headroom over what we see.
    ours, oracle = tiny_pair
    mean = torch.tensor(oracle.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(oracle.config.latents_std).view(1, -1, 1, 1, 1)
    latent = ours.encode(clip)
    with torch.no_grad():
        mu = oracle.encode(clip).latent_dist.mode()
    assert latent.shape == (1, 16, 3, 4, 6)
    assert (latent - (mu - mean) / std).abs().max() <= 1e-4

    video = ours.decode(latent)
    with torch.no_grad():
        expected = oracle.decode(latent * std + mean).sample
    assert video.shape == clip.shape
    # the comparison is meaningful only if most values are not clamped at +-1
    assert (expected.abs() < 0.999).float().mean() > 0.5
    assert (video - expected).abs().max() <= 1e-4


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_chunked_decode_equals_one_shot(tiny_pair, clip) -> None:
    # The causal cache makes chunking invisible. oneDNN picks other conv kernels for other frame
    # counts, which moves fp32 sums by a few 1e-6 over this 30-conv decoder; with the plain
    # (im2col) conv the arithmetic per output is identical, so the check is free of that noise.
    ours, _ = tiny_pair
    latent = ours.encode(clip)
    with torch.backends.mkldnn.flags(enabled=False):
        one_shot = ours.decode(latent, chunk_frames=None)
        for chunk in (1, 2):
            assert (ours.decode(latent, chunk_frames=chunk) - one_shot).abs().max() <= 1e-5
        # and the blocks without any carried state (state=None: the call sees the whole video)
        mean, std = (
            torch.tensor(v).view(1, -1, 1, 1, 1) for v in (ours.config.latent_mean, ours.config.latent_std)
        )
        with torch.no_grad():
            whole = ours.decoder(ours.conv2(latent * std + mean)).clamp(-1, 1)
            mu = ours.conv1(ours.encoder(clip))[:, :16]
        assert (whole - one_shot).abs().max() <= 1e-5
        assert ((mu - mean) / std - latent).abs().max() <= 1e-5
    pieces = list(ours.decode_chunks(latent, chunk_frames=1))
    assert [p.shape[2] for p in pieces] == [1, 4, 4]
    assert (ours.encode(clip, chunk_frames=8) - latent).abs().max() <= 1e-5


def test_full_size_keys_are_the_official_tokenizer_keys() -> None:
    with torch.device("meta"):
        ours = WanVAE(VAEConfig.wan21())
        oracle = _diffusers_vae(VAEConfig.wan21())
    ours_sd, oracle_sd = ours.state_dict(), oracle.state_dict()
    # diffusers' converter takes official key names; ours must map one-to-one onto diffusers' model
    names = _official_to_diffusers(list(ours_sd))
    assert len(names) == len(ours_sd) == len(oracle_sd) == 194
    assert set(names.values()) == set(oracle_sd)
    assert all(tuple(ours_sd[k].shape) == tuple(oracle_sd[names[k]].shape) for k in ours_sd)
    assert sum(p.numel() for p in ours.parameters()) == 126_892_531
    for key in (  # spelled as in Wan2.1_VAE.pth
        "conv1.weight",
        "conv2.bias",
        "encoder.conv1.weight",
        "encoder.downsamples.0.residual.0.gamma",
        "encoder.downsamples.2.resample.1.weight",
        "encoder.downsamples.5.time_conv.weight",
        "encoder.downsamples.3.shortcut.weight",
        "encoder.middle.1.to_qkv.weight",
        "encoder.head.2.weight",
        "decoder.upsamples.3.time_conv.weight",
        "decoder.upsamples.4.shortcut.weight",
        "decoder.upsamples.14.residual.6.weight",
        "decoder.head.0.gamma",
    ):
        assert key in ours_sd, key


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_vae_roundtrip(tiny_pair, clip, tmp_path, suffix) -> None:
    ours, _ = tiny_pair
    path = tmp_path / f"vae{suffix}"
    sd = {k: v.contiguous() for k, v in ours.state_dict().items()}
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, str(path))
    loaded = load_vae(path, VAEConfig.tiny())
    assert loaded.dtype == torch.float32 and not loaded.channels_last  # CPU defaults
    assert torch.equal(loaded.encode(clip), ours.encode(clip))


def test_load_vae_lists_every_problem(tiny_pair, tmp_path) -> None:
    ours, _ = tiny_pair
    sd = dict(ours.state_dict())
    del sd["decoder.head.2.bias"]
    sd["encoder.extra.weight"] = torch.zeros(1)
    sd["conv2.weight"] = torch.zeros(2, 2, 1, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CosmosError) as err:
        load_vae(path, VAEConfig.tiny())
    msg = str(err.value)
    for part in ("bad.pth", "decoder.head.2.bias", "encoder.extra.weight", "conv2.weight", "mis-shaped"):
        assert part in msg
    with pytest.raises(CosmosError, match="not found"):
        load_vae(tmp_path / "absent.pth", VAEConfig.tiny())


def test_bad_shapes_are_cosmos_errors(tiny_pair) -> None:
    ours, _ = tiny_pair
    with pytest.raises(CosmosError, match="1\\+4k"):
        ours.encode(torch.zeros(1, 3, 8, 32, 32))
    with pytest.raises(CosmosError, match="multiple of 4"):
        ours.encode(torch.zeros(1, 3, 9, 32, 32), chunk_frames=6)
    with pytest.raises(CosmosError, match="16 channels"):
        ours.decode(torch.zeros(1, 4, 2, 4, 4))


def test_tile_blending_is_a_partition_of_unity() -> None:
    # with a spatially pointwise "decoder", tiling and blending must reproduce the untiled result
    gen = torch.Generator().manual_seed(2)
    x = torch.randn((1, 2, 3, 13, 21), generator=gen)

    def upsample(_: tuple[int, int], t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4) * 0.5

    spans_h, spans_w = _tile_spans(13, 21, (6, 8, 2))
    assert spans_h[0] == (0, 6) and spans_h[-1][1] == 13 and spans_w[-1][1] == 21
    blended = _blend_tiles(upsample, x, spans_h, spans_w, 8)
    assert torch.allclose(blended, upsample((0, 0), x), atol=1e-6)


def test_tiled_decode(tiny_pair, clip) -> None:
    ours, _ = tiny_pair
    latent = ours.encode(clip)  # (1, 16, 3, 4, 6)
    plain = ours.decode(latent)
    assert torch.equal(ours.decode(latent, tile=(4, 6)), plain)  # one tile covering everything
    tiled = ours.decode(latent, tile=(3, 4, 1))
    assert tiled.shape == plain.shape and tiled.abs().max() <= 1.0
    # each tile keeps its own causal cache: temporal chunking stays invisible under tiling too
    assert (ours.decode(latent, tile=(3, 4, 1), chunk_frames=None) - tiled).abs().max() <= 1e-5


def test_bench_vae_runs_on_cpu() -> None:
    result = bench_vae("cpu", config=VAEConfig.tiny(), frames=5, height=16, width=16)
    assert result["latent_shape"] == "1x16x2x2x2" and result["video_shape"] == "1x3x5x16x16"
    assert result["encode_s"] > 0 and result["decode_s"] > 0 and result["dtype"] == "float32"


def test_channels_last_gives_the_same_result(clip) -> None:
    rng = torch.random.get_rng_state()
    vae = build_vae(VAEConfig.tiny(), seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng)  # seeded weights, caller's RNG untouched
    assert torch.equal(vae.conv2.weight, build_vae(VAEConfig.tiny(), seed=3).conv2.weight)
    latent = vae.encode(clip)
    video = vae.decode(latent)
    vae.set_channels_last(True)
    assert (vae.encode(clip) - latent).abs().max() <= 1e-5
    assert (vae.decode(latent) - video).abs().max() <= 1e-5


def test_carried_state_does_not_grow_with_video_length(tiny_pair) -> None:
    # what a chunked decode keeps between chunks is a fixed number of frames per layer
    ours, _ = tiny_pair
    latent = torch.randn((1, 16, 5, 2, 2), generator=torch.Generator().manual_seed(4))

    def carried(frames: int) -> int:
        state = StreamState()
        for i in range(frames):
            ours.decoder(ours.conv2(latent[:, :, i : i + 1]), state)
        return sum(t.numel() for t in state.tails.values())

    assert carried(2) == carried(5) > 0
