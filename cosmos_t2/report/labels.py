"""How the report writes jobs and numbers: a job by its sample and the settings that vary, a number to
three significant digits, a device with its count and attention kernel; the colours charts draw from."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# Alphabet (26 colours): distinct enough that no two stages or settings of a chart look alike.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf", "#393b79", "#e7ba52", "#637939", "#ad494a", "#a55194", "#6b6ecf", "#843c39", "#3182bd",
    "#31a354", "#fd8d3c", "#756bb1", "#636363", "#9c9ede", "#cedb9c", "#e7969c", "#de9ed6",
]  # fmt: skip


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
