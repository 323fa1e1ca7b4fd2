"""What `cosmos-t2 infer` runs once its options are parsed, in its own process or on a server.

`InferArgs` is the parsed command line; `run_infer` turns it into `RunOptions` (`run_options`) and runs
the job or the batch, printing what `infer` prints. The `infer` command calls it in-process; the
server behind `infer --server` (`cli.serve`) calls the same function with its long-lived model pool, so
a served job takes the same path and writes the same bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from cosmos_t2.cli.app import default_device, err_console
from cosmos_t2.errors import CosmosError

if TYPE_CHECKING:
    from cosmos_t2.job.run import RunOptions
    from cosmos_t2.runtime.pool import ModelPool
    from cosmos_t2.service.batch import Outcome


@dataclass
class InferArgs:
    """`cosmos-t2 infer`'s arguments as parsed (paths as given: relative to the caller's folder)."""

    jobs: list[Path]
    out_dir: Path | None = None
    tiny: bool = False
    model_dir: Path | None = None
    device: str | None = None
    gpus: int = 1
    controls_dir: Path | None = None
    masks_dir: Path | None = None
    prompt_embeddings: Path | None = None
    latents_only: bool = False
    set_: list[str] = field(default_factory=list)
    name: str | None = None
    quiet: bool = False
    guardrails: bool = False
    compile: bool | None = None
    compile_mode: str | None = None
    attn_backend: str = "auto"
    compile_cache: Path | None = None
    no_compile_cache: bool = False
    force: bool = False
    offload: str = "auto"
    memory_cap: float | None = None
    deterministic: bool | None = None  # None: the project's default on CUDA (CPU: always)


def run_options(
    args: InferArgs, *, pool: ModelPool | None = None, first_in_process: bool = True
) -> RunOptions:
    """The `RunOptions` of `args` (out_dir as given: None until the spec names one)."""
    from cosmos_t2.job.run import RunOptions
    from cosmos_t2.model.device import resolve_device
    from cosmos_t2.runtime.acceleration import resolve_acceleration

    if args.device is not None:  # checked again: `infer --server` leaves the check to the server
        resolve_device(args.device)
    device = default_device(args.device)
    return RunOptions(
        out_dir=args.out_dir,  # type: ignore[arg-type]  # filled in by run_infer before any job runs
        device=device,
        tiny=args.tiny,
        model_dir=args.model_dir,
        controls_dir=args.controls_dir,
        masks_dir=args.masks_dir,
        prompt_embeddings=args.prompt_embeddings,
        latents_only=args.latents_only,
        progress="lines" if args.quiet else "auto",  # auto: the bar on a terminal, lines in a log file
        guardrails=args.guardrails,
        acceleration=resolve_acceleration(
            device,
            compile=args.compile,
            compile_mode=args.compile_mode,
            attn_backend=args.attn_backend,
            compile_cache=args.compile_cache,
            use_compile_cache=not args.no_compile_cache,
            deterministic=args.deterministic,
        ),
        pool=pool,
        offload=args.offload,
        memory_cap_gib=args.memory_cap,
        first_in_process=first_in_process,
    )


def run_infer(args: InferArgs, *, pool: ModelPool | None = None, first_in_process: bool = True) -> None:
    """Run `args`' job (its error is raised) or batch (failures reported, then one closing error).

    `pool`: models kept from earlier jobs of this process (the server's); None builds this run's own."""
    from cosmos_t2.job.run import run_on_ranks
    from cosmos_t2.jobspec.job import load_job
    from cosmos_t2.jobspec.parse import parse_set_options
    from cosmos_t2.service.batch import failure_line, load_batch_jobs, run_batch

    jobs, name = args.jobs, args.name
    overrides = parse_set_options(args.set_)
    options = run_options(args, pool=pool, first_in_process=first_in_process)
    single = (
        len(jobs) == 1 and not jobs[0].is_dir() and (name is not None or jobs[0].suffix.lower() != ".jsonl")
    )
    if single:  # one job: its error is the command's error, outputs are rewritten
        spec = load_job(jobs[0], name=name, overrides=overrides)
        if options.out_dir is None:
            if spec.output_dir is None:
                raise CosmosError("no output folder: pass -o DIR or set output_dir in the spec", file=jobs[0])
            options = dataclasses.replace(options, out_dir=spec.output_dir)
        result = run_on_ranks(spec, options)
        for path in (result.video, result.latents, result.sidecar):
            if path is not None:
                typer.echo(str(path))
        return

    def report(outcome: Outcome) -> None:
        if outcome.status == "failed":
            err_console.print(
                f"[bold red]failed:[/] {escape(f'{outcome.name}: {outcome.error}')}",
                highlight=False,
                soft_wrap=True,
            )
        elif outcome.status == "skipped":
            typer.echo(f"skipped {outcome.name} (outputs exist; --force reruns it)")
        else:
            if outcome.redone_because:
                typer.echo(f"redid {outcome.name}: {outcome.redone_because}")
            for path in (outcome.result.video, outcome.result.latents, outcome.result.sidecar):
                if path is not None:
                    typer.echo(str(path))

    if options.out_dir is None:  # the batch record and every job's outputs go to one folder
        raise CosmosError("several jobs write to one folder: pass -o DIR", file=", ".join(map(str, jobs)))
    batch = load_batch_jobs(jobs, overrides, name=name)
    result = run_batch(batch, options, force=args.force, on_outcome=report)
    if result.failed:
        raise CosmosError(failure_line(result))
