"""Stop a chunk whose latent stops being finite, and say at which step.

`guarded_sample(sampler, velocity_fn, cond, ...)` runs any `Sampler` with its velocity function watched:
every step's velocity (the only new values a step adds to the latent) and the final latent must be finite.
A NaN or Inf (an fp16/bf16 overflow, a broken checkpoint) raises `NonFiniteLatent` naming the chunk and the
step, so no video of noise is written.

Cost: one `isfinite().all()` reduction per step, small beside a network call. On the CPU it is checked at
once, so the job stops at the step itself. On a GPU a check per step would be a host sync per step and
stall the launch queue; there the per-step flags stay on the device and are read once at the end of the
chunk (one sync, which the VAE decode after it needs anyway), and the first bad step is looked up then.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from cosmos_t2.errors import CosmosError
from cosmos_t2.sampling.base import ChunkConditioning, Sampler, VelocityFn


class NonFiniteLatent(CosmosError):
    """The sampler produced NaN or Inf: `chunk` and `step` are 1-based, as printed."""

    def __init__(
        self, *, chunk: int, num_chunks: int, step: int, num_steps: int, file: str | None = None
    ) -> None:
        self.chunk, self.step = chunk, step
        super().__init__(
            f"the latent became NaN/Inf at step {step} of {num_steps} in chunk {chunk} of {num_chunks}; "
            "no video was written (a broken checkpoint, or an overflow in reduced precision?)",
            file=file,
        )


def guarded_sample(
    sampler: Sampler,
    velocity_fn: VelocityFn,
    cond: ChunkConditioning,
    *,
    chunk: int,
    num_chunks: int,
    progress: Callable[[int, int], None] | None = None,
    file: str | None = None,
    sync_each_step: bool | None = None,
) -> Tensor:
    """`sampler(velocity_fn, cond, progress)`, raising `NonFiniteLatent` (chunk is 0-based here).

    sync_each_step: stop at the bad step itself (None: on the CPU only, see the module's docstring)."""
    flags: list[Tensor] = []  # one 0-dim bool per step, on the velocity's device
    if sync_each_step is None:
        sync_each_step = cond.noise.device.type == "cpu"

    def fail(step: int) -> NonFiniteLatent:
        n = sampler.num_steps
        return NonFiniteLatent(chunk=chunk + 1, num_chunks=num_chunks, step=step, num_steps=n, file=file)

    def watched(x: Tensor, timesteps: Tensor, *, guided: bool) -> Tensor:
        v = velocity_fn(x, timesteps, guided=guided)
        ok = torch.isfinite(v).all()
        flags.append(ok)
        if sync_each_step and not bool(ok):
            raise fail(len(flags))
        return v

    latent = sampler(watched, cond, progress=progress)
    if flags and not bool(torch.stack(flags).all()):
        raise fail(int((~torch.stack(flags)).nonzero()[0, 0]) + 1)
    if not bool(torch.isfinite(latent).all()):
        raise fail(max(len(flags), 1))
    return latent
