"""`cosmos-t2 report`: one self-contained HTML page over a results folder.

pandas makes the tables, plotly the charts (its JavaScript inlined once, so the page works offline),
jinja2 the page (`assets/report.html.j2`). Thumbnails are inline JPEGs and previews inline MP4s up to a
size limit (larger ones are linked relative to the page). See report_data.py for where each number
comes from.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import pandas as pd

from cosmos_t2 import __version__
from cosmos_t2.atomic import write_text_atomic
from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError
from cosmos_t2.report.charts import charts
from cosmos_t2.report.data import (
    Run,
    bench_table,
    benchmark_table,
    compute_metrics,
    compute_references,
    find_runs,
    finished_video,
    job_table,
    rule_summary,
    stage_timings,
)
from cosmos_t2.report.fidelity import LOWER_IS_BETTER, REFERENCE_NAMES, fidelity_rows, fidelity_table, reading
from cosmos_t2.report.labels import device_label, job_labels, number, present
from cosmos_t2.report.scope import sweep_scope
from cosmos_t2.report.sidecars import read_json, read_sidecar
from cosmos_t2.video import read_video

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).parent / "assets" / "report.html.j2"
THUMB_HEIGHT = 144
# The jobs table on the page; every other column is in the folded full table.
SHORT_COLUMNS = [
    "sample",
    "hardware",
    "settings",
    "diffuse_s",
    "s_per_step",
    "diffuse_cpu_rss_gib",
    "diffuse_gpu_gib",
]
HIDDEN_COLUMNS = {"controls", "tiny", "device_type", "threads", "processes", "setting_values"}
UNKNOWN_MODEL = "model named in no sidecar"


@dataclass(frozen=True)
class ReportOptions:
    metrics: bool = True
    metric_frames: int = 16  # frames per video the metrics look at
    embed_limit_mb: float = 8.0  # larger previews are linked, not inlined
    depth_model_dir: Path | None = None  # also score depth controls (si-RMSE) with this model
    device: str = "cpu"  # where the depth model runs
    sweep: Path | None = None  # report only this manifest's jobs (the workflow passes the current one)


def build_report(results: str | Path, out: str | Path, options: ReportOptions | None = None) -> Path:
    """Write the HTML report of the sweep's jobs under `results` to `out` (atomically); returns `out`."""
    import jinja2
    import plotly.offline

    options = options or ReportOptions()
    results, out = Path(results), Path(out)
    scope = sweep_scope(find_runs(results), options.sweep)
    runs = scope.runs
    bench = benchmark_table(runs)
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    refs: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    if options.metrics:
        metrics = compute_metrics(runs, options.metric_frames, options.depth_model_dir, options.device)
        refs = compute_references(runs, options.metric_frames, options.depth_model_dir, options.device)
    jobs = job_table(runs, bench, metrics)
    summary = rule_summary(bench)
    stages = stage_timings(runs, bench)
    benches = bench_table(runs)
    model = _model_label(jobs)
    metric_names = [m.metric for m in MODALITIES.values() if m.metric is not None and m.metric in jobs]

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    page = env.from_string(TEMPLATE.read_text()).render(
        title=f"cosmos-t2 report: {results.resolve().name}",
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        model=model,
        tiny=bool(len(jobs)) and "tiny" in jobs and bool(jobs["tiny"].fillna(False).astype(bool).any()),
        runs=[_run_header(r, jobs) for r in runs],
        plotly_js=_safe(plotly.offline.get_plotlyjs()),
        jobs_table=_table(_job_columns(jobs, metric_names, short=True)),
        jobs_full_table=_table(_job_columns(jobs, metric_names, short=False)),
        fidelity_table=_table(fidelity_table(jobs, refs), "data wrap-head wrap-last"),
        rule_table=_table(summary),
        bench_files_table=_table(bench),
        stage_table=_table(_stage_pivot(stages, jobs), "data wrap-head"),
        bench_table=_table(benches),
        charts=_render_charts(charts(summary, jobs, stages, benches, fidelity_rows(jobs, refs), model)),
        cards=[
            _card(run, job, jobs, refs, out.parent, options) for run in runs for job in run.manifest["jobs"]
        ],
        earlier=scope.earlier,
    )
    write_text_atomic(out, page)
    return out


def _model_label(jobs: pd.DataFrame) -> str:
    """The model(s) the outputs come from, as the sidecars name them ("tiny random-weight model")."""
    labels = sorted({str(v) for v in jobs.get("model", pd.Series(dtype=object)).dropna()})
    return " and ".join(labels) or UNKNOWN_MODEL


def _run_header(run: Run, jobs: pd.DataFrame) -> dict[str, Any]:
    mine = jobs[jobs["hardware"] == run.label] if len(jobs) else jobs
    rows = mine.dropna(subset=["device"]).to_dict("records") if "device" in mine else []
    where = (
        device_label(
            *(rows[0].get(k) for k in ("device", "device_type", "processes", "attention", "threads"))
        )
        if rows
        else ""
    )
    return {"label": run.label, "jobs": len(run.manifest["jobs"]), "where": where.strip(" ()")}


def _safe(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)  # our own HTML (pandas/plotly output, escaped by them)


def _table(frame: pd.DataFrame, classes: str = "data") -> Any:
    if frame.empty:
        return _safe("<p class='muted'>Nothing yet.</p>")
    html = frame.to_html(index=False, border=0, classes=classes, na_rep="–", float_format=number, escape=True)
    return _safe(html)


def _stage_pivot(stages: pd.DataFrame, jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per job (named by sample and the settings that vary, not its hash), one column per part of
    its diffuse rule's wall time in the order they happen; the hardware column only where there are several."""
    if stages.empty:
        return stages
    labels = job_labels(jobs)
    settings = {key: label.partition(" · ")[2] or "–" for key, label in labels.items()}
    stages = stages.assign(
        settings=[settings.get((h, j), "–") for h, j in zip(stages["hardware"], stages["job"], strict=True)]
    )
    order = list(dict.fromkeys(stages["stage"]))
    index = ["hardware", "sample", "settings", "job"]
    wide = stages.pivot_table(index=index, columns="stage", values="seconds", sort=False)
    wide = wide[order].reset_index().drop(columns="job")
    if wide["hardware"].nunique() == 1:
        wide = wide.drop(columns="hardware")
    wide.columns.name = None
    # "vae encode" wraps in its header where "vae_encode" would not: the table then fits a 1280 px page
    return wide.rename(columns={stage: stage.replace("_", " ") for stage in order})


def _job_columns(jobs: pd.DataFrame, metric_names: list[str], short: bool) -> pd.DataFrame:
    """The jobs table: the few columns that fit a page (short), or every column that has a value."""
    if jobs.empty:
        return jobs
    if short:
        keep = [c for c in [*SHORT_COLUMNS, *metric_names] if c in jobs and jobs[c].notna().any()]
    else:
        keep = [c for c in jobs.columns if c not in HIDDEN_COLUMNS and jobs[c].notna().any()]
    return jobs[keep]


def _render_charts(figures: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    out = []
    for div_id, title, fig in figures:
        html = fig.to_html(
            full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False}
        )
        out.append({"title": title, "html": _safe(html)})
    return out


def _card(
    run: Run,
    job: dict[str, Any],
    jobs: pd.DataFrame,
    refs: dict[tuple[str, str], dict[str, dict[str, float]]],
    page_dir: Path,
    options: ReportOptions,
) -> dict[str, Any]:
    """One job's section: model, spec, settings, thumbnails of the output and every control, preview, costs."""
    paths = job["paths"]
    video = run.folder / paths["video"]
    # plain infer outputs have no spec file: their sidecar holds the resolved spec (data.infer_runs)
    spec = job.get("resolved_spec") or read_json(run.folder / paths["spec"])
    sidecar = read_sidecar(run.folder / paths["diffuse_sidecar"])
    thumbs = []
    finished = finished_video(video)
    if finished:
        thumbs.append({"label": "output", "src": _thumbnail(video)})
    for modality in job.get("modalities", []):
        control = _control_video(run, paths, spec, modality)
        if control is not None:
            given = "given" if control.parent != run.folder / paths.get("controls", "-") else "computed"
            thumbs.append({"label": f"{modality} control ({given})", "src": _thumbnail(control)})
    row = jobs[(jobs["hardware"] == run.label) & (jobs["job"] == job["key"])] if not jobs.empty else jobs
    record = row.iloc[0].to_dict() if len(row) else {}
    facts = {k: number(v) for k, v in record.items() if present(v) and k not in HIDDEN_COLUMNS | {"settings"}}
    ref = refs.get((run.label, paths.get("controls") or ""), {})
    fidelity = [
        {
            "metric": m,
            "score": number(record[m]),
            "refs": {REFERENCE_NAMES[r]: number(ref[r][m]) for r in ref if m in ref[r]},
            "verdict": reading(float(record[m]), {r: ref[r].get(m) for r in ref}, m in LOWER_IS_BETTER),
        }
        for m in (x.metric for x in MODALITIES.values() if x.metric)
        if present(record.get(m))
    ]
    return {
        "id": f"{run.label}-{job['key']}",
        "name": job["name"],
        "hardware": run.label,
        "key": job["key"],
        "model": sidecar.label or UNKNOWN_MODEL,
        "tiny": bool(sidecar.tiny),
        "settings": job.get("settings", {}),
        "facts": facts,
        "fidelity": fidelity,
        "spec": json.dumps(spec if spec is not None else {"missing": paths["spec"]}, indent=2),
        "timings": {
            k: number(float(v)) for k, v in {**sidecar.timings.startup_s, **sidecar.timings.stages_s}.items()
        },
        "thumbs": [t for t in thumbs if t["src"]],
        "preview": _preview(video, page_dir, options.embed_limit_mb) if finished else None,
        "failure": _failure(run, facts, page_dir),
    }


def _control_video(
    run: Run, paths: dict[str, str], spec: dict[str, Any] | None, modality: str
) -> Path | None:
    """A job's control video: computed by the controls rule, or the file the spec gives (control_path)."""
    if paths.get("controls"):
        computed = run.folder / paths["controls"] / f"{modality}.mkv"
        if computed.is_file():
            return computed
    given = ((spec or {}).get(modality) or {}).get("control_path")
    if isinstance(given, str) and given:
        path = Path(given)
        return path if path.is_file() else None
    return None


def _failure(run: Run, facts: dict[str, Any], page_dir: Path) -> dict[str, str] | None:
    """A failed job's rule, error line and log (linked relative to the page), from `job_status`."""
    if facts.get("status") != "failed":
        return None
    log_path = run.folder / facts["log"]
    href = os.path.relpath(log_path, page_dir)
    return {"rule": facts["failed_rule"], "error": facts.get("error", ""), "log": str(log_path), "href": href}


def _thumbnail(path: Path) -> str | None:
    """The first frame as an inline JPEG, THUMB_HEIGHT pixels high."""
    try:
        frame = read_video(path, max_frames=1).frames[0].numpy()
    except CosmosError as exc:
        log.warning("no thumbnail for %s: %s", path, exc)
        return None
    scale = THUMB_HEIGHT / frame.shape[0]
    size = (max(1, round(frame.shape[1] * scale)), THUMB_HEIGHT)
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return f"data:image/jpeg;base64,{base64.b64encode(jpeg.tobytes()).decode()}" if ok else None


def _preview(video: Path, page_dir: Path, limit_mb: float) -> dict[str, Any]:
    size = video.stat().st_size
    if size <= limit_mb * 2**20:
        return {
            "src": f"data:video/mp4;base64,{base64.b64encode(video.read_bytes()).decode()}",
            "inline": True,
        }
    return {"src": os.path.relpath(video, page_dir), "inline": False, "mb": round(size / 2**20, 1)}
