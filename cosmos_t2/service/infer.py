"""What `cosmos-t2 infer` runs once its options are parsed, in its own process or on a server.

`InferArgs` is the parsed command line; `run_infer` turns it into `RunOptions` (`run_options`) and runs
the job or the batch, telling its caller what happened through `JobEvent`s: the CLI prints them, the
server behind `infer --server` streams them to its client. Both call this same function (the server with
its long-lived model pool), so a served job takes the same path and writes the same bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_t2.errors import CosmosError
from cosmos_t2.job.options import RunSettings, build_run_options
from cosmos_t2.job.progress import EventSink, JobEvent
from cosmos_t2.job.run import RunOptions, run_on_ranks
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.jobspec.parse import parse_set_options
from cosmos_t2.service.batch import failure_line, load_batch_jobs, run_batch

if TYPE_CHECKING:
    from cosmos_t2.runtime.pool import ModelPool
    from cosmos_t2.service.batch import Outcome

PATH_FIELDS = ("out_dir", "model_dir", "controls_dir", "masks_dir", "prompt_embeddings")
# The InferArgs fields that a job's RunOptions takes unchanged, under the same name.
PASSED_AS_IS = (
    "tiny",
    "model_dir",
    "controls_dir",
    "masks_dir",
    "prompt_embeddings",
    "latents_only",
    "guardrails",
)


@dataclass
class InferArgs:
    """`cosmos-t2 infer`'s arguments as parsed (paths as given: relative to the caller's folder)."""

    jobs: list[Path]
    out_dir: Path | None = None
    run: RunSettings = field(default_factory=RunSettings)  # device, compile, attention, memory
    tiny: bool = False
    model_dir: Path | None = None
    distilled: bool = False  # the folder's <control>_distilled checkpoint before its full one
    gpus: int = 1
    controls_dir: Path | None = None
    masks_dir: Path | None = None
    prompt_embeddings: Path | None = None
    latents_only: bool = False
    set_: list[str] = field(default_factory=list)
    name: str | None = None
    quiet: bool = False
    guardrails: bool = False
    force: bool = False
    set_dir: Path | None = None  # where relative paths in `--set` values resolve; None: the working folder

    def resolved(self, cwd: Path) -> InferArgs:
        """These arguments with every path absolute, resolved in `cwd` (what a client sends its server)."""

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else cwd / path.expanduser()

        return dataclasses.replace(
            self,
            jobs=[cwd / p.expanduser() for p in self.jobs],
            run=dataclasses.replace(self.run, compile_cache=absolute(self.run.compile_cache)),
            set_dir=absolute(self.set_dir) or cwd,
            **{name: absolute(getattr(self, name)) for name in PATH_FIELDS},
        )


def run_options(
    args: InferArgs,
    *,
    events: EventSink | None,
    argv: list[str],
    pool: ModelPool | None = None,
    first_in_process: bool = True,
) -> RunOptions:
    """The `RunOptions` of `args` (out_dir as given: None until the spec names one)."""
    return build_run_options(
        args.run,
        out_dir=args.out_dir,  # filled in by run_infer before any job runs
        **{name: getattr(args, name) for name in PASSED_AS_IS},
        prefer_distilled=args.distilled,
        progress="lines" if args.quiet else "auto",  # auto: the bar on a terminal, lines in a log file
        pool=pool,
        first_in_process=first_in_process,
        events=events,
        argv=list(argv),
    )


def run_infer(
    args: InferArgs,
    *,
    events: EventSink,
    argv: list[str],
    pool: ModelPool | None = None,
    first_in_process: bool = True,
    progress: str | None = None,
) -> None:
    """Run `args`' job (its error is raised) or batch (failures reported, then one closing error).

    `events`: where the job's lines and results go; `argv`: the command line its sidecar records; `pool`:
    models kept from earlier jobs of this process (the server's), None builds this run's own; `progress`:
    a mode that replaces the options' (the server's jobs write lines: no terminal there is the client's)."""
    jobs, name = args.jobs, args.name
    overrides = parse_set_options(args.set_)
    options = run_options(args, events=events, argv=argv, pool=pool, first_in_process=first_in_process)
    if progress is not None:
        options = dataclasses.replace(options, progress=progress)
    single = (
        len(jobs) == 1 and not jobs[0].is_dir() and (name is not None or jobs[0].suffix.lower() != ".jsonl")
    )
    if single:  # one job: its error is the command's error, outputs are rewritten
        spec = load_job(jobs[0], name=name, overrides=overrides, overrides_dir=args.set_dir)
        if options.out_dir is None:
            if spec.output_dir is None:
                raise CosmosError("no output folder: pass -o DIR or set output_dir in the spec", file=jobs[0])
            options = dataclasses.replace(options, out_dir=spec.output_dir)
        result = run_on_ranks(spec, options)
        for path in (result.video, result.latents, result.sidecar):
            if path is not None:
                events(JobEvent("output", str(path)))
        return

    def report(outcome: Outcome) -> None:
        if outcome.status == "failed":
            events(JobEvent("failed", f"{outcome.name}: {outcome.error}"))
        elif outcome.status == "skipped":
            events(JobEvent("message", f"skipped {outcome.name} (outputs exist; --force reruns it)"))
        else:
            if outcome.redone_because:
                events(JobEvent("message", f"redid {outcome.name}: {outcome.redone_because}"))
            for path in (outcome.result.video, outcome.result.latents, outcome.result.sidecar):
                if path is not None:
                    events(JobEvent("output", str(path)))

    if options.out_dir is None:  # the batch record and every job's outputs go to one folder
        raise CosmosError("several jobs write to one folder: pass -o DIR", file=", ".join(map(str, jobs)))
    batch = load_batch_jobs(jobs, overrides, name=name, overrides_dir=args.set_dir)
    result = run_batch(batch, options, force=args.force, on_outcome=report)
    if result.failed:
        raise CosmosError(failure_line(result))
