"""The rectified-flow sampler of Cosmos-Transfer2.5: noise schedule, UniPC solver, CFG, condition frames.

What the official inference does (cosmos-transfer2.5, `ControlVideo2WorldModelRectifiedFlow.
generate_samples_from_batch` + `FlowUniPCMultistepScheduler`), and so what `sample` does by default:

- x_sigma = (1 - sigma) * x0 + sigma * noise; the network predicts the velocity noise - x0.
- 35 steps on the shifted schedule sigma = 5u / (1 + 4u), u = linspace(0.999, 0, 36)[:-1], then 0.
- The network sees the integer timestep int(1000 * sigma), scaled by 1/1000 inside the net.
- UniPC multistep, order 2, B(h) = expm1(h) ("bh2"), predicting x0, lower order on the last step.
- CFG: v = v_cond + guidance * (v_cond - v_uncond), guidance 3, negative prompt for v_uncond.
- Conditioning latent frames (carried over from the previous chunk) are put clean into the network
  input, and their velocity is replaced by the ground-truth velocity noise - x0 in both CFG passes.
  They get the same timestep as the other frames (the transfer config leaves
  `conditional_frame_timestep` at -1).
- Noise: numpy RandomState(seed).standard_normal in fp32 on the CPU (`arch_invariant_rand`), so the
  same seed gives the same noise on every device and rank.

diffusers' Cosmos2_5_TransferPipeline differs in three settings, all parameters here: it uses the
Karras sigmas of the EDM sampler (sigma 200 -> 0.01, rho 7, as flow sigmas s / (1 + s)), passes the
float sigma to the network, and gives conditioning frames the timestep 0.1. With
`karras_schedule(n, integer_timesteps=False)` and `condition_timestep=0.1` this loop computes what
diffusers' loop computes (tests/sampling/test_sampling.py checks it on tiny random models).

`sigma_max` (spec key): the official rectified-flow model accepts it and ignores it. Here it means
what it meant for the EDM models: start from the input video's latent noised to that EDM sigma
(flow sigma s / (1 + s)) and run all steps from there.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cosmos_t2.jobspec.job import DEFAULT_NUM_STEPS
from cosmos_t2.sampling.base import ChunkConditioning, GuidedGeneration, Sampler, VelocityFn

DEFAULT_GUIDANCE = 3.0
DEFAULT_SHIFT = 5.0
NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class Schedule:
    """Noise levels of one sampling run.

    sigmas: (N + 1,) fp32, decreasing, last 0: the solver's flow sigmas.
    timesteps: (N,) fp32 in [0, 1]: the time the network is given at each step.
    """

    sigmas: Tensor
    timesteps: Tensor

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)


def _finish(sigmas: np.ndarray, integer_timesteps: bool) -> Schedule:
    # The official scheduler truncates 1000 * sigma to int64; the net multiplies by 0.001 again.
    if integer_timesteps:
        timesteps = torch.from_numpy((sigmas * NUM_TRAIN_TIMESTEPS).astype(np.int64)).float() * 0.001
    else:
        timesteps = torch.from_numpy(sigmas.astype(np.float32))
    full = np.concatenate([sigmas, [0.0]]).astype(np.float32)
    return Schedule(sigmas=torch.from_numpy(full), timesteps=timesteps)


def edm_to_flow_sigma(sigma: float) -> float:
    """EDM noise level (x0 + sigma * noise) -> rectified-flow sigma of the same signal-to-noise ratio."""
    return sigma / (1.0 + sigma)


def flow_schedule(
    num_steps: int = DEFAULT_NUM_STEPS,
    shift: float = DEFAULT_SHIFT,
    *,
    sigma_max: float | None = None,
    integer_timesteps: bool = True,
) -> Schedule:
    """The official schedule: u = linspace(top, 0) over num_steps + 1 points without the last, shifted.

    `top` is the scheduler's largest training sigma 1 - 1/1000 (in fp32, as upstream), or, with
    `sigma_max` (an EDM sigma), the u whose shifted value is that sigma's flow sigma.
    """
    if sigma_max is None:
        top = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))
    else:
        target = edm_to_flow_sigma(sigma_max)
        top = target / (shift - (shift - 1.0) * target)  # inverse of the shift below
    u = np.linspace(top, 0.0, num_steps + 1)[:-1]
    return _finish(shift * u / (1.0 + (shift - 1.0) * u), integer_timesteps)


def karras_schedule(
    num_steps: int = DEFAULT_NUM_STEPS,
    *,
    sigma_min: float = 0.01,
    sigma_max: float = 200.0,
    rho: float = 7.0,
    integer_timesteps: bool = True,
) -> Schedule:
    """EDM (Karras) sigmas from sigma_max to sigma_min in num_steps points, as flow sigmas s / (1 + s).

    Equals diffusers' UniPC(use_karras_sigmas, use_flow_sigmas) with num_steps, and the official
    `use_kerras_sigma` path with num_steps - 1 (which makes one step more than asked).
    """
    ramp = np.linspace(0.0, 1.0, num_steps)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    edm = (hi + ramp * (lo - hi)) ** rho
    return _finish(edm / (1.0 + edm), integer_timesteps)


class UniPC:
    """UniPC multistep for flow sigmas: order 2, bh2, x0 prediction, first order on the last step.

    `step(velocity, x)` takes the model's velocity at the current sigma and returns x at the next one.
    Coefficients are computed in float64 from the fp32 sigmas.
    """

    def __init__(self, sigmas: Tensor) -> None:
        self.sigmas = [float(s) for s in sigmas.double()]
        self.index = 0
        self.x0_preds: list[Tensor] = []  # newest last
        self.last_x: Tensor | None = None
        self.last_order = 0

    def _lambda(self, i: int) -> float:
        sigma = self.sigmas[i]
        return math.inf if sigma == 0.0 else math.log(1.0 - sigma) - math.log(sigma)

    def _update(self, x: Tensor, s: int, t: int, x0_new: Tensor, order: int, x0_t: Tensor | None) -> Tensor:
        """x at sigma index s -> sigma index t with the x0 predictions so far (UniP), or, when x0_t is
        the prediction at t, the corrected x at t (UniC)."""
        sigma_t, sigma_s = self.sigmas[t], self.sigmas[s]
        if sigma_t == 0.0:
            return x0_new  # h = inf: the update collapses to the x0 prediction
        alpha_t = 1.0 - sigma_t
        h = self._lambda(t) - self._lambda(s)
        phi = math.expm1(-h)  # h * phi_1(h) with hh = -h; also B(h) for bh2
        base = (sigma_t / sigma_s) * x - alpha_t * phi * x0_new
        # Rows of the order conditions (r_k^0, r_k^1) and b_k as in UniPC's B(h) variant.
        b1 = (phi / -h - 1.0) / phi
        b2 = ((phi / -h - 1.0) / -h - 0.5) * 2.0 / phi
        if x0_t is None:  # predictor
            if order == 1:
                return base
            r1 = (self._lambda(s - 1) - self._lambda(s)) / h
            d1 = (self.x0_preds[-2] - x0_new) / r1
            return base - alpha_t * phi * 0.5 * d1
        d1_t = x0_t - x0_new
        if order == 1:
            return base - alpha_t * phi * 0.5 * d1_t
        r1 = (self._lambda(s - 1) - self._lambda(s)) / h
        d1 = (self.x0_preds[-2] - x0_new) / r1
        # Solve [[1, 1], [r1, 1]] rho = [b1, b2].
        rho0 = (b1 - b2) / (1.0 - r1)
        rho1 = b1 - rho0
        return base - alpha_t * phi * (rho0 * d1 + rho1 * d1_t)

    def step(self, velocity: Tensor, x: Tensor) -> Tensor:
        i = self.index
        x0 = x - self.sigmas[i] * velocity
        if self.last_x is not None:  # correct x_i with the new prediction (UniC)
            x = self._update(self.last_x, i - 1, i, self.x0_preds[-1], self.last_order, x0)
        self.x0_preds = [*self.x0_preds[-1:], x0]
        remaining = len(self.sigmas) - 1 - i
        order = min(2, remaining, len(self.x0_preds))
        self.last_x, self.last_order = x, order
        self.index += 1
        return self._update(x, i, i + 1, x0, order, None)


def sample(
    velocity_fn: VelocityFn,
    noise: Tensor,
    *,
    schedule: Schedule,
    guidance: float = DEFAULT_GUIDANCE,
    condition_latent: Tensor | None = None,
    condition_mask: Tensor | None = None,
    condition_timestep: float | None = None,
    init_latent: Tensor | None = None,
    guide: GuidedGeneration | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Integrate the flow from noise to a clean latent; returns (B, C, T, H, W) fp32.

    condition_mask: (B, 1, T, H, W), 1 on conditioning frames whose clean latent is in
    condition_latent (same shape as noise). condition_timestep: network time of those frames
    (None: the step's time, as upstream). init_latent: the clean latent `sigma_max` starts from.
    guide: guided generation (upstream's `guided_generation_mask`), see GuidedGeneration.
    guidance 0 skips the negative-prompt pass (its weight is 0).
    """
    noise = noise.float()
    if condition_mask is None:
        condition_mask = torch.zeros_like(noise[:, :1])
        condition_latent = torch.zeros_like(noise)
    assert condition_latent is not None, "condition_latent is required with condition_mask"
    mask = condition_mask.float()
    clean = condition_latent.float()
    gt_velocity = noise - clean
    frame_is_cond = mask.mean(dim=(1, 3, 4))  # (B, T)
    guided = guidance != 0

    sigma0 = float(schedule.sigmas[0])
    x = noise if init_latent is None else (1 - sigma0) * init_latent.float() + sigma0 * noise
    solver = UniPC(schedule.sigmas)
    for i, t in enumerate(schedule.timesteps.tolist()):
        x_in = x
        if guide is not None and i <= guide.step_threshold:
            sigma = float(schedule.sigmas[i])
            noised = (1 - sigma) * guide.x0.float() + sigma * noise
            x_in = guide.mask * noised + (1 - guide.mask) * x_in
        x_in = mask * clean + (1 - mask) * x_in
        t_cond = t if condition_timestep is None else condition_timestep
        timesteps = frame_is_cond * t_cond + (1 - frame_is_cond) * t
        v = velocity_fn(x_in, timesteps, guided=guided).float()
        v = mask * gt_velocity + (1 - mask) * v  # conditioning frames follow the known path
        velocity = v[0] + guidance * (v[0] - v[1]) if guided else v[0]
        x = solver.step(velocity, x)
        if progress is not None:
            progress(i + 1, schedule.num_steps)
    return x


@dataclass(frozen=True)
class UniPCSampler(Sampler):
    """The released model's sampler as a `Sampler`: `sample` on the flow schedule of `num_steps`, CFG
    `guidance` (0: no negative pass), starting from the input latent when `sigma_max` is set."""

    num_steps: int = DEFAULT_NUM_STEPS
    guidance: float = DEFAULT_GUIDANCE
    sigma_max: float | None = None
    name: str = "unipc"

    @property
    def guided(self) -> bool:
        return self.guidance != 0

    @property
    def starts_from_input(self) -> bool:
        return self.sigma_max is not None

    def loop(self, cond: ChunkConditioning) -> tuple[Callable[..., Tensor], dict[str, Any]]:
        schedule = flow_schedule(self.num_steps, sigma_max=self.sigma_max)
        return sample, {
            "schedule": schedule, "guidance": self.guidance, "init_latent": cond.init_latent, "guide": cond.guide,
        }  # fmt: skip


def condition_mask(shape: tuple[int, ...], num_frames: int, device: torch.device | str = "cpu") -> Tensor:
    """(B, 1, T, H, W) mask that is 1 on the first num_frames latent frames of a (B, C, T, H, W) latent."""
    b, _, t, h, w = shape
    mask = torch.zeros(b, 1, t, h, w, device=device)
    mask[:, :, :num_frames] = 1.0
    return mask


def initial_noise(seed: int, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """Standard normal noise from numpy's RandomState(seed) in fp32 on the CPU, then moved to device.

    This is upstream's `arch_invariant_rand`: the same numbers on any device, rank or machine.
    """
    values = np.random.RandomState(seed).standard_normal(shape).astype(np.float32)
    return torch.from_numpy(values).to(device)


def chunk_seeds(seed: int, num_chunks: int) -> list[int]:
    """The seed of each chunk, as the official chunk loop derives them: random.seed(s); s = randint."""
    seeds = []
    state = random.Random()
    for _ in range(num_chunks):
        state.seed(seed)
        seed = state.randint(0, 1_000_000)
        seeds.append(seed)
    return seeds


def guided_velocity(
    forward: Callable[[Tensor, Tensor, Tensor], Tensor],
    prompt_embedding: Tensor,
    negative_embedding: Tensor | None,
    *,
    batch_cfg: bool = True,
) -> VelocityFn:
    """A VelocityFn from `forward(x, timesteps, text_embedding) -> velocity`.

    With batch_cfg the two CFG passes run as one forward of batch 2B (one launch per step), else as
    two forwards of batch B (less peak memory).
    """

    def velocity(x: Tensor, timesteps: Tensor, *, guided: bool) -> Tensor:
        if not guided:
            return forward(x, timesteps, prompt_embedding)[None]
        assert negative_embedding is not None, "guidance needs a negative prompt embedding"
        if batch_cfg:
            both = forward(
                torch.cat([x, x]),
                torch.cat([timesteps, timesteps]),
                torch.cat([prompt_embedding, negative_embedding]),
            )
            return torch.stack(both.chunk(2))
        return torch.stack(
            [forward(x, timesteps, prompt_embedding), forward(x, timesteps, negative_embedding)]
        )

    return velocity
