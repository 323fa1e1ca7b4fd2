"""The sampler of the 4-step distilled edge model (DMD2, TrigFlow time), as the official inference runs it.

Official reference: `Cosmos2InteractiveModel.generate_samples_from_batch` and `denoise`
(cosmos_transfer2/_src/interactive/methods/cosmos2_interactive_model.py), scaling `RectifiedFlow_sCMWrapper`
(_src/predict2/modules/denoiser_scaling.py), experiment `dmd2_trigflow_distill_cosmos_transfer2p5_2B_bidirectional_edge`:

- TrigFlow state x_t = cos(t) x0 + sin(t) noise (sigma_data 1), t from pi/2 (noise) to 0.
- 4 steps at t = pi/2, atan(15), atan(5), atan(5/3) (uniform rectified-flow times 1, .75, .5, .25 shifted
  by 5); for more steps, the shifted uniform grid linspace(1/n, 1, n) converted to TrigFlow time.
- Each step: the network sees x_t / (cos t + sin t) (the rectified-flow state) at the rectified-flow time
  sin t / (cos t + sin t); x0 = that state - time * velocity. Conditioning frames go in clean, with the time
  of sigma 1e-4, and x0 keeps their clean latent.
- Next state: cos(t') x0 + sin(t') noise with the *initial* noise again (no fresh noise), or x0 at the end.
- No classifier-free guidance and no negative prompt: guidance is distilled into the student.
The network's timestep input is this float time (the distilled config keeps timestep_scale 1), which is our
TransferNet's convention too. Accumulation is in float64, as upstream.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cosmos_t2.sampling.base import ChunkConditioning, Sampler, VelocityFn

DISTILLED_NUM_STEPS = 4
SELECTED_TIMES = (math.pi / 2, math.atan(15), math.atan(5), math.atan(5 / 3))
SIGMA_CONDITIONAL = 1e-4
TIMESTEP_SHIFT = 5.0


def trigflow_times(num_steps: int, shift: float = TIMESTEP_SHIFT) -> list[float]:
    """TrigFlow times of the steps, then 0."""
    if num_steps <= len(SELECTED_TIMES):
        return [*SELECTED_TIMES[:num_steps], 0.0]
    rf = torch.linspace(1.0 / num_steps, 1.0, num_steps)
    rf = (shift * rf / (1 + (shift - 1) * rf)).tolist()[::-1]
    return [math.pi / 2 if t >= 1.0 else math.atan(t / (1.0 - t)) for t in rf] + [0.0]


def sample_distilled(
    velocity_fn: VelocityFn,
    noise: Tensor,
    *,
    num_steps: int = DISTILLED_NUM_STEPS,
    condition_latent: Tensor | None = None,
    condition_mask: Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """noise (B, C, T, H, W) -> clean latent (B, C, T, H, W) fp32; condition_* as in `sampling.sample`."""
    init = noise.double()
    mask = torch.zeros_like(init[:, :1]) if condition_mask is None else condition_mask.double()
    clean = torch.zeros_like(init) if condition_latent is None else condition_latent.double()
    frame_is_cond = mask.mean(dim=(1, 3, 4))  # (B, T)
    cond_time = SIGMA_CONDITIONAL / (1.0 + SIGMA_CONDITIONAL)  # rectified-flow time of atan(1e-4)
    times = trigflow_times(num_steps)
    x = init
    for i, (t, t_next) in enumerate(itertools.pairwise(times)):
        scale = math.cos(t) + math.sin(t)
        rf_time = math.sin(t) / scale
        x_in = mask * clean + (1 - mask) * (x / scale)
        timesteps = frame_is_cond * cond_time + (1 - frame_is_cond) * rf_time
        v = velocity_fn(x_in.float(), timesteps.float(), guided=False)[0].double()
        x0 = (x - math.sin(t) * v) / scale
        x0 = mask * clean + (1 - mask) * x0
        x = math.cos(t_next) * x0 + math.sin(t_next) * init if t_next > 1e-5 else x0
        if progress is not None:
            progress(i + 1, len(times) - 1)
    return torch.nan_to_num(x.float())


@dataclass(frozen=True)
class DistilledSampler(Sampler):
    """The distilled model's sampler as a `Sampler`: no guidance, and always from pure noise (the
    distilled loop has no `sigma_max` or guided-generation entry; a spec asking for guided generation
    is refused before any model is built)."""

    num_steps: int = DISTILLED_NUM_STEPS
    name: str = "distilled"
    guided: bool = False
    starts_from_input: bool = False

    def loop(self, cond: ChunkConditioning) -> tuple[Callable[..., Tensor], dict[str, Any]]:
        return sample_distilled, {"num_steps": self.num_steps}
