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
import numpy as np
import pandas as pd

from cosmos_t2 import __version__
from cosmos_t2.atomic import write_text_atomic
from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError
from cosmos_t2.report.data import (
    Run,
    bench_table,
    benchmark_table,
    compute_metrics,
    find_runs,
    finished_video,
    job_table,
    read_json,
    rule_summary,
    stage_timings,
)
from cosmos_t2.video import read_video

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).parent / "assets" / "report.html.j2"
THUMB_HEIGHT = 144
RULE_ORDER = [
    "spec",
    "decode",
    "controls",
    "masks",
    "prompt",
    "diffuse",
    "encode",
    "bench",
    "manifest",
    "report",
]


@dataclass(frozen=True)
class ReportOptions:
    metrics: bool = True
    metric_frames: int = 16  # frames per video the metrics look at
    embed_limit_mb: float = 8.0  # larger previews are linked, not inlined
    depth_model_dir: Path | None = None  # also score depth controls (si-RMSE) with this model
    device: str = "cpu"  # where the depth model runs


def build_report(results: str | Path, out: str | Path, options: ReportOptions | None = None) -> Path:
    """Write the HTML report of every run under `results` to `out` (atomically); returns `out`."""
    import jinja2
    import plotly.offline

    options = options or ReportOptions()
    results, out = Path(results), Path(out)
    runs = find_runs(results)
    bench = benchmark_table(runs)
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    if options.metrics:
        metrics = compute_metrics(runs, options.metric_frames, options.depth_model_dir, options.device)
    jobs = job_table(runs, bench, metrics)
    summary = rule_summary(bench)
    stages = stage_timings(runs)
    benches = bench_table(runs)

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    page = env.from_string(TEMPLATE.read_text()).render(
        title=f"cosmos-t2 report: {results.resolve().name}",
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        runs=[
            {"label": r.label, "jobs": len(r.manifest.get("jobs", [])), **r.manifest.get("hardware", {})}
            for r in runs
        ],
        plotly_js=_safe(plotly.offline.get_plotlyjs()),
        jobs_table=_table(_job_columns(jobs)),
        rule_table=_table(summary),
        bench_files_table=_table(bench),
        stage_table=_table(_stage_pivot(stages)),
        bench_table=_table(benches),
        charts=_charts(summary, jobs, stages, benches),
        cards=[
            _card(run, job, jobs, out.parent, options) for run in runs for job in run.manifest.get("jobs", [])
        ],
    )
    write_text_atomic(out, page)
    return out


def _safe(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)  # our own HTML (pandas/plotly output, escaped by them)


def _table(frame: pd.DataFrame) -> Any:
    if frame.empty:
        return _safe("<p class='muted'>Nothing yet.</p>")
    html = frame.to_html(
        index=False, border=0, classes="data", na_rep="–", float_format=lambda x: f"{x:.4g}", escape=True
    )
    return _safe(html)


def _stage_pivot(stages: pd.DataFrame) -> pd.DataFrame:
    """One row per job, one column per stage, in the order infer ran them."""
    if stages.empty:
        return stages
    order = list(dict.fromkeys(stages["stage"]))
    wide = stages.pivot_table(
        index=["hardware", "sample", "job"], columns="stage", values="seconds", sort=False
    )
    wide = wide[order].reset_index()
    wide.columns.name = None
    return wide


def _job_columns(jobs: pd.DataFrame) -> pd.DataFrame:
    """The job table without the columns that are empty for every job (e.g. GPU memory on CPU)."""
    if jobs.empty:
        return jobs
    keep = [c for c in jobs.columns if c != "settings" and jobs[c].notna().any()]
    return jobs[keep]


def _charts(
    summary: pd.DataFrame, jobs: pd.DataFrame, stages: pd.DataFrame, benches: pd.DataFrame
) -> list[dict[str, Any]]:
    import plotly.express as px

    charts: list[tuple[str, str, Any]] = []
    if not summary.empty:
        order = [r for r in RULE_ORDER if r in set(summary["rule"])] + sorted(
            set(summary["rule"]) - set(RULE_ORDER)
        )
        fig = px.bar(
            summary, x="rule", y="mean_wall_s", color="hardware", barmode="group",
            category_orders={"rule": order}, labels={"mean_wall_s": "mean wall time per job (s)"},
        )  # fmt: skip
        charts.append(("chart-rule-time", "Time per rule per hardware profile", fig))
    steps = _step_rows(jobs, benches)
    if not steps.empty:
        fig = px.box(
            steps,
            x="hardware",
            y="s_per_step",
            color="source",
            points="all",
            labels={"s_per_step": "seconds per diffusion step"},
        )
        charts.append(("chart-s-per-step", "Seconds per diffusion step per GPU type", fig))
    if not stages.empty:
        fig = px.bar(stages, x="job", y="seconds", color="stage", facet_col="hardware", hover_data=["sample"])
        charts.append(("chart-stages", "Where a diffusion job's time goes (infer's own stage timings)", fig))
    fidelity = _fidelity_rows(jobs)
    if not fidelity.empty:
        fig = px.line(
            fidelity,
            x="control_weight",
            y="score",
            color="sample",
            line_dash="hardware",
            facet_col="metric",
            markers=True,
        )
        charts.append(("chart-fidelity", "Control fidelity against control weight", fig))
    out = []
    for div_id, title, fig in charts:
        fig.update_layout(margin={"l": 50, "r": 20, "t": 30, "b": 40}, height=360, template="plotly_white")
        html = fig.to_html(
            full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False}
        )
        out.append({"title": title, "html": _safe(html)})
    return out


def _step_rows(jobs: pd.DataFrame, benches: pd.DataFrame) -> pd.DataFrame:
    rows = []
    if "s_per_step" in jobs:
        for row in jobs.dropna(subset=["s_per_step"]).to_dict("records"):
            gpu = _gpu_label(row.get("device"), row.get("processes"), row.get("attention"))
            rows.append(
                {
                    "hardware": f"{row['hardware']}{gpu}",
                    "s_per_step": row["s_per_step"],
                    "source": "sweep jobs",
                }
            )
    if "cosmos_t2.step_s" in benches:
        for row in benches.dropna(subset=["cosmos_t2.step_s"]).to_dict("records"):
            rows.append(
                {
                    "hardware": row["hardware"]
                    + _gpu_label(row.get("device"), row.get("world_size"), row.get("attention_kernel")),
                    "s_per_step": row["cosmos_t2.step_s"],
                    "source": "cosmos-t2 bench",
                }
            )
    return pd.DataFrame(rows)


def _gpu_label(device: Any, processes: Any, attention: Any = None) -> str:
    """ " (NVIDIA H100 80GB HBM3 x4, fa4)" for the s/step chart's axis (the attention kernel moves a step by
    7%, so runs with different kernels must not look alike); "" where the sidecar has no device."""
    if not isinstance(device, str) or not device:
        return ""
    count = f" x{int(processes)}" if _present(processes) and int(processes) > 1 else ""
    kernel = f", {attention}" if isinstance(attention, str) and attention else ""
    return f" ({device}{count}{kernel})"


def _fidelity_rows(jobs: pd.DataFrame) -> pd.DataFrame:
    metrics = [m.metric for m in MODALITIES.values() if m.metric is not None and m.metric in jobs]
    if not metrics or "control_weight" not in jobs:
        return pd.DataFrame()
    long = jobs.melt(
        id_vars=["hardware", "sample", "control_weight"],
        value_vars=metrics,
        var_name="metric",
        value_name="score",
    )
    return long.dropna(subset=["score"]).sort_values(["metric", "sample", "control_weight"])


def _card(
    run: Run, job: dict[str, Any], jobs: pd.DataFrame, page_dir: Path, options: ReportOptions
) -> dict[str, Any]:
    """One job's section: spec, settings, thumbnails, preview, costs."""
    paths = job["paths"]
    video = run.folder / paths["video"]
    spec = read_json(run.folder / paths["spec"])
    sidecar = read_json(run.folder / paths["diffuse_sidecar"]) or {}
    thumbs = []
    finished = finished_video(video)
    if finished:
        thumbs.append({"label": "output", "src": _thumbnail(video)})
    if paths.get("controls"):
        for modality in job.get("modalities", []):
            control = run.folder / paths["controls"] / f"{modality}.mkv"
            if control.is_file():
                thumbs.append({"label": f"{modality} control", "src": _thumbnail(control)})
    row = jobs[(jobs["hardware"] == run.label) & (jobs["job"] == job["key"])] if not jobs.empty else jobs
    facts = {k: v for k, v in (row.iloc[0].to_dict() if len(row) else {}).items() if _present(v)}
    return {
        "id": f"{run.label}-{job['key']}",
        "name": job["name"],
        "hardware": run.label,
        "key": job["key"],
        "settings": job.get("settings", {}),
        "facts": facts,
        "spec": json.dumps(spec if spec is not None else {"missing": paths["spec"]}, indent=2),
        "timings": sidecar.get("timings_s") or {},
        "thumbs": [t for t in thumbs if t["src"]],
        "preview": _preview(video, page_dir, options.embed_limit_mb) if finished else None,
    }


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


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
