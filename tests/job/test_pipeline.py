"""The pipeline's library surface: checks before any model is built, model directory loading, the sampler
it runs (official loop, distilled loop), style-reference tokens. Tiny configs on CPU."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cosmos_t2.errors import CosmosError
from cosmos_t2.job import diffuse
from cosmos_t2.job import load as load_phase
from cosmos_t2.job.run import RunOptions, effective_spec, run_job
from cosmos_t2.job.settings import distilled_settings
from cosmos_t2.jobspec.job import DEFAULT_NUM_STEPS
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import TransferNet
from cosmos_t2.runtime import pool as model_pool
from cosmos_t2.runtime.build import build_net, randomize
from cosmos_t2.sampling.distilled import DISTILLED_NUM_STEPS, SELECTED_TIMES, sample_distilled, trigflow_times
from cosmos_t2.video import write_video
from cosmos_t2.weights.locate import locate_models

FRAMES, SIZE = 9, 64


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.RandomState(0)
    write_video(
        tmp_path / "in.mkv", rng.randint(0, 255, (FRAMES, SIZE, SIZE, 3)).astype(np.uint8), 16, lossless=True
    )
    write_video(tmp_path / "short.mkv", np.zeros((5, SIZE, SIZE, 3), np.uint8), 16, lossless=True)
    return tmp_path


def make_spec(folder: Path, **extra: Any) -> Any:
    data = {"name": "j", "prompt": "a room", "video_path": "in.mkv", "num_steps": 2, "edge": {}} | extra
    path = folder / "j.json"
    path.write_text(json.dumps(data))
    return load_job(path)


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the pipeline gets as far as building a network."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was built before the inputs were checked")

    monkeypatch.setattr(model_pool, "build_net", refuse)  # where run_job builds networks


def test_full_size_run_without_model_dir_is_refused(folder: Path, no_models: None) -> None:
    with pytest.raises(CosmosError, match="no model directory"):
        run_job(make_spec(folder), RunOptions(out_dir=folder / "out"))


def test_missing_modality_checkpoint_is_named(folder: Path, no_models: None) -> None:
    models = folder / "models"
    models.mkdir()
    (models / "tokenizer.pth").write_bytes(b"")
    save_file({"x": torch.zeros(1)}, models / "edge.safetensors")
    with pytest.raises(CosmosError, match="no depth checkpoint"):
        run_job(make_spec(folder, depth={}), RunOptions(out_dir=folder / "out", model_dir=models))


def test_checkpoint_of_another_modality_is_refused(folder: Path, no_models: None) -> None:
    models = folder / "models"
    models.mkdir()
    save_file(
        {"x": torch.zeros(1)},
        models / "edge.safetensors",
        metadata={"source": "626e6618-bfcd-4d9a-a077-1409e2ce353f_ema_bf16.pt"},
    )
    with pytest.raises(CosmosError, match="this is the depth checkpoint, but it sits in the edge slot"):
        run_job(make_spec(folder), RunOptions(out_dir=folder / "out", model_dir=models))


def test_control_video_with_other_frame_count_is_refused(folder: Path, no_models: None) -> None:
    spec = make_spec(folder, edge={"control_path": "short.mkv"})
    with pytest.raises(CosmosError, match="has 5 frames but the input video has 9") as info:
        run_job(spec, RunOptions(out_dir=folder / "out", tiny=True))
    assert "short.mkv" in str(info.value) and "edge.control_path" in str(info.value)


def test_mask_video_with_other_frame_count_is_refused(folder: Path, no_models: None) -> None:
    spec = make_spec(folder, edge={"mask_path": "short.mkv"})
    with pytest.raises(CosmosError, match="has 5 frames but the input video has 9"):
        run_job(spec, RunOptions(out_dir=folder / "out", tiny=True))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"image_context_path": "style.png"}, "cannot read the style reference image"),
        ({"context_frame_index": 20}, "context_frame_index 20 is past the video's 9 frames"),
    ],
)
def test_bad_style_reference_is_refused_before_text_and_models(
    folder: Path, no_models: None, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], expected: str
) -> None:
    (folder / "style.png").write_bytes(b"not a png")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the prompt was encoded before the style reference was checked")

    monkeypatch.setattr(load_phase, "prompt_embeddings", refuse)
    with pytest.raises(CosmosError, match=expected):
        run_job(make_spec(folder, **extra), RunOptions(out_dir=folder / "out", tiny=True))


def test_chunk_length_must_fit_the_vae(folder: Path) -> None:
    # the spec holds the rule (so `validate` catches it too); tiny mode's 17 keeps it
    with pytest.raises(CosmosError, match="1 \\+ 4k frames"):
        make_spec(folder, num_video_frames_per_chunk=10)
    settings = effective_spec(make_spec(folder), tiny=True)
    assert settings.spec.num_video_frames_per_chunk == 17 and settings.spec.resolution == "tiny"
    assert settings.changed == {"resolution": "720", "num_video_frames_per_chunk": 93}


def test_tiny_weights_load_from_a_model_dir(tmp_path: Path) -> None:
    config = TransferConfig.tiny()
    edge, depth = TransferNet(config), TransferNet(config)
    randomize(edge, 1)
    randomize(depth, 2)
    save_file(edge.state_dict(), tmp_path / "edge.safetensors")
    torch.save({f"net.{k}": v for k, v in depth.state_dict().items()}, tmp_path / "depth.pt")
    save_file({}, tmp_path / "tokenizer.safetensors")
    files = locate_models(
        tmp_path, ["edge", "depth"], tiny=True, need_text_encoder=True, need_image_encoder=False
    )
    net, distilled = build_net(
        files, ["edge", "depth"], tiny=True, device=torch.device("cpu"), dtype=torch.float32
    )
    assert not distilled and net.num_control_branches == 2
    state = net.state_dict()
    assert torch.equal(
        state["control_blocks_1.0.after_proj.weight"],
        depth.state_dict()["control_blocks.0.after_proj.weight"],
    )
    assert torch.equal(
        state["control_blocks_0.0.after_proj.weight"], edge.state_dict()["control_blocks.0.after_proj.weight"]
    )
    assert torch.equal(state["blocks.0.mlp.layer1.weight"], edge.state_dict()["blocks.0.mlp.layer1.weight"])


def test_a_dmd2_checkpoint_is_run_as_the_distilled_model(tmp_path: Path) -> None:
    net = TransferNet(TransferConfig.tiny())
    extra = {"net_fake_score.blocks.0.mlp.layer1.weight": torch.zeros(2, 2)}
    torch.save({**{f"net.{k}": v for k, v in net.state_dict().items()}, **extra}, tmp_path / "edge.pt")
    save_file({}, tmp_path / "tokenizer.safetensors")
    files = locate_models(tmp_path, ["edge"], tiny=True, need_text_encoder=False, need_image_encoder=False)
    assert not files.distilled  # nothing in the name says so; the keys do
    _, distilled = build_net(files, ["edge"], tiny=True, device=torch.device("cpu"), dtype=torch.float32)
    assert distilled
    settings = distilled_settings(effective_spec(load_job_default(tmp_path), tiny=True))
    assert settings.spec.num_steps == 4 and settings.changed["num_steps"] == 35


def test_an_explicit_35_steps_stays_35_on_the_distilled_model(tmp_path: Path) -> None:
    write_video(tmp_path / "in.mkv", np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8), 16, lossless=True)
    spec_file = tmp_path / "d.json"
    spec_file.write_text(json.dumps({"prompt": "p", "video_path": "in.mkv", "edge": {}, "num_steps": 35}))
    settings = distilled_settings(effective_spec(load_job(spec_file), tiny=True))
    assert settings.spec.num_steps == DEFAULT_NUM_STEPS == 35 and "num_steps" not in settings.changed
    # not given: the distilled model's own count, and the record says what the spec's default was
    default = distilled_settings(effective_spec(load_job_default(tmp_path), tiny=True))
    assert default.spec.num_steps == DISTILLED_NUM_STEPS and default.changed["num_steps"] == DEFAULT_NUM_STEPS


def load_job_default(folder: Path) -> Any:
    write_video(folder / "in.mkv", np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8), 16, lossless=True)
    (folder / "d.json").write_text(json.dumps({"prompt": "p", "video_path": "in.mkv", "edge": {}}))
    return load_job(folder / "d.json")


def test_distilled_times_are_the_official_four() -> None:
    assert trigflow_times(4) == [*SELECTED_TIMES, 0.0]
    assert (math.pi / 2, math.atan(15), math.atan(5), math.atan(5 / 3)) == SELECTED_TIMES
    # more steps: the shifted uniform rectified-flow grid, as TrigFlow angles, first pi/2
    times = trigflow_times(6)
    assert times[0] == math.pi / 2 and times[-1] == 0.0 and all(a > b for a, b in itertools.pairwise(times))


def test_distilled_sampler_recovers_x0_from_an_exact_velocity() -> None:
    """With the true velocity noise - x0 (given the rectified-flow state and time the network sees), every
    step predicts x0 exactly, so the result is x0; conditioning frames stay clean and get time ~1e-4."""
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(1, 4, 3, 2, 2, generator=gen, dtype=torch.float64)
    noise = torch.randn(1, 4, 3, 2, 2, generator=gen)
    cond = torch.zeros(1, 1, 3, 2, 2)
    cond[:, :, :1] = 1
    seen: list[torch.Tensor] = []

    def velocity(x: torch.Tensor, t: torch.Tensor, *, guided: bool) -> torch.Tensor:
        assert not guided
        seen.append(t.clone())
        tt = t.double()[:, None, :, None, None]
        return ((x.double() - (1 - tt) * target) / tt - target).float()[None]

    out = sample_distilled(velocity, noise, condition_latent=target.float(), condition_mask=cond)
    assert torch.allclose(out.double(), target, atol=1e-5)
    assert len(seen) == 4 and abs(seen[0][0, 1].item() - 1.0) < 1e-6 and seen[0][0, 0].item() < 2e-4


def test_pipeline_runs_the_official_loop_per_chunk(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two controls, two chunks: `sampling.sample` on the official schedule and guidance, with a batched
    CFG velocity over a two-branch network (the loop test_sampling.py checks against diffusers)."""
    import cosmos_t2.sampling.unipc as sampling

    calls: list[dict[str, Any]] = []
    real = sampling.sample

    def spy(velocity_fn: Any, noise: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        v = velocity_fn(noise, torch.full(noise.shape[:1] + noise.shape[2:3], 0.5), guided=True)
        calls.append({"noise": noise.shape, "velocity": v.shape, **kwargs})
        return real(velocity_fn, noise, **kwargs)

    monkeypatch.setattr(sampling, "sample", spy)
    built: list[TransferNet] = []
    monkeypatch.setattr(
        model_pool, "build_net", lambda *a, **k: built.append(build_net(*a, **k)[0]) or (built[-1], False)
    )
    spec = make_spec(folder, vis={"control_weight": 0.5}, num_video_frames_per_chunk=5)
    result = run_job(spec, RunOptions(out_dir=folder / "out", tiny=True, latents_only=True, progress=False))
    assert len(calls) == 2 and built[0].num_control_branches == 2  # chunks [0, 5) and [4, 9)
    first, second = calls
    assert first["guidance"] == 3.0 and first["condition_mask"] is None and first["init_latent"] is None
    assert torch.equal(first["schedule"].sigmas, sampling.flow_schedule(2).sigmas)
    assert first["noise"] == (1, 16, 2, 8, 8) and first["velocity"] == (2, 1, 16, 2, 8, 8)
    # chunk 2 starts from chunk 1's last generated frame: one clean latent frame
    assert second["condition_mask"][0, 0, :, 0, 0].tolist() == [1.0, 0.0]
    assert second["condition_latent"].shape == (1, 16, 2, 8, 8)
    assert result.latents is not None and result.video is None


def test_style_reference_tokens(folder: Path) -> None:
    from cosmos_t2.model.image_context import reference_image, tiny_image_encoder

    assert reference_image(None, folder / "in.mkv", None, (SIZE, SIZE)) is None
    frame2 = reference_image(None, folder / "in.mkv", 2, (SIZE, SIZE))
    first = reference_image(folder / "in.mkv", folder / "in.mkv", None, (32, 48))
    assert frame2.shape == (SIZE, SIZE, 3) and first.shape == (32, 48, 3)
    cfg = TransferConfig.tiny()
    encoder = tiny_image_encoder(cfg.image_context_dim, cfg.image_context_tokens)
    tokens = encoder(frame2)
    assert tokens.shape == (1, cfg.image_context_tokens, cfg.image_context_dim)
    assert not torch.allclose(tokens, encoder(np.zeros_like(frame2)))
    with pytest.raises(CosmosError, match="past the video's 9 frames"):
        reference_image(None, folder / "in.mkv", 20, (SIZE, SIZE))


def test_panels_are_masked_controls_then_input_then_output(folder: Path) -> None:
    from cosmos_t2.job.chunking import plan_chunks
    from cosmos_t2.job.inputs import JobInputs
    from cosmos_t2.job.output import panels_for_chunk

    frames = torch.full((FRAMES, 4, 4, 3), 7, dtype=torch.uint8)
    edge = torch.full((FRAMES, 4, 4, 3), 200, dtype=torch.uint8)
    mask = torch.zeros(FRAMES, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    inputs = JobInputs(
        frames=frames, fps=16, source_size=(4, 4), controls={"edge": edge}, masks={"edge": mask}
    )
    chunk = plan_chunks(FRAMES, 5, 1)[1]
    output = torch.full((5, 4, 4, 3), 99, dtype=torch.uint8)
    spec = make_spec(folder, show_input=True, show_control_condition=True)
    panels = panels_for_chunk(spec, inputs, chunk, output)
    assert panels.shape == (5, 4, 12, 3)
    assert panels[0, :2, :4].eq(200).all() and panels[0, 2:, :4].eq(0).all()  # control shown where masked in
    assert panels[:, :, 4:8].eq(7).all() and panels[:, :, 8:].eq(99).all()
    assert panels_for_chunk(make_spec(folder), inputs, chunk, output).shape == (5, 4, 4, 3)


def test_prompt_embeddings_of_another_prompt_are_refused(folder: Path, no_models: None) -> None:
    emb = {"prompt": torch.zeros(1, 4, 64), "negative_prompt": torch.zeros(1, 4, 64)}
    save_file(emb, folder / "other.safetensors", metadata={"prompt": "a beach"})
    spec = make_spec(folder)
    with pytest.raises(CosmosError, match="another prompt than the spec's"):
        run_job(
            spec,
            RunOptions(out_dir=folder / "out", tiny=True, prompt_embeddings=folder / "other.safetensors"),
        )
    save_file(emb, folder / "full.safetensors", metadata={"prompt": "a room"})
    with pytest.raises(CosmosError, match="the full-size model takes 100352"):
        run_job(
            spec,
            RunOptions(
                out_dir=folder / "out", model_dir=folder, prompt_embeddings=folder / "full.safetensors"
            ),
        )


@torch.no_grad()
def test_guided_velocity_uses_the_shared_cfg_attention_and_matches_two_plain_passes(tmp_path: Path) -> None:
    """The pipeline's CFG step equals running the prompt and negative-prompt passes separately through the
    plain network: on CUDA one batched forward with the first self-attention shared by the pair, on CPU two
    batches of one (MKL rounds a batch of 2 otherwise than 2 of 1: `chunk_velocity`)."""
    from cosmos_t2.model.control import ControlInput
    from cosmos_t2.sampling.unipc import UniPCSampler

    cfg = TransferConfig.tiny()
    torch.manual_seed(0)
    net = TransferNet(cfg).eval()
    randomize(net, 0)
    t, h, w = 3, 8, 12
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, cfg.latent_channels, t, h, w, generator=g)
    timesteps = torch.rand(1, t, generator=g)
    prompt, negative = (torch.randn(1, 5, cfg.crossattn_proj_in_channels, generator=g) for _ in range(2))
    controls = [ControlInput(latent=torch.randn(1, cfg.latent_channels, t, h, w, generator=g), weight=0.8)]
    plain = [
        net(x, timesteps, text, condition_mask=torch.zeros(1, 1, t, 1, 1), controls=controls)
        for text in (prompt, negative)
    ]
    forward = net.forward
    for device, expected_calls in (("cuda", [True]), ("cpu", [False, False])):
        models = diffuse.JobModels(
            net=net,
            vae=None,
            sampler=UniPCSampler(),
            text_pair=(prompt, negative),
            image_tokens=None,
            parallel=None,
            device=torch.device(device),  # the policy's input: the network itself runs on the CPU here
        )  # fmt: skip  (the velocity function reads neither the VAE nor the sampler)
        velocity = diffuse.chunk_velocity(models, controls, torch.zeros(1, 1, t, 1, 1))
        seen: list[Any] = []

        def spy(*args: Any, seen: list[Any] = seen, **kwargs: Any) -> torch.Tensor:
            seen.append(kwargs.get("cfg_halves"))
            return forward(*args, **kwargs)

        net.forward = spy
        both = velocity(x, timesteps, guided=True)
        net.forward = forward
        assert seen == expected_calls, device  # CUDA: one batched forward, told its halves are a CFG pair
        assert both.shape == (2, *x.shape)
        for got, want in zip(both, plain, strict=True):
            if device == "cpu":
                assert torch.equal(got, want)
            else:
                assert (got - want).abs().max().item() <= 1e-5
