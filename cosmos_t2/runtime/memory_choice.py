"""Which memory plan a job runs with: the memory its device offers (`Budget`), the first plan of the
requested offload mode whose estimate (`runtime.memory`) fits it, and, where none fits, what would.

A mode fits when its largest stage is at most HEADROOM of the budget; `auto` takes the first plan that fits
in the order of `PLANS` (fastest first). The text encoder runs on the GPU when it fits there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from cosmos_t2.errors import CosmosError
from cosmos_t2.model.device import cuda_index
from cosmos_t2.runtime.memory import (
    GIB,
    HEADROOM,
    OFFLOAD_MODES,
    PLANS,
    Estimate,
    JobShape,
    Plan,
    estimate,
    size,
)


@dataclass
class Budget:
    """The memory a job may use on its device; None: unbounded (a CPU run without a cap)."""

    bytes: int | None
    source: str  # what it was read from, for the message

    def fits(self, need: int) -> bool:
        return self.bytes is None or need <= HEADROOM * self.bytes


def device_budget(device: torch.device, cap_gib: float | None = None) -> Budget:
    """Free memory on `device` (plus what this process already holds), at most `cap_gib`."""
    cap = None if cap_gib is None else int(cap_gib * GIB)
    if device.type != "cuda":
        return Budget(cap, f"--memory-cap {cap_gib:g} GiB" if cap is not None else "no GPU")
    index = cuda_index(device)
    free, total = torch.cuda.mem_get_info(index)
    available = free + torch.cuda.memory_reserved(index)
    source = f"{size(available)} free on {torch.cuda.get_device_name(index)}"
    fraction = torch.cuda.get_per_process_memory_fraction(index)
    if fraction < 1.0:
        cap = min(cap, int(fraction * total)) if cap is not None else int(fraction * total)
    if cap is not None and cap < available:
        available, source = cap, f"capped at {size(cap)}"
    return Budget(available, source)


@dataclass
class Choice:
    """The plan a job runs with, the estimate behind it, and every plan's estimate."""

    estimate: Estimate
    budget: Budget
    requested: str
    candidates: list[Estimate] = field(default_factory=list)
    expandable_segments: bool = False  # the CUDA allocator was switched to grow segments (a tight budget)

    @property
    def plan(self) -> Plan:
        return self.estimate.plan

    def line(self) -> str:
        where = "" if self.budget.bytes is None else f"; fits {self.budget.source}"
        text = "" if self.estimate.text_on_gpu or not self.shape.text_encoder else "; text encoder on the CPU"
        return f"memory: {self.shape.describe()}: offload {self.estimate.line()}{where}{text}"

    @property
    def shape(self) -> JobShape:
        return self.estimate.shape

    def record(self) -> dict[str, Any]:
        return {
            "offload_requested": self.requested,
            "plan": dataclasses.asdict(self.plan),
            "budget_gib": None if self.budget.bytes is None else round(self.budget.bytes / GIB, 4),
            "budget_source": self.budget.source,
            "estimate_gib": {k: round(v / GIB, 6) for k, v in self.estimate.stages.items()},
            "estimate_peak_gib": round(self.estimate.peak / GIB, 6),
            "text_encoder_on_gpu": self.estimate.text_on_gpu,
            "expandable_segments": self.expandable_segments,
        }


def _plans_for(requested: str) -> tuple[Plan, ...]:
    if requested not in OFFLOAD_MODES:
        raise CosmosError(
            f"unknown offload mode {requested!r}; choose from {', '.join(OFFLOAD_MODES)}", key="--offload"
        )
    return PLANS if requested == "auto" else tuple(p for p in PLANS if p.offload == requested)


def _with_text_placement(est: Estimate, budget: Budget) -> Estimate:
    est.text_on_gpu = budget.fits(est.stages["text"])
    return est


def choose(shape: JobShape, requested: str, budget: Budget) -> Choice:
    """The first plan of `requested` (all of them, fastest first, for auto) whose peak fits `budget`.
    Nothing fits: one CosmosError line saying what would."""
    candidates = [_with_text_placement(estimate(shape, p), budget) for p in _plans_for(requested)]
    for est in candidates:
        if budget.fits(est.peak):
            return Choice(est, budget, requested, candidates)
    if budget.bytes is None:  # unbounded: the first plan (the plain one of the mode)
        return Choice(candidates[0], budget, requested, candidates)
    least = min(candidates, key=lambda e: e.peak)
    raise CosmosError(
        f"does not fit: {shape.describe()} needs {size(least.peak)} at the least (offload "
        f"{least.plan.describe()}), {budget.source} (usable {size(HEADROOM * budget.bytes)}); "
        f"{advice(shape, requested, budget)}"
    )


def advice(shape: JobShape, requested: str, budget: Budget) -> str:
    """What would fit instead: 480p, fewer controls, more GPUs, or another offload mode."""
    frugal = PLANS[-1] if requested == "auto" else _plans_for(requested)[-1]

    def fits(s: JobShape, plan: Plan = frugal) -> bool:
        return budget.fits(_with_text_placement(estimate(s, plan), budget).peak)

    options = []
    if requested != "auto" and fits(shape, PLANS[-1]):
        options.append("--offload auto")
    if not shape.tiny and shape.height * shape.width > 480 * 854:
        small = dataclasses.replace(shape, height=432, width=768)
        if fits(small):
            options.append("resolution 480")
    fewer = next(
        (n for n in range(shape.controls - 1, 0, -1) if fits(dataclasses.replace(shape, controls=n))), None
    )
    if fewer is not None:
        options.append(f"{fewer} control{'s' if fewer > 1 else ''}")
    gpus = next((n for n in (2, 4, 8) if n > shape.gpus and fits(dataclasses.replace(shape, gpus=n))), None)
    if gpus is not None:
        options.append(f"--gpus {gpus}")
    if not options:
        return "nothing smaller of this job fits; use a larger GPU"
    return "would fit: " + ", or ".join(options)


def estimate_lines(shape: JobShape, requested: str, budget: Budget) -> list[str]:
    """`validate --estimate`: every plan of `requested` with its stages and whether it fits, then the choice
    (CosmosError with the advice when nothing fits)."""
    lines = [
        f"{shape.describe()}; {budget.source}"
        + ("" if budget.bytes is None else f" (usable {size(HEADROOM * budget.bytes)})")
    ]
    for est in (_with_text_placement(estimate(shape, p), budget) for p in _plans_for(requested)):
        verdict = "" if budget.bytes is None else ("  fits" if budget.fits(est.peak) else "  does not fit")
        lines.append(f"  {est.line()}{verdict}")
    choice = choose(shape, requested, budget)
    lines.append(choice.line())
    return lines
