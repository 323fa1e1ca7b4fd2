"""The sampler: schedules and solver against diffusers' UniPC, loop parity with Cosmos2_5_TransferPipeline.

Parity configuration (where the official sampler and diffusers agree): Karras sigmas 200 -> 0.01 as flow
sigmas, float sigma as network time, conditioning frames at time 0.1. The official defaults (shifted
schedule, integer timesteps, conditioning frames at the step's time) are tested by their definition.
Tolerance 1e-3 on final latents (fp32, CPU): the two loops do the same arithmetic in a different order
(our CFG passes run as one batch of 2, solver coefficients in float64), which moves results by ~1e-6.
"""

from __future__ import annotations

import random
import types
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cosmos_t2.sampling.unipc import (
    GuidedGeneration,
    UniPC,
    VelocityFn,
    chunk_seeds,
    condition_mask,
    flow_schedule,
    guided_velocity,
    initial_noise,
    karras_schedule,
    sample,
)

diffusers = pytest.importorskip("diffusers")


def _resize(x: torch.Tensor, size: list[int], interpolation: object = None) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="nearest")


@pytest.fixture(autouse=True)
def _no_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    # diffusers' Cosmos models resize the padding mask with torchvision, which has no build for this
    # CPU torch here; nearest resizing with torch is the same operation (and the mask is all zeros).
    shim = types.SimpleNamespace(
        functional=types.SimpleNamespace(resize=_resize), InterpolationMode=types.SimpleNamespace(NEAREST=0)
    )
    from diffusers.models.controlnets import controlnet_cosmos
    from diffusers.models.transformers import transformer_cosmos

    monkeypatch.setattr(controlnet_cosmos, "transforms", shim, raising=False)
    monkeypatch.setattr(transformer_cosmos, "transforms", shim, raising=False)


def _diffusers_unipc(**kwargs: object) -> object:
    return diffusers.UniPCMultistepScheduler(
        use_flow_sigmas=True, prediction_type="flow_prediction", **kwargs
    )


def _field(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.tanh(x) * (1.0 + sigma) - 0.3 * x  # any smooth nonlinear velocity


# --- schedules and solver --------------------------------------------------------------------------


def test_official_schedule() -> None:
    s = flow_schedule()
    assert s.num_steps == 35 and len(s.sigmas) == 36 and s.sigmas[-1] == 0
    assert torch.all(s.sigmas[1:] < s.sigmas[:-1])
    u = np.linspace(float(np.float32(0.999)), 0, 36)[:-1]
    assert np.allclose(s.sigmas[:-1].numpy(), 5 * u / (1 + 4 * u), atol=1e-7)
    # the network sees int(1000 sigma) / 1000
    assert torch.allclose(s.timesteps * 1000, torch.floor(s.sigmas[:-1].double() * 1000).float(), atol=1e-3)
    assert s.timesteps[0] == pytest.approx(0.999)


def test_karras_schedule_equals_diffusers() -> None:
    ours = karras_schedule(12, integer_timesteps=False)
    sched = _diffusers_unipc(use_karras_sigmas=True, sigma_max=200.0, sigma_min=0.01)
    sched.set_timesteps(12)
    assert torch.equal(ours.sigmas, sched.sigmas)
    assert torch.equal(ours.timesteps, sched.sigmas[:-1])


def test_sigma_max_starts_the_schedule_there() -> None:
    s = flow_schedule(10, sigma_max=2.0)
    assert s.num_steps == 10
    assert float(s.sigmas[0]) == pytest.approx(2.0 / 3.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["official", "karras"])
def test_unipc_matches_diffusers(kind: str) -> None:
    if kind == "official":
        schedule = flow_schedule(8)
        sched = _diffusers_unipc(flow_shift=5.0)
        u = np.linspace(float(np.float32(0.999)), 0, 9)[:-1]
        sched.set_timesteps(sigmas=u)
    else:
        schedule = karras_schedule(8, integer_timesteps=False)
        sched = _diffusers_unipc(use_karras_sigmas=True, sigma_max=200.0, sigma_min=0.01)
        sched.set_timesteps(8)
    assert torch.allclose(schedule.sigmas, sched.sigmas, atol=1e-7)
    x_ours = x_ref = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    solver = UniPC(schedule.sigmas)
    for i, t in enumerate(sched.timesteps):
        sigma = float(schedule.sigmas[i])
        x_ours = solver.step(_field(x_ours, sigma), x_ours)
        x_ref = sched.step(_field(x_ref, sigma), t, x_ref, return_dict=False)[0]
        assert torch.allclose(x_ours, x_ref, atol=1e-5), f"step {i}"


def test_a_field_pointing_at_one_point_lands_on_it_and_cfg_extrapolates() -> None:
    a, b = torch.full((1, 2, 3, 2, 2), 0.5), torch.full((1, 2, 3, 2, 2), -0.25)

    def velocity(x: torch.Tensor, timesteps: torch.Tensor, *, guided: bool) -> torch.Tensor:
        sigma = timesteps[0, 0]  # float timesteps: network time == sigma
        return torch.stack([(x - a) / sigma, (x - b) / sigma])[: 2 if guided else 1]

    noise = initial_noise(3, (1, 2, 3, 2, 2))
    schedule = karras_schedule(10, integer_timesteps=False)
    assert torch.allclose(sample(velocity, noise, schedule=schedule, guidance=0), a, atol=1e-5)
    out = sample(velocity, noise, schedule=schedule, guidance=3.0)
    assert torch.allclose(out, 4 * a - 3 * b, atol=1e-5)  # cond + 3 (cond - uncond)


# --- condition frames, noise, seeds ---------------------------------------------------------------


@pytest.mark.parametrize("cond_t", [None, 0.1])
def test_condition_frames_enter_clean_with_their_timestep(cond_t: float | None) -> None:
    shape = (1, 4, 5, 2, 2)
    noise, clean = initial_noise(1, shape), initial_noise(2, shape)
    mask = condition_mask(shape, 2)
    schedule = flow_schedule(6)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def velocity(x: torch.Tensor, timesteps: torch.Tensor, *, guided: bool) -> torch.Tensor:
        seen.append((x.clone(), timesteps.clone()))
        return torch.stack([torch.sin(x), torch.cos(x)])

    sample(
        velocity,
        noise,
        schedule=schedule,
        condition_latent=clean,
        condition_mask=mask,
        condition_timestep=cond_t,
    )
    assert len(seen) == 6
    for (x, t), step_t in zip(seen, schedule.timesteps.tolist(), strict=True):
        assert torch.equal(x[:, :, :2], clean[:, :, :2])
        assert torch.allclose(t[:, :2], torch.tensor(step_t if cond_t is None else cond_t))
        assert torch.allclose(t[:, 2:], torch.tensor(step_t))


def test_guided_generation_feeds_the_noised_input_inside_the_mask_until_the_threshold() -> None:
    shape = (1, 2, 3, 2, 2)
    noise, x0 = initial_noise(1, shape), initial_noise(2, shape)
    mask = torch.zeros(shape)
    mask[..., 0] = 1.0  # left column guided
    schedule = flow_schedule(6)
    seen: list[torch.Tensor] = []

    def velocity(x: torch.Tensor, timesteps: torch.Tensor, *, guided: bool) -> torch.Tensor:
        seen.append(x.clone())
        return torch.stack([torch.sin(x), torch.cos(x)])

    sample(velocity, noise, schedule=schedule, guide=GuidedGeneration(x0, mask, step_threshold=2))
    for i, x in enumerate(seen):
        sigma = float(schedule.sigmas[i])
        guided = torch.allclose(x[..., 0], (1 - sigma) * x0[..., 0] + sigma * noise[..., 0], atol=1e-6)
        assert guided == (i <= 2), i
    assert torch.equal(seen[0][..., 1], noise[..., 1])  # outside the mask: the sampler's own state


def test_guided_input_is_the_noised_x0_only_inside_the_mask_and_up_to_the_threshold() -> None:
    """Every step's network input, position by position: noised x0 where the mask is 1 and i <= threshold,
    a soft blend where it is 0.5, the sampler's own state elsewhere; conditioning frames stay clean."""
    shape = (1, 2, 3, 2, 4)
    noise, x0, clean = initial_noise(1, shape), initial_noise(2, shape), initial_noise(3, shape)
    mask = torch.zeros(1, 1, 3, 2, 4)
    mask[..., 0], mask[..., 1] = 1.0, 0.5  # column 0 guided, column 1 half, columns 2-3 free
    cond = condition_mask(shape, 1)  # latent frame 0 conditions the chunk
    schedule, threshold = flow_schedule(5), 2
    seen: list[torch.Tensor] = []

    def velocity(x: torch.Tensor, timesteps: torch.Tensor, *, guided: bool) -> torch.Tensor:
        seen.append(x.clone())
        return torch.stack([torch.sin(x) + x, torch.cos(x)])

    free = sample(velocity, noise, schedule=schedule, condition_latent=clean, condition_mask=cond)
    free_inputs, seen = seen, []
    out = sample(
        velocity, noise, schedule=schedule, condition_latent=clean, condition_mask=cond,
        guide=GuidedGeneration(x0, mask, step_threshold=threshold),
    )  # fmt: skip
    assert len(seen) == 5 and not torch.allclose(out, free)
    for i, x in enumerate(seen):
        sigma = float(schedule.sigmas[i])
        noised = (1 - sigma) * x0 + sigma * noise
        g, f = x[:, :, 1:], noised[:, :, 1:]  # frames 1.. (frame 0 is the clean conditioning frame)
        assert torch.equal(x[:, :, :1], clean[:, :, :1])
        if i <= threshold:
            assert torch.allclose(g[..., 0], f[..., 0], atol=1e-6), i
            if i > 0:  # (at step 0 sigma is 0.999: noised x0 and the state are both about the noise)
                assert not torch.allclose(g[..., 2:], f[..., 2:], atol=1e-2), i
        else:  # after the threshold nothing is replaced, not even inside the mask
            assert not torch.allclose(g[..., 0], f[..., 0], atol=1e-2), i
        if i == 0:  # column 1: half the noised x0, half the state; columns 2-3: the state (= noise)
            assert torch.allclose(g[..., 1], 0.5 * f[..., 1] + 0.5 * noise[:, :, 1:, :, 1], atol=1e-6)
            assert torch.equal(g[..., 2:], noise[:, :, 1:, :, 2:])
    assert torch.equal(free_inputs[0][..., 2:], seen[0][..., 2:])


def test_noise_is_numpy_randomstate_and_seeds_chain() -> None:
    noise = initial_noise(2025, (1, 16, 3, 4, 4))
    assert noise.dtype == torch.float32
    expected = np.random.RandomState(2025).standard_normal((1, 16, 3, 4, 4)).astype(np.float32)
    assert np.array_equal(noise.numpy(), expected)
    seeds = chunk_seeds(2025, 3)
    assert seeds == chunk_seeds(2025, 3) and len(set(seeds)) == 3
    assert seeds[0] == random.Random(2025).randint(0, 1_000_000)
    assert seeds[1] == random.Random(seeds[0]).randint(0, 1_000_000)


def test_same_seed_same_video_other_seed_other_video() -> None:
    def velocity(x: torch.Tensor, timesteps: torch.Tensor, *, guided: bool) -> torch.Tensor:
        return torch.stack([_field(x, 0.5), -_field(x, 0.2)])

    shape = (1, 4, 3, 2, 2)
    run = lambda seed: sample(velocity, initial_noise(seed, shape), schedule=flow_schedule(5))  # noqa: E731
    assert torch.equal(run(7), run(7))
    assert not torch.allclose(run(7), run(8))


# --- full loop parity with diffusers' Cosmos2_5_TransferPipeline --------------------------------------
# The pipeline runs on tiny random models; a subclass records what each chunk starts from (noise,
# conditioning latent, mask) and the controlnet stand-in records the control latents, so our loop
# starts from exactly the same tensors. Two chunks: the second one has a clean conditioning frame.

H = W = 32  # pixels; latent 4x4
STEPS = 5
NUM_FRAMES, FRAMES_PER_CHUNK = 17, 9  # 2 chunks of 3 latent frames, 1 frame carried -> 5 latent frames
TEXT_DIM = 64  # the tiny random text encoder: 2 layers x 32


def _sum_branches(nets, weights, latents, kwargs) -> list[torch.Tensor]:
    total: list[torch.Tensor] | None = None
    for net, weight, lat in zip(nets, weights, latents, strict=True):
        out = net(controls_latents=lat, conditioning_scale=weight, return_dict=False, **kwargs)[0]
        total = out if total is None else [a + b for a, b in zip(total, out, strict=True)]
    assert total is not None
    return total


class _ControlBranches(torch.nn.Module):
    """The pipeline's `controlnet`: branch 0 gets the pipeline's control latents, the others fixed ones;
    their block outputs are weighted and summed, as the multi-control model joins its branches."""

    def __init__(self, nets: list[torch.nn.Module], weights: list[float], extra: list[torch.Tensor]) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)
        self.weights = weights
        self.extra = extra
        self.seen: list[torch.Tensor] = []

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, controls_latents: torch.Tensor, **kwargs: object) -> tuple[list[torch.Tensor]]:
        self.seen.append(controls_latents)
        kwargs.pop("conditioning_scale")
        kwargs.pop("return_dict")
        return (_sum_branches(self.nets, self.weights, [controls_latents, *self.extra], kwargs),)


class _NoSafetyCheck(torch.nn.Module):
    device = torch.device("cpu")

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, video: np.ndarray) -> np.ndarray:
        return video


class _Run:
    """One run of the diffusers pipeline and what each of its two chunks started from."""

    def __init__(
        self, transformer: torch.nn.Module, nets: list[torch.nn.Module], weights: list[float]
    ) -> None:
        class Recording(diffusers.Cosmos2_5_TransferPipeline):
            def prepare_latents(self, *args: object, **kwargs: object) -> object:
                out = super().prepare_latents(*args, **kwargs)
                self.records.append(out)  # (noise, condition latent, condition mask, frame indicator)
                return out

        torch.manual_seed(0)
        vae = diffusers.AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        ).eval()
        g = torch.Generator().manual_seed(0)
        self.extra = [torch.randn(1, 16, 3, 4, 4, generator=g) for _ in weights[1:]]
        self.controlnet = _ControlBranches(nets, weights, self.extra)
        pipe = Recording(
            text_encoder=None,
            tokenizer=None,
            transformer=transformer,
            vae=vae,
            scheduler=_diffusers_unipc(use_karras_sigmas=True, sigma_max=200.0, sigma_min=0.01),
            controlnet=self.controlnet,
            safety_checker=_NoSafetyCheck(),
        )
        pipe.records = []
        pipe.set_progress_bar_config(disable=True)
        noise = torch.randn(1, 16, 3, 4, 4, generator=g)
        self.prompt = torch.randn(1, 16, TEXT_DIM, generator=g)
        self.negative = torch.randn(1, 16, TEXT_DIM, generator=g)
        with torch.no_grad():
            self.latents = pipe(
                controls=torch.rand(1, NUM_FRAMES, 3, H, W, generator=g),
                prompt_embeds=self.prompt,
                negative_prompt_embeds=self.negative,
                height=H,
                width=W,
                num_frames=NUM_FRAMES,
                num_frames_per_chunk=FRAMES_PER_CHUNK,
                num_inference_steps=STEPS,
                guidance_scale=3.0,
                generator=torch.Generator().manual_seed(1),
                latents=noise,
                output_type="latent",
                num_ar_conditional_frames=1,
            ).frames
        assert self.latents.shape == (1, 16, 5, 4, 4)
        self.records = pipe.records

    def chunk_inputs(self, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        noise, cond_latent, mask, _ = self.records[chunk]
        assert int(mask[0, 0, :, 0, 0].sum()) == chunk  # chunk 1 keeps 1 latent frame clean
        return noise, cond_latent, mask, [self.controlnet.seen[chunk * 2 * STEPS], *self.extra]

    def check(self, velocity_for: Callable[..., VelocityFn]) -> float:
        """Run our loop per chunk with velocity_for(mask, control_latents); return the max error."""
        ours = []
        for chunk in range(2):
            noise, cond_latent, mask, controls = self.chunk_inputs(chunk)
            with torch.no_grad():
                out = sample(
                    velocity_for(mask, controls),
                    noise,
                    schedule=karras_schedule(STEPS, integer_timesteps=False),
                    guidance=3.0,
                    condition_latent=cond_latent,
                    condition_mask=mask,
                    condition_timestep=0.1,
                )
            ours.append(out)
        stitched = torch.cat([ours[0], ours[1][:, :, 1:]], dim=2)
        return float((stitched - self.latents).abs().max())


@pytest.mark.parametrize("weights", [[1.0], [0.6, 0.4]], ids=["one-control", "two-controls"])
def test_loop_matches_diffusers_pipeline(weights: list[float]) -> None:
    """Our loop with diffusers' models as the velocity, and with our TransferNet carrying their weights."""
    keys = pytest.importorskip("_diffusers_keys")
    from cosmos_t2.model.checkpoint import load_state_dict_strict
    from cosmos_t2.model.config import TransferConfig
    from cosmos_t2.model.control import ControlInput, TransferNet

    cfg = TransferConfig.tiny()
    transformer, nets = keys.build_diffusers_models(cfg, len(weights), 0)
    run = _Run(transformer, nets, weights)
    padding = torch.zeros(1, 1, H, W)
    img_context = torch.zeros(1, cfg.image_context_tokens, cfg.image_context_dim)  # no reference image

    def diffusers_velocity(mask: torch.Tensor, controls: list[torch.Tensor]) -> VelocityFn:
        def forward(x: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
            b = x.shape[0]
            common = dict(
                timestep=timesteps[:, None, :, None, None],
                encoder_hidden_states=(text, img_context.expand(b, -1, -1)),
                condition_mask=mask.expand(b, -1, -1, -1, -1),
                padding_mask=padding,
            )
            lats = [c.expand(b, -1, -1, -1, -1) for c in controls]
            blocks = _sum_branches(nets, weights, lats, {"latents": x, **common})
            return transformer(
                hidden_states=x, block_controlnet_hidden_states=blocks, return_dict=False, **common
            )[0]

        return guided_velocity(forward, run.prompt, run.negative)

    assert run.check(diffusers_velocity) < 1e-3

    net = TransferNet(cfg, num_control_branches=len(weights)).eval()
    state = keys.diffusers_to_official_state_dict(transformer.state_dict(), [c.state_dict() for c in nets])
    load_state_dict_strict(net, state)

    def transfernet_velocity(mask: torch.Tensor, controls: list[torch.Tensor]) -> VelocityFn:
        def forward(x: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
            b = x.shape[0]
            inputs = [
                ControlInput(c.expand(b, -1, -1, -1, -1), w) for c, w in zip(controls, weights, strict=True)
            ]
            return net(x, timesteps, text, condition_mask=mask, controls=inputs)

        return guided_velocity(forward, run.prompt, run.negative)

    assert run.check(transfernet_velocity) < 1e-3
