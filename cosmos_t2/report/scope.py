"""Which jobs a report is about: the sweep that was run, not everything left in the results folder.

A results folder keeps what earlier sweeps made (other grids, other specs) next to the current one, and the
run folder's benchmark files and sidecars stay after the config changes. The report's aggregates (header
counts, per-rule tables, charts) cover only the jobs of the current sweep's manifest, wherever they ran:
a run folder of another hardware label counts with the jobs it shares with the sweep (the same job key is
the same work, so that is a hardware comparison). Everything else found on disk is an earlier run, listed
apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cosmos_t2.errors import CosmosError
from cosmos_t2.report.data import Run
from cosmos_t2.report.sidecars import read_sidecar


@dataclass(frozen=True)
class Scope:
    runs: list[Run]  # the runs in the report, each holding only the sweep's jobs
    earlier: list[dict[str, Any]]  # jobs found on disk that are not in the sweep, newest first


def sweep_scope(runs: list[Run], sweep_manifest: Path | None = None) -> Scope:
    """Restrict `runs` to the jobs of `sweep_manifest` (every run's own manifest when None) and list the rest."""
    keys: set[str] | None = None
    if sweep_manifest is not None:
        try:
            keys = {job["key"] for job in json.loads(Path(sweep_manifest).read_text())["jobs"]}
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CosmosError(f"not a sweep manifest: {exc}", file=sweep_manifest) from exc
    kept = []
    for run in runs:
        jobs = [j for j in run.manifest.get("jobs", []) if keys is None or j["key"] in keys]
        if jobs:
            kept.append(replace(run, manifest={**run.manifest, "jobs": jobs}))
    in_scope = {(run.label, job["key"]) for run in kept for job in run.manifest["jobs"]}
    earlier = [job for run in runs for job in _jobs_on_disk(run) if (run.label, job["job"]) not in in_scope]
    return Scope(kept, sorted(earlier, key=lambda j: j["finished"], reverse=True))


def _jobs_on_disk(run: Run) -> list[dict[str, Any]]:
    """Every diffusion job with a sidecar under the run folder (`diffuse/<job>/<name>.json`)."""
    found = []
    for sidecar in sorted((run.folder / "diffuse").glob("*/*.json")):
        data = read_sidecar(sidecar)
        finished = datetime.fromtimestamp(sidecar.stat().st_mtime, UTC)
        found.append(
            {
                "hardware": run.label,
                "job": sidecar.parent.name,
                "sample": sidecar.stem,
                "finished": finished.strftime("%Y-%m-%d %H:%M UTC"),
                "steps": data.steps,
                "s_per_step": data.timings.seconds_per_step,
                "sidecar": str(sidecar.relative_to(run.folder.parent)),
            }
        )
    return found
