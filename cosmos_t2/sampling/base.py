"""The seam between a job and its sampler: what a sampler is given, and what it must offer.

A sampler turns one chunk's noise into its clean latent, calling the network through a `VelocityFn`.
The pipeline picks one per job (`UniPCSampler` for the released model, `DistilledSampler` for the
4-step distilled one) and never asks which it has: a new sampler is one new implementation of `Sampler`
(subclassing it to share `__call__`, or not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor


@dataclass(frozen=True)
class GuidedGeneration:
    """Upstream's guided generation (`guided_generation_mask`; see cosmos_t2/guided.py): for steps
    i = 0..step_threshold (counted from 0, so step_threshold + 1 steps) the network input is
    mask * ((1 - sigma_i) * x0 + sigma_i * noise) + (1 - mask) * x, with `noise` the run's initial noise
    (not fresh noise) and sigma_i the schedule's sigma at step i. Conditioning frames are put in clean
    after this blend. The solver state x itself is never overwritten: only what the network sees.

    x0: (B, C, T, H, W) clean latent of the chunk's input video; mask: (B, C or 1, T, H, W) weights in
    [0, 1], 1 = guided.
    """

    x0: Tensor
    mask: Tensor
    step_threshold: int = 25


class VelocityFn(Protocol):
    def __call__(self, x: Tensor, timesteps: Tensor, *, guided: bool) -> Tensor:
        """x: (B, C, T, H, W) network input (conditioning frames clean); timesteps: (B, T) in [0, 1].

        Returns (2, B, C, T, H, W) = [prompt, negative prompt] velocities when guided, else
        (1, B, C, T, H, W). Implementations may run both passes as one batch of 2B.
        """
        ...


@dataclass(frozen=True)
class ChunkConditioning:
    """What one chunk's sampling starts from and is held to.

    noise: (B, C, T, H, W) initial noise. condition_latent / condition_mask: clean latent frames carried
    over from the previous chunk and the (B, 1, T, H, W) mask that marks them (None: no such frames).
    init_latent: the chunk's input latent, for a sampler that `starts_from_input`. guide: guided generation.
    """

    noise: Tensor
    condition_latent: Tensor | None = None
    condition_mask: Tensor | None = None
    init_latent: Tensor | None = None
    guide: GuidedGeneration | None = None


class Sampler(Protocol):
    """Noise -> clean latent for one chunk. `guided`: it needs the negative-prompt pass (CFG);
    `starts_from_input`: it wants the chunk's input latent as `init_latent`."""

    name: str
    num_steps: int

    @property
    def guided(self) -> bool: ...

    @property
    def starts_from_input(self) -> bool: ...

    def __call__(
        self,
        velocity_fn: VelocityFn,
        cond: ChunkConditioning,
        progress: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Returns the (B, C, T, H, W) fp32 clean latent; `progress(i, n)` after each step.

        Shared by the samplers that subclass this: every loop takes the noise, the carried-over frames
        and `progress` the same way, and `loop` adds what differs."""
        run, options = self.loop(cond)
        return run(
            velocity_fn, cond.noise, condition_latent=cond.condition_latent, condition_mask=cond.condition_mask,
            progress=progress, **options,
        )  # fmt: skip

    def loop(self, cond: ChunkConditioning) -> tuple[Callable[..., Tensor], dict[str, Any]]:
        """The sampling loop `__call__` runs, and its other keyword arguments: this sampler's settings
        and what else of `cond` it uses."""
        ...
