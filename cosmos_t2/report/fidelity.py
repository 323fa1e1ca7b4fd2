"""Control fidelity against its floors and ceiling: the chart, the table, and what a score amounts to
(`reading`). Each control set's references are the scores of noise, an unrelated video and the input
itself (`report.metrics.reference_points`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.report.labels import PALETTE, job_labels, number, present, varying_settings
from cosmos_t2.report.metrics import REFERENCES

# What each reference video is called on the page (see metrics.reference_points).
REFERENCE_NAMES = {
    "input": "input (ceiling)",
    "unrelated": "unrelated video (floor)",
    "noise": "noise (floor)",
}
LOWER_IS_BETTER = {"depth_si_rmse"}
BAND_FILL = "rgba(100, 116, 139, 0.22)"


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
