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
            steps, x="hardware", y="s_per_step", color="source", points="all",
            labels={"s_per_step": "seconds per diffusion step"},
        )  # fmt: skip
        out.append(("chart-s-per-step", "Seconds per diffusion step per device", fig))
    if not stages.empty:
        fig = px.bar(
            stages, x="job", y="seconds", color="stage", facet_col="hardware", hover_data=["sample"],
            labels={"seconds": "seconds of the diffuse rule's wall time"},
        )  # fmt: skip
        out.append(("chart-stages", "Where a diffusion rule's wall time goes", fig))
    if not fidelity.empty:
        fig = px.line(
            fidelity, x="control_weight", y="score", color="sample", line_dash="video", symbol="hardware",
            facet_col="metric", markers=True, category_orders={"video": ["output", *REFERENCE_NAMES.values()]},
        )  # fmt: skip
        fig.update_yaxes(matches=None)
        out.append(
            ("chart-fidelity", "Control fidelity against control weight, with its reference points", fig)
        )
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
                }
            )
    return pd.DataFrame(rows)


def fidelity_rows(
    jobs: pd.DataFrame, refs: dict[tuple[str, str], dict[str, dict[str, float]]]
) -> pd.DataFrame:
    """Long table for the chart: each job's score per metric, and its control set's reference scores at the
    same control weight (so a reference is a flat line beside the output's)."""
    metrics = [m.metric for m in MODALITIES.values() if m.metric is not None and m.metric in jobs]
    if not metrics or "control_weight" not in jobs:
        return pd.DataFrame()
    rows = []
    for job in jobs.to_dict("records"):
        for metric in metrics:
            if not present(job.get(metric)):
                continue
            base = {
                "hardware": job["hardware"],
                "sample": job["sample"],
                "control_weight": job["control_weight"],
            }
            rows.append({**base, "metric": metric, "video": "output", "score": job[metric]})
            for ref in REFERENCES:
                score = refs.get((job["hardware"], job.get("controls")), {}).get(ref, {}).get(metric)
                if score is not None:
                    rows.append({**base, "metric": metric, "video": REFERENCE_NAMES[ref], "score": score})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).drop_duplicates().sort_values(["metric", "sample", "video", "control_weight"])


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
