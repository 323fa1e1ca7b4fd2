"""What the report shows, gathered from a results folder into tables.

A results folder holds one run folder per hardware label (`results/<label>/`), each with the
`manifest.json` the workflow writes (jobs, their settings and files), Snakemake's benchmark TSVs
(`benchmarks/<rule>/<key>.tsv`), the sidecars `cosmos-t2 infer` and `render` write, and any
`cosmos-t2 bench --json-out` results. A folder of plain `cosmos-t2 infer` outputs (one job or a
batch) has none of that: `infer_runs` makes the manifest from its sidecars, and the tables that need
benchmark files or controls on disk stay empty. Nothing here renders HTML; see build.py.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.sidecar import DeviceRecord, JobRecord
from cosmos_t2.report.metrics import control_fidelity, reference_points
from cosmos_t2.report.sidecars import read_json, read_sidecar
from cosmos_t2.workflow.manifest import PATHS, check_manifest

log = logging.getLogger(__name__)

# Snakemake benchmark columns we keep, and what the report calls them.
BENCH_COLUMNS = {
    "s": "wall_s",
    "cpu_time": "cpu_s",
    "max_rss": "max_rss_mib",
    "max_uss": "max_uss_mib",
    "mean_load": "mean_load",
    "io_in": "io_in_mib",
    "io_out": "io_out_mib",
}
BENCH_OPTIONS = ("steps", "cp", "cfg_parallel", "dtype", "compile", "attn_backend")


@dataclass(frozen=True)
class Run:
    """One run folder: a hardware label and the sweep it ran."""

    label: str
    folder: Path
    manifest: dict[str, Any]


def find_runs(results: Path) -> list[Run]:
    """Every run under `results`, sorted by label: a workflow results folder (`<label>/manifest.json`), one
    run folder (`manifest.json`), or, where there is no manifest, every folder of plain `cosmos-t2 infer`
    outputs (a job or a batch: `<name>.mp4` beside its sidecar `<name>.json`), one run per folder."""
    results = Path(results)
    if not results.is_dir():
        raise CosmosError("results folder not found", file=results)
    runs = []
    manifests = [results / "manifest.json"] if (results / "manifest.json").is_file() else []
    for path in manifests or sorted(results.glob("*/manifest.json")):
        try:
            manifest = check_manifest(json.loads(path.read_text(encoding="utf-8")), path)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CosmosError(f"not a JSON manifest: {exc}", file=path) from exc
        except RecursionError:
            raise CosmosError("not a sweep manifest: JSON nested too deeply", file=path) from None
        label = str((manifest.get("hardware") or {}).get("label") or path.parent.name)
        runs.append(Run(label, path.parent, manifest))
    if not runs:
        runs = infer_runs(results)
    if not runs:
        raise CosmosError(
            "no cosmos-t2 outputs found: expected a workflow's <label>/manifest.json or `cosmos-t2 infer` "
            "outputs (<name>.mp4 beside its <name>.json)",
            file=results,
        )
    return runs


def infer_sidecar(path: Path) -> JobRecord | None:
    """The sidecar `cosmos-t2 infer` writes beside its video (the resolved spec, and the video it made), or
    None for any other JSON file."""
    data = read_json(path)
    if data is None or not isinstance(data.get("spec"), dict) or not isinstance(data.get("outputs"), dict):
        return None
    record = JobRecord.from_json(data)
    video = record.outputs.get("video")
    return record if isinstance(video, str) and (path.parent / video).is_file() else None


# The spec keys a job of plain outputs is told apart by (a sweep's jobs carry their grid settings instead).
SPEC_SETTINGS = ("seed", "num_steps", "guidance")


def _spec_settings(spec: dict[str, Any], modalities: list[str]) -> dict[str, Any]:
    settings = {k: spec[k] for k in SPEC_SETTINGS if isinstance(spec.get(k), (int, float, str))}
    weights = {(spec.get(m) or {}).get("control_weight") for m in modalities}
    if len(weights) == 1 and isinstance(next(iter(weights)), (int, float)):
        settings["control_weight"] = next(iter(weights))
    return settings


def infer_runs(results: Path) -> list[Run]:
    """Folders of plain `cosmos-t2 infer` outputs under `results` (itself included), one Run each, with the
    manifest the workflow would have written made from the sidecars: the sidecar stands for the spec, the
    prompt and the latents (infer keeps them inside), settings are the spec's seed, steps, guidance and
    control weight. Only the settings that differ between a folder's jobs are kept, as a sweep's grid."""
    found: dict[Path, list[tuple[Path, JobRecord]]] = {}
    for path in sorted(results.rglob("*.json")):
        if "specs" in path.relative_to(results).parts:
            continue
        sidecar = infer_sidecar(path)
        if sidecar is not None:
            found.setdefault(path.parent, []).append((path, sidecar))
    runs = []
    for folder, sidecars in sorted(found.items()):
        jobs = []
        for path, sidecar in sidecars:
            spec = sidecar.spec or {}
            modalities = [m for m in MODALITIES if isinstance(spec.get(m), dict)]
            rel = path.name
            jobs.append(
                {
                    "key": path.stem,
                    "name": sidecar.name or path.stem,
                    "spec_file": rel,
                    "settings": _spec_settings(spec, modalities),
                    "modalities": modalities,
                    "resolved_spec": spec,
                    "paths": {
                        "spec": rel, "prompt": rel, "latents": rel, "diffuse_sidecar": rel,
                        "video": sidecar.outputs["video"],
                    },
                }
            )  # fmt: skip
        keys = {k for job in jobs for k in job["settings"]}
        varying = {k for k in keys if len({str(job["settings"].get(k)) for job in jobs}) > 1}
        for job in jobs:
            job["settings"] = {k: v for k, v in job["settings"].items() if k in varying}
        label = folder.resolve().name if folder == results else str(folder.relative_to(results))
        manifest = {"version": 1, "hardware": {"label": label}, "jobs": jobs, "bench": [], "plain": True}
        runs.append(Run(label, folder, manifest))
    return runs


def finished_video(video: Path) -> bool:
    """A video whose sidecar (`render` publishes it after the video) is there too: a video without one is
    left from an interrupted job and is not shown or scored."""
    return video.is_file() and video.with_suffix(".json").is_file()


# A job's rules in the order they run, with the product (a `paths` key) whose absence means the rule
# did not finish (Snakemake removes the outputs of a failed job, never its log).
RULE_PRODUCTS = (
    ("spec", "spec"), ("decode", "decoded"), ("controls", "controls"), ("masks", "masks"),
    ("prompt", "prompt"), ("diffuse", "latents"), ("encode", "video"),
)  # fmt: skip


def _last_line(path: Path) -> str:
    """The last non-blank line of a log (our one-line error), at most 300 characters."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 8192))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def job_status(run: Run, job: dict[str, Any]) -> dict[str, str]:
    """done (its video exists), failed (a rule ran, logged, and left no product: the rule, its log and
    the log's last line), or not run."""
    paths = job["paths"]
    if (run.folder / paths["video"]).is_file():
        return {"status": "done"}
    logs = job.get("logs", {})
    for rule, product in RULE_PRODUCTS:
        log_rel = logs.get(rule)
        if log_rel is None or product not in paths or (run.folder / paths[product]).exists():
            continue
        log_path = run.folder / log_rel
        if log_path.is_file():
            return {"status": "failed", "failed_rule": rule, "log": log_rel, "error": _last_line(log_path)}
    return {"status": "not run"}


def benchmark_table(runs: list[Run]) -> pd.DataFrame:
    """One row per benchmark file of the runs' jobs (each shared stage once): hardware, rule, key, wall/CPU
    seconds, memory (MiB), I/O. Files of jobs not in a run's manifest (earlier sweeps) are left out."""
    frames = []
    for run in runs:
        root = run.folder / "benchmarks"
        for rule, key in _benchmark_files(run):
            tsv = root / rule / f"{key}.tsv"
            try:
                table = pd.read_csv(tsv, sep="\t")
            except FileNotFoundError:
                continue  # that rule has not run yet
            except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
                log.warning("skipping unreadable benchmark %s", tsv)
                continue
            table = table.rename(columns=BENCH_COLUMNS)
            table = table[[c for c in BENCH_COLUMNS.values() if c in table]]
            table.insert(0, "key", key)
            table.insert(0, "rule", rule)
            table.insert(0, "hardware", run.label)
            frames.append(table)
    columns = ["hardware", "rule", "key", *BENCH_COLUMNS.values()]
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)
    for column in table.columns[3:]:
        table[column] = pd.to_numeric(table[column], errors="coerce")  # "-" where psutil had no value
    return table


def _benchmark_files(run: Run) -> list[tuple[str, str]]:
    """(rule, key) of every benchmark file the run's manifest names, in order, each once; the spec rule's
    files of the shared stages (decode-<key>, ...) and the bench presets too."""
    files: dict[tuple[str, str], None] = {}
    for job in run.manifest.get("jobs", []):
        stages = job.get("benchmarks", {})
        for rule, key in stages.items():
            files[(rule, key)] = None
        for stage in ("decode", "controls", "masks", "prompt"):
            if stage in stages:
                files[("spec", f"{stage}-{stages[stage]}")] = None
    for rel in run.manifest.get("bench", []):
        files[("bench", Path(rel).stem)] = None
    files[("manifest", "manifest")] = None
    return list(files)


def rule_summary(bench: pd.DataFrame) -> pd.DataFrame:
    """Per hardware and rule: how many jobs ran, mean and total wall time, CPU time, peak RSS."""
    if bench.empty:
        return pd.DataFrame(
            columns=["hardware", "rule", "jobs", "mean_wall_s", "total_wall_s", "mean_cpu_s", "max_rss_mib"]
        )
    grouped = bench.groupby(["hardware", "rule"], sort=True)
    summary = grouped.agg(
        jobs=("wall_s", "size"),
        mean_wall_s=("wall_s", "mean"),
        total_wall_s=("wall_s", "sum"),
        mean_cpu_s=("cpu_s", "mean"),
        max_rss_mib=("max_rss_mib", "max"),
    )
    return summary.reset_index()


def _settings_text(job: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(job.get("settings", {}).items())) or "as in the spec"


def job_table(
    runs: list[Run], bench: pd.DataFrame, metrics: dict[tuple[str, str], dict[str, float]]
) -> pd.DataFrame:
    """One row per job: what it was, what it cost (per rule and from its sidecars), how faithful it is."""
    rows = []
    walls = {(r.hardware, r.rule, r.key): r.wall_s for r in bench.itertuples()} if not bench.empty else {}
    for run in runs:
        for job in run.manifest.get("jobs", []):
            sidecar = read_sidecar(run.folder / job["paths"]["diffuse_sidecar"])
            rendered = read_sidecar((run.folder / job["paths"]["video"]).with_suffix(".json"))
            row: dict[str, Any] = {
                "hardware": run.label,
                "sample": job["name"],
                "job": job["key"],
                "spec": job["spec_file"],
                "settings": _settings_text(job),
                "setting_values": dict(job.get("settings", {})),  # for the charts' labels and axes
                "controls": job["paths"].get("controls"),
                **job_status(run, job),
                **{k: v for k, v in job.get("settings", {}).items() if not isinstance(v, (dict, list))},
            }
            for rule, key in job.get("benchmarks", {}).items():
                row[f"{rule}_s"] = walls.get((run.label, rule, key), math.nan)
            row["diffusion_steps"] = sidecar.diffusion_steps_total or sidecar.steps
            row["s_per_step"] = sidecar.timings.seconds_per_step
            row["model"] = sidecar.label
            row["tiny"] = sidecar.tiny
            device = sidecar.device or DeviceRecord()
            row["device_type"] = device.type
            row["device"] = device.name
            row["threads"] = device.threads
            row["processes"] = device.processes
            row["attention"] = device.attention
            peak = sidecar.timings.peak_memory_gib
            row["diffuse_gpu_gib"] = peak.get("gpu_allocated")
            row["diffuse_cpu_rss_gib"] = peak.get("cpu_rss")
            row["render_s"] = (rendered.render or {}).get("seconds")
            row.update(metrics.get((run.label, job["key"]), {}))
            rows.append(row)
    return pd.DataFrame(rows)


def stage_timings(runs: list[Run], bench: pd.DataFrame) -> pd.DataFrame:
    """Where each diffusion rule's wall time went, in order: the process's start and imports (sidecar
    `startup_s`), `infer`'s own stages (sidecar `timings_s`), and `other`: the rest of the rule's wall time
    in Snakemake's benchmark file (the shell, the process's exit, Snakemake's bookkeeping)."""
    walls = {(r.hardware, r.key): r.wall_s for r in bench[bench["rule"] == "diffuse"].itertuples()}
    rows = []
    for run in runs:
        for job in run.manifest.get("jobs", []):
            sidecar = read_sidecar(run.folder / job["paths"]["diffuse_sidecar"])
            parts = {**sidecar.timings.startup_s, **sidecar.timings.stages_s}
            if not parts:
                continue
            wall = walls.get((run.label, job.get("benchmarks", {}).get("diffuse")))
            if wall is not None and not math.isnan(wall):
                parts["other"] = max(wall - sum(parts.values()), 0.0)
            for stage, seconds in parts.items():
                rows.append(
                    {"hardware": run.label, "sample": job["name"], "job": job["key"], "stage": stage,
                     "seconds": seconds}
                )  # fmt: skip
    return pd.DataFrame(rows, columns=["hardware", "sample", "job", "stage", "seconds"])


def bench_table(runs: list[Run]) -> pd.DataFrame:
    """`cosmos-t2 bench` results: one row per file, nested sections flattened to `section.key`."""
    rows = []
    for run in runs:
        for rel in run.manifest.get("bench", []):
            data = read_json(run.folder / rel)
            if data is None:
                continue
            row: dict[str, Any] = {"hardware": run.label, "file": rel}
            for key, value in data.items():
                if isinstance(value, dict):
                    kept = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
                    if key == "options":  # how it was run; the rest of the options are tuning knobs
                        kept = {k: v for k, v in kept.items() if k in BENCH_OPTIONS}
                    row.update({f"{key}.{k}": v for k, v in kept.items()})
                elif not isinstance(value, list):
                    row[key] = value
            rows.append(row)
    return pd.DataFrame(rows)


def compute_metrics(
    runs: list[Run], max_frames: int = 16, depth_model_dir: Path | None = None, device: str = "cpu"
) -> dict[tuple[str, str], dict[str, float]]:
    """Control fidelity of each finished job's video against its computed controls."""
    scores: dict[tuple[str, str], dict[str, float]] = {}
    for run in runs:
        for job in run.manifest.get("jobs", []):
            video = run.folder / job["paths"]["video"]
            controls = job["paths"].get("controls")
            if not finished_video(video) or controls is None:
                continue
            try:
                scores[(run.label, job["key"])] = control_fidelity(
                    video, run.folder / controls, max_frames, depth_model_dir=depth_model_dir, device=device
                )
            except (CosmosError, ValueError) as exc:  # one unreadable video should not sink the report
                log.warning("no metrics for %s: %s", video, exc)
    return scores


def decoded_input(run: Run, job: dict[str, Any]) -> Path | None:
    """The decoded input the job's controls were computed from (the decode rule's output), if any."""
    key = job.get("benchmarks", {}).get("decode")
    return run.folder / PATHS["decoded"].format(key=key) if key else None


def compute_references(
    runs: list[Run], max_frames: int = 16, depth_model_dir: Path | None = None, device: str = "cpu"
) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """Reference points (`metrics.reference_points`) per run and control set: (label, controls) -> scores.

    They depend only on the control set and its input, so jobs that share controls share them."""
    refs: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for run in runs:
        for job in run.manifest.get("jobs", []):
            controls, source = job["paths"].get("controls"), decoded_input(run, job)
            if controls is None or source is None or (run.label, controls) in refs:
                continue
            try:
                refs[(run.label, controls)] = reference_points(
                    source, run.folder / controls, max_frames, depth_model_dir=depth_model_dir, device=device
                )
            except (CosmosError, ValueError) as exc:
                log.warning("no reference points for %s: %s", run.folder / controls, exc)
    return refs
