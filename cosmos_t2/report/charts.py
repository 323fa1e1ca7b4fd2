"""The report's plotly charts; every chart carries the model label. The fidelity chart is `report.fidelity`'s,
how jobs and numbers are written `report.labels`'."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cosmos_t2.report.fidelity import fidelity_chart
from cosmos_t2.report.labels import PALETTE, device_label, job_labels

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
# Parts of a diffuse rule's wall time in the order they happen (data.stage_timings): each keeps one colour
# in every chart and every report, and no two share one (Alphabet has 26, more than there are parts).
STAGE_ORDER = [
    "process_start", "imports", "validate", "inputs", "inputs_wait", "guardrail_prompt", "text",
    "load_models", "image_context", "vae_encode", "diffusion", "vae_decode", "guardrail_video",
    "provenance", "write", "other",
]  # fmt: skip


def stage_colours(stages: list[str]) -> dict[str, str]:
    """A colour per stage: the known ones by their place in STAGE_ORDER, others after them by name."""
    extra = sorted(set(stages) - set(STAGE_ORDER))
    order = STAGE_ORDER + extra
    return {stage: PALETTE[i % len(PALETTE)] for i, stage in enumerate(order) if stage in set(stages)}


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
