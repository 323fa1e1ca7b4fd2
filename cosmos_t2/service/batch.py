"""Many jobs in one process: `cosmos-t2 infer a.json b.json`, a JSONL (every sample) or a folder of specs.

Models are built (and compiled) once per model set and kept in a `pool.ModelPool` for the jobs that share it;
the jobs run in the order given and each writes exactly what a single `infer` of it writes. A job that fails
(bad spec file, bad input, a runtime error) is recorded and the rest go on; the caller turns the failures
into one closing line and exit code 2. Jobs whose outputs are complete (as their sidecar records them) are skipped unless `force`.

Under torchrun (`--gpus N`) every rank runs the same batch; there a failure ends the whole run (a rank that
failed leaves its process group unusable, and its peers cannot be told to skip), as a single job does.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmos_t2.atomic import write_json_atomic
from cosmos_t2.distributed.context import parallel_job
from cosmos_t2.distributed.launch import first_rank, under_torchrun
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.output import output_names
from cosmos_t2.job.run import JobResult, RunOptions, run_on_ranks
from cosmos_t2.job.sidecar import JobRecord
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.jobspec.load import load_specs_each
from cosmos_t2.runtime.pool import ModelPool
from cosmos_t2.weights.hashes import sha256_file

SPEC_SUFFIXES = (".json", ".jsonc", ".jsonl")
BATCH_RECORD = "batch.json"


@dataclass
class Outcome:
    name: str  # the job's name, or the spec file's path when the file itself did not load
    status: str  # "done" | "skipped" | "failed"
    error: str | None = None
    redone_because: str | None = None  # a job whose earlier outputs were there but no longer hold
    seconds: float = 0.0
    result: JobResult | None = None


@dataclass
class Batch:
    """Jobs to run, and spec files that failed to load (already outcomes)."""

    specs: list[Spec]
    failed: list[Outcome] = field(default_factory=list)


@dataclass
class BatchResult:
    outcomes: list[Outcome]
    builds: dict[str, int]  # what the pool built (net / vae / text_encoder)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def spec_files(paths: Iterable[Path]) -> list[Path]:
    """Each path as given; a folder becomes its spec files (.json/.jsonc/.jsonl), sorted by name."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SPEC_SUFFIXES and p.is_file())
            if not found:
                raise CosmosError("folder holds no spec files (.json, .jsonc, .jsonl)", file=path)
            out.extend(found)
        else:
            out.append(path)
    return out


def load_batch_jobs(
    paths: Iterable[Path],
    overrides: dict[str, Any],
    *,
    name: str | None = None,
    overrides_dir: Path | None = None,
) -> Batch:
    """Every sample of every spec file; a file that does not load is a failed outcome, not the end.

    `overrides_dir`: where relative paths in `overrides` resolve (None: the working folder)."""
    batch = Batch(specs=[])
    first_at: dict[str, Path] = {}
    for path in spec_files(paths):
        try:
            loaded = load_specs_each(path, overrides, overrides_dir=overrides_dir)
        except CosmosError as exc:
            batch.failed.append(Outcome(name=str(path), status="failed", error=str(exc)))
            continue
        for spec in loaded:
            if isinstance(spec, CosmosError):  # one bad line of a JSONL: the file's other jobs run
                where = spec.file or str(path)
                batch.failed.append(Outcome(name=where, status="failed", error=str(spec)))
                continue
            if spec.name in first_at:
                error = str(CosmosError(f"duplicate name {spec.name!r} (first in {first_at[spec.name]})",
                                        file=path, key="name"))  # fmt: skip
                batch.failed.append(Outcome(name=spec.name, status="failed", error=error))
                continue
            if f"{spec.name}.json" == BATCH_RECORD:  # its sidecar would be overwritten by the record
                error = str(CosmosError(f"the name {spec.name!r} is reserved in a batch (its sidecar would be "
                                        f"the batch record {BATCH_RECORD}); rename the job", file=path,
                                        key="name"))  # fmt: skip
                batch.failed.append(Outcome(name=spec.name, status="failed", error=error))
                continue
            first_at[spec.name] = path
            batch.specs.append(spec)
    if name is not None:
        batch.specs = [s for s in batch.specs if s.name == name]
        if not batch.specs:
            raise CosmosError(f"no sample named {name!r} (--name) in these specs", key="name")
    return batch


def redo_reason(spec: Spec, options: RunOptions) -> str | None:
    """None when this job is done with these settings, else why it runs (again).

    Done means: its sidecar (published last) records the main output file, that file is there with the
    recorded size and sha256 (a video truncated or replaced after the job is redone, not skipped as an
    unplayable file), and the record was made from the same resolved spec and model choice (a batch rerun
    with `--set num_steps=7` redoes the job rather than keep outputs of another setting)."""
    main_name, sidecar_name = output_names(spec, options.latents_only)
    try:
        data = json.loads((options.out_dir / sidecar_name).read_text())
        record = JobRecord.from_json(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return "no outputs yet"
    files = record.output_files if record is not None else None
    expected = files.get(main_name) if isinstance(files, dict) else None
    if not isinstance(expected, dict):  # an older sidecar, or one of a job that never finished
        return "its record does not list a finished output"
    main = options.out_dir / main_name
    try:  # size first: a truncated file is found without reading it
        if main.stat().st_size != expected.get("bytes") or sha256_file(main) != expected.get("sha256"):
            return f"{main_name} is not the file its record describes"
    except OSError:
        return f"{main_name} is missing"
    return settings_change(spec, options, record)


def settings_change(spec: Spec, options: RunOptions, record: JobRecord) -> str | None:
    """What differs between the job as asked now and as its record says it ran, or None."""
    if bool(record.tiny) != bool(options.tiny):
        return "the model changed (tiny then, full now)" if record.tiny else "the model changed (tiny now)"
    recorded = record.spec
    if not isinstance(recorded, dict):
        return "its record holds no spec"
    changed = record.changed_by_mode
    # the record holds the spec as run; a mode (tiny, distilled) may have changed some keys, kept as asked
    asked_then = {**recorded, **(changed if isinstance(changed, dict) else {})}
    asked_now = json.loads(json.dumps(spec.to_dict(), default=str))  # as JSON holds it: lists, not tuples
    differing = sorted(
        k for k in asked_then.keys() | asked_now.keys() if asked_then.get(k) != asked_now.get(k)
    )
    if not differing:
        return None
    shown = [f"{k} {_short(asked_then.get(k))} -> {_short(asked_now.get(k))}" for k in differing[:3]]
    more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
    return f"its settings changed: {', '.join(shown)}{more}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def run_batch(
    batch: Batch,
    options: RunOptions,
    *,
    force: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> BatchResult:
    """Run the batch's jobs in order on one model pool; DIR/batch.json records every outcome."""
    pool = options.pool if options.pool is not None else ModelPool()
    options = dataclasses.replace(options, pool=pool)
    distributed = under_torchrun() or options.parallel is not None
    outcomes = list(batch.failed)
    for failed in batch.failed:
        if on_outcome is not None:
            on_outcome(failed)
    with _ranks_joined(options.device):
        for spec in batch.specs:
            outcome = _run_one(spec, options, force=force, distributed=distributed)
            if outcome.status != "skipped":
                options = dataclasses.replace(options, first_in_process=False)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    result = BatchResult(outcomes=outcomes, builds=dict(pool.builds))
    if first_rank():  # rank 0 alone writes, as in a single job
        write_batch_record(options.out_dir / BATCH_RECORD, result)
    return result


@contextmanager
def _ranks_joined(device: str) -> Iterator[None]:
    """Under torchrun, one process group for the whole batch (each job still makes its own rank groups)."""
    if not under_torchrun():
        yield
        return
    with parallel_job(device):
        yield


def _run_one(spec: Spec, options: RunOptions, *, force: bool, distributed: bool) -> Outcome:
    """One job of the batch: skipped, done, or failed with its one line (re-raised under torchrun)."""
    started = time.perf_counter()
    reason = None if force else redo_reason(spec, options)
    if not force and reason is None:
        outcome = Outcome(spec.name, "skipped")
    else:
        try:
            outcome = Outcome(spec.name, "done", result=run_on_ranks(spec, options))
            if reason is not None and reason != "no outputs yet":
                outcome.redone_because = reason
        except CosmosError as exc:
            if distributed:
                raise
            outcome = Outcome(spec.name, "failed", error=str(exc))
        except Exception as exc:  # keep going: one job's crash (e.g. out of memory) is its own
            if distributed:
                raise
            outcome = Outcome(spec.name, "failed", error=f"{type(exc).__name__}: {exc}")
    outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


def write_batch_record(path: Path, result: BatchResult) -> Path:
    jobs = [
        {"name": o.name, "status": o.status, "error": o.error, "seconds": o.seconds} for o in result.outcomes
    ]
    return write_json_atomic(path, {"jobs": jobs, "failed": len(result.failed), "builds": result.builds})


def failure_line(result: BatchResult) -> str:
    """The batch's closing line when jobs failed: how many, and which."""
    failed = result.failed
    names = ", ".join(o.name for o in failed)
    return f"{len(failed)} of {len(result.outcomes)} jobs failed: {names}"
