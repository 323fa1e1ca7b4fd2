"""What `cosmos-t2 render` runs once its options are parsed, in its own process or on a server.

`RenderArgs` is the parsed command line; `run_render` checks the destination, decodes the latents with the
VAE and writes the mp4 and its sidecar (`job.output.render_latents`), and reports the written path as a
`JobEvent`. The CLI prints it; the server behind `render --server` streams it to its client. Both call this
function, the server with its long-lived model pool, whose VAE its diffuse jobs built (one VAE per GPU, kept
between renders), so a served render takes the same path and writes the same bytes. On the server the
render holds the GPU lock for its decode only: its mp4 write runs while the next job's steps do.
"""

from __future__ import annotations

import contextlib
import dataclasses
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_t2.destination import check_destination
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.progress import EventSink, JobEvent

if TYPE_CHECKING:
    from cosmos_t2.runtime.pool import ModelPool


@dataclass
class RenderArgs:
    """`cosmos-t2 render`'s arguments as parsed (paths as given: relative to the caller's folder)."""

    latents: Path
    out: Path
    tiny: bool = False
    model_dir: Path | None = None
    device: str | None = None  # None: CUDA when present (resolved where the render runs)
    guardrails: bool = False
    recorded_latents: str | None = None  # the latents as the sidecar names them (None: `latents`)

    def resolved(self, cwd: Path) -> RenderArgs:
        """These arguments with every path absolute in `cwd`, the latents recorded as given (what a client
        sends its server: the sidecar then reads as the client's own render's)."""
        return dataclasses.replace(
            self,
            latents=cwd / self.latents.expanduser(),
            out=cwd / self.out.expanduser(),
            model_dir=None if self.model_dir is None else cwd / self.model_dir.expanduser(),
            recorded_latents=self.recorded_latents or str(self.latents),
        )


def run_render(
    args: RenderArgs,
    *,
    events: EventSink,
    pool: ModelPool | None = None,
    gpu: AbstractContextManager[object] | None = None,
) -> None:
    """Render `args`' latents into its mp4 (its error is raised); `pool`: the server's (None: this render's
    own VAE); `gpu`: the server's GPU lock, held for the render's work on the device only, not for the mp4
    write (`render_latents`)."""
    from cosmos_t2.job.guardrails import load_guardrails  # here: torch loads where it runs
    from cosmos_t2.job.output import render_latents  # here: torch loads where it runs
    from cosmos_t2.model.device import resolve_device  # here: torch loads where it runs

    out = args.out
    check_destination(out.parent, [out.name, out.with_suffix(".json").name])
    if out.is_dir():
        raise CosmosError("the output path is a folder; give an .mp4 file name", file=out)
    device = args.device if args.device is not None else resolve_device(None).type
    check = None
    if args.guardrails:
        with gpu if gpu is not None else contextlib.nullcontext():  # the checker's models load on the device
            check = load_guardrails(device).check_video
    render_latents(args.latents, out, tiny=args.tiny, model_dir=args.model_dir, device=device, check_video=check,
                   pool=pool, recorded_as=args.recorded_latents, gpu=gpu)  # fmt: skip
    events(JobEvent("output", str(out)))
