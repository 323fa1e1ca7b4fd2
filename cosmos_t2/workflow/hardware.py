"""Where a sweep runs: its device and hardware label, from the config file or else from the profile.

Profiles carry no sweep config (a profile's `config:` block, like any `--config`, would override the
config file): they say where jobs run through resources, and this module reads the two facts the sweep
needs from those resources when the config file leaves them open (`device: auto`, `hardware_label: ""`).
Only resources count, because Snakemake hands them (`--set-resources`) to every job it spawns on a cluster
node, so the node plans the same run folder as the submitting host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GPU_RULE = "diffuse"  # the rule whose resources say whether the sweep has GPUs


@dataclass(frozen=True)
class Hardware:
    device: str  # "cpu" or "cuda"
    label: str  # names the run folder <results>/<label> and every benchmark row
    derived: tuple[str, ...]  # the config keys that came from the profile's resources, not the config
    cluster: bool = False  # the diffusion rule asks a scheduler for a GPU model (SLURM): one allocation a job


def resolve_hardware(
    config: Mapping[str, Any],
    rule_resources: Mapping[str, Mapping[str, Any]],
    global_resources: Mapping[str, Any],
) -> Hardware:
    """The device and label of a sweep. What the config sets wins; `device: auto` is cuda when the run gives
    the diffusion rule a GPU (`--set-resources diffuse:gpu=N` or `--resources gpu=N`), else cpu; an empty
    `hardware_label` is `slurm-<gpu_model>` when the diffusion rule asks SLURM for a GPU model, `local-gpu`
    on cuda and `cpu-local` on cpu. `cluster` is whether that GPU model is asked for (a scheduler's node)."""
    diffuse = rule_resources[GPU_RULE] if GPU_RULE in rule_resources else {}  # noqa: SIM401 (see _item)
    derived = []
    device = str(config.get("device", "auto"))
    if device == "auto":
        gpus = _number(diffuse["gpu"] if "gpu" in diffuse else _item(global_resources, "gpu"))
        device = "cuda" if gpus >= 1 else "cpu"
        derived.append("device")
    label = str(config.get("hardware_label") or "")
    gpu_model = _raw(_item(diffuse, "gpu_model"))
    if not label:
        if gpu_model and device == "cuda":
            label = f"slurm-{gpu_model}"
        else:
            label = "local-gpu" if device == "cuda" else "cpu-local"
        derived.append("hardware_label")
    return Hardware(device, label, tuple(derived), cluster=bool(gpu_model))


def _item(mapping: Mapping[str, Any], key: str) -> Any:
    # Snakemake's `Resources` mapping has a one-argument get()
    return mapping[key] if key in mapping else None  # noqa: SIM401


def _raw(resource: Any) -> Any:
    """A resource's value as given (Snakemake wraps them in `Resource`, whose `raw` is the given value)."""
    return getattr(resource, "raw", resource)


def _number(resource: Any) -> float:
    value = _raw(resource)
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
