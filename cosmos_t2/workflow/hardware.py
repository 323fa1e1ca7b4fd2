"""Where a sweep runs: its device and hardware label, from the config file or else from the profile.

Profiles carry no sweep config (a profile's `config:` block, like any `--config`, would override the
config file): they say where jobs run through resources, and this module reads the two facts the sweep
needs from those resources when the config file leaves them open (`device: auto`, `hardware_label: ""`).
Only resources count, because Snakemake hands them (`--default-resources`, `--set-resources`) to every job it
spawns on a cluster node, so the node plans the same run folder as the submitting host.

A SLURM profile maps the rules' needs to its site in `default-resources`: `slurm_partition` (which makes it a
cluster profile), `gpu_model` (which makes it a GPU one) and optionally `slurm_account`. The rules declare
what each stage needs (workflow/rules/common.smk); the GPU model is asked for by the GPU stages only.
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
    cluster: bool = False  # jobs go to a scheduler (SLURM): one allocation a job
    gpu_model: str = ""  # what the GPU stages ask the scheduler for (`--gpus=<model>:N`); "" asks for any


def resolve_hardware(
    config: Mapping[str, Any],
    rule_resources: Mapping[str, Mapping[str, Any]],
    global_resources: Mapping[str, Any],
    default_resources: Mapping[str, Any] | None = None,
) -> Hardware:
    """The device and label of a sweep. What the config sets wins; `device: auto` is cuda when the run gives
    the diffusion rule a GPU (`--set-resources diffuse:gpu=N` or `--resources gpu=N`) or the profile names a
    `gpu_model`, else cpu; an empty `hardware_label` names where the jobs ran: `slurm-<gpu_model>` (or
    `slurm-cpu`, `slurm-gpu`) when they go to a cluster, `local-gpu` on cuda and `cpu-local` on cpu here. A
    cluster is a profile that sets `slurm_partition` in its default-resources, or asks for a `gpu_model`
    for the diffusion rule."""
    diffuse = rule_resources[GPU_RULE] if GPU_RULE in rule_resources else {}  # noqa: SIM401 (see _item)
    site = default_resources or {}
    gpu_model = str(_raw(_item(diffuse, "gpu_model")) or _raw(_item(site, "gpu_model")) or "")
    cluster = bool(
        _raw(_item(site, "slurm_partition")) or _raw(_item(diffuse, "slurm_partition")) or gpu_model
    )
    derived = []
    device = str(config.get("device", "auto"))
    if device == "auto":
        gpus = _number(diffuse["gpu"] if "gpu" in diffuse else _item(global_resources, "gpu"))
        device = "cuda" if gpus >= 1 or (gpu_model and "gpu" not in diffuse) else "cpu"
        derived.append("device")
    label = str(config.get("hardware_label") or "")
    if not label:
        if cluster:
            label = f"slurm-{gpu_model or 'gpu'}" if device == "cuda" else "slurm-cpu"
        else:
            label = "local-gpu" if device == "cuda" else "cpu-local"
        derived.append("hardware_label")
    return Hardware(
        device, label, tuple(derived), cluster=cluster, gpu_model=gpu_model if device == "cuda" else ""
    )


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
