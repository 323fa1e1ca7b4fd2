"""The report's plotly charts and the numbers' formatting; every chart carries the model label."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.report.metrics import REFERENCES

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
# What each reference video is called on the page (see metrics.reference_points).
REFERENCE_NAMES = {
    "input": "input (ceiling)",
    "unrelated": "unrelated video (floor)",
    "noise": "noise (floor)",
}
LOWER_IS_BETTER = {"depth_si_rmse"}
# Parts of a diffuse rule's wall time in the order they happen (data.stage_timings): each keeps one colour
# in every chart and every report, and no two share one (Alphabet has 26, more than there are parts).
STAGE_ORDER = [
    "process_start", "imports", "validate", "inputs", "inputs_wait", "guardrail_prompt", "text",
    "load_models", "image_context", "vae_encode", "diffusion", "vae_decode", "guardrail_video",
    "provenance", "write", "other",
]  # fmt: skip
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf", "#393b79", "#e7ba52", "#637939", "#ad494a", "#a55194", "#6b6ecf", "#843c39", "#3182bd",
    "#31a354", "#fd8d3c", "#756bb1", "#636363", "#9c9ede", "#cedb9c", "#e7969c", "#de9ed6",
]  # fmt: skip
BAND_FILL = "rgba(100, 116, 139, 0.22)"


def stage_colours(stages: list[str]) -> dict[str, str]:
    """A colour per stage: the known ones by their place in STAGE_ORDER, others after them by name."""
    extra = sorted(set(stages) - set(STAGE_ORDER))
    order = STAGE_ORDER + extra
    return {stage: PALETTE[i % len(PALETTE)] for i, stage in enumerate(order) if stage in set(stages)}


def varying_settings(jobs: pd.DataFrame) -> list[str]:
    """The sweep settings that take more than one value among `jobs` (what tells its jobs apart)."""
    if "setting_values" not in jobs:
        return []
    keys = sorted({k for values in jobs["setting_values"] for k in (values or {})})
    return [k for k in keys if len({str((v or {}).get(k)) for v in jobs["setting_values"]}) > 1]


def job_labels(jobs: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(hardware, job key) -> "sample · setting=value, ..." with only the settings that vary: what a chart's
    axis and hover call a job (never its content hash)."""
    keys = varying_settings(jobs)
    out = {}
    for row in jobs.to_dict("records"):
        values = row.get("setting_values") or {}
        told = ", ".join(f"{k}={values[k]}" for k in keys if k in values)
        out[(row["hardware"], row["job"])] = f"{row['sample']} · {told}" if told else str(row["sample"])
    return out


def number(value: Any) -> str:
    """A float rounded for reading: three significant digits, no exponent below a million."""
    if not isinstance(value, (float, np.floating)):
        return str(value)
    if np.isnan(value):
        return "–"
    size = abs(float(value))
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 0.001 or size == 0:
        return f"{value:.3g}"
    return f"{value:.1e}"


def device_label(
    device: Any, device_type: Any, processes: Any, attention: Any = None, threads: Any = None
) -> str:
    """ " (NVIDIA H100 80GB HBM3 x4, fa4)" or " (CPU: AMD EPYC 7B13, 2 threads)" for chart axes (the attention
    kernel moves a step by 7%, so runs with different kernels must not look alike); "" without a device."""
    if not isinstance(device, str) or not device:
        return ""
    if device_type == "cpu":
        count = f", {int(threads)} thread{'s' if int(threads) != 1 else ''}" if present(threads) else ""
        return f" (CPU: {device}{count})"
    count = f" x{int(processes)}" if present(processes) and int(processes) > 1 else ""
    kernel = f", {attention}" if isinstance(attention, str) and attention else ""
    return f" ({device}{count}{kernel})"


def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def charts(
    summary: pd.DataFrame,
    jobs: pd.DataFrame,
    stages: pd.DataFrame,
    benches: pd.DataFrame,
    fidelity: pd.DataFrame,
    model_label: str,
) -> list[tuple[str, str, Any]]:
    """(div id, title, figure) of every chart there are numbers for."""
    import plotly.express as px

    out: list[tuple[str, str, Any]] = []
    if not summary.empty:
        order = [r for r in RULE_ORDER if r in set(summary["rule"])] + sorted(
            set(summary["rule"]) - set(RULE_ORDER)
        )
        fig = px.bar(
            summary, x="rule", y="mean_wall_s", color="hardware", barmode="group",
            category_orders={"rule": order}, labels={"mean_wall_s": "mean wall time per job (s)"},
        )  # fmt: skip
        out.append(("chart-rule-time", "Time per rule per hardware profile", fig))
    steps = _step_rows(jobs, benches)
    if not steps.empty:
        fig = px.box(
            steps, x="hardware", y="s_per_step", color="source", points="all", hover_data=["job"],
            labels={"s_per_step": "seconds per diffusion step"},
        )  # fmt: skip
        out.append(("chart-s-per-step", "Seconds per diffusion step per device", fig))
    if not stages.empty:
        labels = job_labels(jobs)
        stages = stages.assign(
            job_label=[labels.get((h, j), j) for h, j in zip(stages["hardware"], stages["job"], strict=True)]
        )
        colours = stage_colours(list(stages["stage"]))
        fig = px.bar(
            stages, x="job_label", y="seconds", color="stage", facet_col="hardware",
            hover_data={"sample": True, "job": True, "job_label": False},
            color_discrete_map=colours, category_orders={"stage": list(colours)},
            labels={"seconds": "seconds of the diffuse rule", "job_label": "job (sample · settings)"},
        )  # fmt: skip
        fig.for_each_annotation(lambda a: a.update(text=a.text.replace("hardware=", "")))
        fig.update_xaxes(title_text="job (sample · settings)", automargin=True)
        fig.update_yaxes(showticklabels=True, rangemode="tozero")
        out.append(("chart-stages", "Where a diffusion rule's wall time goes", fig))
    if not fidelity.empty:
        title, fig = fidelity_chart(fidelity)
        out.append(("chart-fidelity", title, fig))
    for _, title, fig in out:
        fig.update_layout(
            title={"text": f"{title}<br><sup>outputs of the {model_label}</sup>", "font": {"size": 14}},
            margin={"l": 50, "r": 20, "t": 60, "b": 40}, height=380, template="plotly_white",
        )  # fmt: skip
    return out


def _step_rows(jobs: pd.DataFrame, benches: pd.DataFrame) -> pd.DataFrame:
    rows = []
    if "s_per_step" in jobs:
        for row in jobs.dropna(subset=["s_per_step"]).to_dict("records"):
            where = device_label(
                row.get("device"),
                row.get("device_type"),
                row.get("processes"),
                row.get("attention"),
                row.get("threads"),
            )
            rows.append(
                {
                    "hardware": f"{row['hardware']}{where}",
                    "s_per_step": row["s_per_step"],
                    "source": "sweep jobs",
                    "job": f"{row['sample']} ({row.get('settings') or 'as in the spec'})",
                }
            )
    if "cosmos_t2.step_s" in benches:
        for row in benches.dropna(subset=["cosmos_t2.step_s"]).to_dict("records"):
            where = device_label(
                row.get("device"), "cuda", row.get("world_size"), row.get("attention_kernel")
            )
            rows.append(
                {
                    "hardware": row["hardware"] + where,
                    "s_per_step": row["cosmos_t2.step_s"],
                    "source": "cosmos-t2 bench",
                    "job": f"bench {row.get('file', '')}",
                }
            )
    return pd.DataFrame(rows)


def fidelity_rows(
    jobs: pd.DataFrame, refs: dict[tuple[str, str], dict[str, dict[str, float]]]
) -> pd.DataFrame:
    """One row per job and metric for the chart: the output's score, its control set's reference scores
    (noise, unrelated, input), the job's label and settings, and the verdict (`reading`)."""
    metrics = [m.metric for m in MODALITIES.values() if m.metric is not None and m.metric in jobs]
    if not metrics:
        return pd.DataFrame()
    labels = job_labels(jobs)
    rows = []
    for job in jobs.to_dict("records"):
        for metric in metrics:
            if not present(job.get(metric)):
                continue
            ref = refs.get((job["hardware"], job.get("controls") or ""), {})
            scores = {r: ref.get(r, {}).get(metric) for r in REFERENCES}
            rows.append(
                {
                    "hardware": job["hardware"], "sample": job["sample"], "job": job["job"],
                    "label": labels[(job["hardware"], job["job"])], "settings": job.get("settings", ""),
                    "setting_values": job.get("setting_values") or {}, "controls": job.get("controls") or "",
                    "metric": metric, "output": float(job[metric]), **scores,
                    "verdict": reading(float(job[metric]), scores, metric in LOWER_IS_BETTER),
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def _x_axis(rows: pd.DataFrame) -> tuple[str | None, list[float], dict[str, list[str]]]:
    """What the fidelity chart's x axis is: the numeric setting that varies (control_weight first), with
    each row's position; or, when none does, one place per sample and varying setting (the seed aside:
    seeds share a place, told apart by colour), numbered per metric panel, with its tick labels."""
    varying = varying_settings(rows)
    # a seed is a name, not a quantity: seeds are told apart by colour (and spread), never put on an axis
    numeric = [
        k for k in varying
        if k != "seed" and all(isinstance((v or {}).get(k), (int, float)) and not isinstance((v or {}).get(k), bool)
               for v in rows["setting_values"])
    ]  # fmt: skip
    if numeric:
        name = "control_weight" if "control_weight" in numeric else numeric[0]
        return name, [float(v[name]) for v in rows["setting_values"]], {}
    told = [k for k in varying if k != "seed"]
    places = [
        " · ".join([str(sample), *(f"{k}={(v or {}).get(k)}" for k in told)])
        for sample, v in zip(rows["sample"], rows["setting_values"], strict=True)
    ]
    ticks = {
        metric: sorted({p for p, m in zip(places, rows["metric"], strict=True) if m == metric})
        for metric in dict.fromkeys(rows["metric"])
    }
    xs = [float(ticks[m].index(p)) for p, m in zip(places, rows["metric"], strict=True)]
    return None, xs, ticks


def _spread(xs: list[float], keys: list[tuple[Any, ...]], width: float) -> list[float]:
    """Points that share a place (same metric and x) moved apart by up to ±width/2, in a fixed order, so a
    column of seeds reads as separate dots (hover tells the exact setting)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    out = list(xs)
    for members in groups.values():
        n = len(members)
        for rank, i in enumerate(members):
            out[i] = xs[i] + (width * (rank / (n - 1) - 0.5) if n > 1 else 0.0)
    return out


def fidelity_chart(rows: pd.DataFrame) -> tuple[str, Any]:
    """Each metric in its own panel with labelled axes and an explicit range (0 to 1 for scores, shared): the
    outputs as points against the setting that varies, over the band between the two floors (noise, an
    unrelated video) of their control set and the input's ceiling as a dashed line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = list(dict.fromkeys(rows["metric"]))
    x_name, xs, ticks = _x_axis(rows)
    span = (max(xs) - min(xs)) if x_name and len(set(xs)) > 1 else 1.0
    rows = rows.assign(
        x=_spread(xs, list(zip(rows["metric"], xs, strict=True)), 0.06 * span if x_name else 0.5)
    )
    seeds = "seed" in varying_settings(rows) and x_name != "seed"
    colour_by = "seed" if seeds else "sample"
    values = [
        str((v or {}).get("seed")) if seeds else s
        for v, s in zip(rows["setting_values"], rows["sample"], strict=True)
    ]
    rows = rows.assign(colour=values)
    palette = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(set(values)))}
    symbols = {
        h: sym
        for h, sym in zip(
            sorted(set(rows["hardware"])),
            ["circle", "diamond", "square", "x", "triangle-up", "cross"] * 9,
            strict=False,
        )
    }
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.09)  # y titles name the metrics
    legend_seen: set[str] = set()
    pad = 0.12 * span if x_name else 0.45
    for col, metric in enumerate(metrics, start=1):
        mine = rows[rows["metric"] == metric]
        for (hardware, _controls), group in mine.groupby(["hardware", "controls"], sort=True):
            lo_x, hi_x = float(group["x"].min()) - pad, float(group["x"].max()) + pad
            floors = [float(v) for v in (group["noise"].iloc[0], group["unrelated"].iloc[0]) if present(v)]
            sample = " and ".join(sorted(set(group["sample"])))
            if floors:
                lo, hi = min(floors), max(floors)
                hi = hi if hi > lo else lo + 0.004  # two equal floors still show as a thin band
                fig.add_trace(
                    go.Scatter(
                        x=[lo_x, hi_x, hi_x, lo_x, lo_x], y=[lo, lo, hi, hi, lo], fill="toself", mode="lines",
                        line={"width": 0}, fillcolor=BAND_FILL, name="floor band (noise, unrelated video)",
                        legendgroup="band", showlegend="band" not in legend_seen, hoverinfo="text",
                        text=f"{sample} ({hardware}): noise (floor) {number(group['noise'].iloc[0])}, "
                             f"unrelated video (floor) {number(group['unrelated'].iloc[0])}",
                    ),
                    row=1, col=col,
                )  # fmt: skip
                legend_seen.add("band")
            ceiling = group["input"].iloc[0]
            if present(ceiling):
                fig.add_trace(
                    go.Scatter(
                        x=[lo_x, hi_x], y=[float(ceiling)] * 2, mode="lines", name="input (ceiling)",
                        line={"dash": "dash", "color": "#475569", "width": 1.5}, legendgroup="ceiling",
                        showlegend="ceiling" not in legend_seen, hoverinfo="text",
                        text=f"{sample} ({hardware}): input (ceiling) {number(float(ceiling))}",
                    ),
                    row=1, col=col,
                )  # fmt: skip
                legend_seen.add("ceiling")
        for (colour, hardware), group in mine.groupby(["colour", "hardware"], sort=True):
            name = f"{colour_by} {colour}" if seeds else str(colour)
            if len(set(rows["hardware"])) > 1:
                name += f" ({hardware})"
            hover = [
                f"{r['sample']} ({r['hardware']})<br>{r['settings']}<br>{metric} {number(r['output'])}: {r['verdict']}"
                for r in group.to_dict("records")
            ]
            fig.add_trace(
                go.Scatter(
                    x=list(group["x"]), y=list(group["output"]), mode="markers", name=name, legendgroup=name,
                    showlegend=name not in legend_seen, hoverinfo="text", text=hover,
                    marker={"size": 9, "color": palette[colour], "symbol": symbols[hardware],
                            "line": {"width": 1, "color": "#fff"}},
                ),
                row=1, col=col,
            )  # fmt: skip
            legend_seen.add(name)
        lower = metric in LOWER_IS_BETTER
        if lower:
            top = max(
                float(v) for c in ("output", "noise", "unrelated", "input") for v in mine[c] if present(v)
            )
            y_range = [0.0, 1.1 * top or 1.0]
        else:
            y_range = [-0.02, 1.02]  # scores of 0..1, the same range in every such panel
        fig.update_yaxes(
            range=y_range, showticklabels=True, title_text=f"{metric} ({'lower' if lower else 'higher'} is better)",
            row=1, col=col,
        )  # fmt: skip
        if x_name:
            fig.update_xaxes(title_text=x_name, showticklabels=True, row=1, col=col)
        else:
            fig.update_xaxes(
                title_text="job (sample · settings)", tickvals=list(range(len(ticks[metric]))),
                ticktext=ticks[metric], range=[-0.6, len(ticks[metric]) - 0.4], row=1, col=col,
            )  # fmt: skip
    against = x_name or "job"
    title = f"Control fidelity against {against}: outputs over the floor band, with the input's ceiling"
    return title, fig


def fidelity_table(
    jobs: pd.DataFrame, refs: dict[tuple[str, str], dict[str, dict[str, float]]]
) -> pd.DataFrame:
    """One row per job and metric: the output's score beside its reference points, and what it amounts to."""
    metrics = [m.metric for m in MODALITIES.values() if m.metric is not None and m.metric in jobs]
    rows = []
    for job in jobs.to_dict("records") if metrics else []:
        for metric in metrics:
            if not present(job.get(metric)):
                continue
            ref = {k: v.get(metric) for k, v in refs.get((job["hardware"], job.get("controls")), {}).items()}
            row = {
                "hardware": job["hardware"], "sample": job["sample"], "settings": job["settings"],
                "metric": metric, "better": "lower" if metric in LOWER_IS_BETTER else "higher",
                "output": job[metric], **{REFERENCE_NAMES[r]: ref.get(r) for r in REFERENCES},
            }  # fmt: skip
            row["reading"] = reading(job[metric], ref, metric in LOWER_IS_BETTER)
            rows.append(row)
    return pd.DataFrame(rows)


def reading(score: float, ref: dict[str, float | None], lower_better: bool) -> str:
    """What a score amounts to against its references: "no better than noise" when a floor does as well."""
    sign = -1.0 if lower_better else 1.0
    floors = {name: ref[name] for name in ("noise", "unrelated") if ref.get(name) is not None}
    if not floors:
        return "no reference"
    name, best = max(floors.items(), key=lambda kv: sign * float(kv[1]))
    if sign * score <= sign * float(best):
        return f"no better than {'noise' if name == 'noise' else 'an unrelated video'}"
    ceiling = ref.get("input")
    if ceiling is None or sign * (float(ceiling) - float(best)) <= 0:
        return "above the floors"
    share = (score - float(best)) / (float(ceiling) - float(best))
    return f"{min(share, 1.0):.0%} of the way from the best floor to the input"
