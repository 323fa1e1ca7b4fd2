"""What `bench --sweep` reads back from a finished run folder: one row per job, the rules' seconds, the sweep.

A job went through the rules its manifest entry names (`benchmarks`: rule -> benchmark key) and the spec rules
of its shared stages. Snakemake's `benchmark:` TSV of a rule holds its seconds (`s`) and is written when the
rule ends, so the file's time less those seconds is when the rule started. A job's wall runs from the first of
its rules to start (a shared decode counts for every job that reads it) to its mp4; its steps are the diffuse
sidecar's `diffusion` seconds; its overhead is the difference.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cosmos_t2.errors import CosmosError

SHARED_STAGES = ("decode", "controls", "masks", "prompt")


def read_benchmark(path: Path) -> tuple[float, float]:
    """(start, seconds) of the rule whose benchmark TSV this is (times as file times)."""
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise CosmosError("not a Snakemake benchmark file (no `s` column)", file=path)
    seconds = float(rows[0]["s"])
    return path.stat().st_mtime - seconds, seconds


def job_rules(job: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (rule, benchmark key) of every rule the job went through; a shared stage's spec rule is
    named `spec:<stage>`."""
    rules = {rule: (rule, key) for rule, key in job["benchmarks"].items()}
    for stage in SHARED_STAGES:
        if stage in job["benchmarks"]:
            rules[f"spec:{stage}"] = ("spec", f"{stage}-{job['benchmarks'][stage]}")
    return rules


def job_row(run: Path, job: dict[str, Any], started_at: float) -> dict[str, Any]:
    rules = {
        name: read_benchmark(run / "benchmarks" / rule / f"{key}.tsv")
        for name, (rule, key) in job_rules(job).items()
    }
    video = run / job["paths"]["video"]
    if not video.is_file():
        raise CosmosError("the job's video is missing after the sweep", file=video)
    end = video.stat().st_mtime
    first = min(start for start, _ in rules.values())
    sidecar = json.loads((run / job["paths"]["diffuse_sidecar"]).read_text())
    steps_s = float(sidecar.get("timings_s", {}).get("diffusion", 0.0))
    wall = end - first
    return {
        "name": job["name"], "key": job["key"], "control_weight": job["settings"].get("control_weight"),
        "steps": sidecar.get("steps"), "seconds_per_step": sidecar.get("seconds_per_step"),
        "started_s": round(first - started_at, 3), "finished_s": round(end - started_at, 3),
        "wall_s": round(wall, 3), "steps_s": round(steps_s, 3), "overhead_s": round(wall - steps_s, 3),
        "rules_s": {rule: round(seconds, 3) for rule, (_, seconds) in rules.items()},
    }  # fmt: skip


def rule_totals(run: Path) -> tuple[dict[str, dict[str, float]], list[tuple[float, float]]]:
    """rule -> {jobs, seconds} over every benchmark file of the run, and every rule's (start, end)."""
    totals: dict[str, dict[str, float]] = {}
    spans = []
    for path in sorted((run / "benchmarks").rglob("*.tsv")):
        rule = path.relative_to(run / "benchmarks").parts[0]
        start, seconds = read_benchmark(path)
        entry = totals.setdefault(rule, {"jobs": 0, "seconds": 0.0})
        entry["jobs"] += 1
        entry["seconds"] = round(entry["seconds"] + seconds, 3)
        spans.append((start, start + seconds))
    return totals, spans


def covered(spans: list[tuple[float, float]]) -> float:
    """Seconds in which at least one rule ran (overlapping rules counted once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def collect_result(results: Path, *, started_at: float, wall_s: float) -> dict[str, Any]:
    """The rows and summary of the one run folder under `results` (a sweep has one hardware label)."""
    manifests = sorted(results.glob("*/manifest.json"))
    if len(manifests) != 1:
        raise CosmosError(
            f"expected one run folder with a manifest.json, found {len(manifests)}", file=results
        )
    run = manifests[0].parent
    jobs = json.loads(manifests[0].read_text())["jobs"]
    rows = sorted((job_row(run, job, started_at) for job in jobs), key=lambda r: r["finished_s"])
    rules, spans = rule_totals(run)
    steps = sum(r["steps_s"] for r in rows)
    n = len(rows)
    summary = {
        "jobs": n, "sweep_wall_s": round(wall_s, 3), "first_video_s": rows[0]["finished_s"] if rows else None,
        "per_job_s": round(wall_s / n, 3), "steps_per_job_s": round(steps / n, 3),
        "overhead_per_job_s": round((wall_s - steps) / n, 3), "jobs_per_hour": round(3600 * n / wall_s, 2),
        # Snakemake's start, planning and scheduling, and the gaps between rules: no rule ran then
        "outside_rules_s": round(max(wall_s - covered(spans), 0.0), 3),
    }  # fmt: skip
    return {"hardware_label": run.name, "summary": summary, "jobs": rows, "rules": rules}


def print_sweep(result: dict[str, Any]) -> None:
    """One row per job in the order their videos came, then each rule's seconds, then the sweep."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = result["summary"]
    title = f"cosmos-t2 bench --sweep on {result['device']} ({result['options']['preset']}, {result['hardware_label']})"
    table = Table(
        title=f"{title}\nseconds; mp4 at: since the sweep started; wall: the job's first rule to its mp4"
    )
    for column in ("job", "weight", "steps", "mp4 at", "wall", "in steps", "overhead", "diffuse"):
        table.add_column(column, justify="left" if column == "job" else "right")
    for row in result["jobs"]:
        table.add_row(
            row["name"], str(row["control_weight"]), str(row["steps"]), f"{row['finished_s']:.1f}",
            f"{row['wall_s']:.1f}", f"{row['steps_s']:.1f}", f"{row['overhead_s']:.1f}",
            f"{row['rules_s'].get('diffuse', 0.0):.1f}",
        )  # fmt: skip
    console.print(table)
    rules = ", ".join(f"{rule} {v['seconds']:.1f} s/{v['jobs']:g}" for rule, v in result["rules"].items())
    console.print(f"rules (seconds / runs): {rules}")
    console.print(
        f"sweep: {summary['jobs']} jobs in {summary['sweep_wall_s']:.1f} s (Snakemake's scheduling included; "
        f"{summary['outside_rules_s']:.1f} s with no rule running), first video at {summary['first_video_s']:.1f} s; "
        f"per job {summary['per_job_s']:.1f} s = steps {summary['steps_per_job_s']:.1f} s + overhead "
        f"{summary['overhead_per_job_s']:.1f} s; {summary['jobs_per_hour']:.1f} jobs/hour"
    )
    where = result.get("work_dir")
    console.print(
        f"run folder: {where}"
        if where
        else "run folder: deleted with its temporary folder (--work-dir DIR keeps it)",
        soft_wrap=True,  # a path on one line, to copy
    )
