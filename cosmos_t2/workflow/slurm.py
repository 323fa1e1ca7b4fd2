"""Pre-flight for SLURM: a rule whose request no node of its partition can meet is refused before anything
is submitted, in one line naming the rule and the resource, instead of pending forever (`PD
(PartitionConfig)` or `Resources`, with no word from the executor plugin).

What the nodes have comes from `sinfo` (CPUs, memory in MB, GRES such as `gpu:h100:4(S:0-1)`); a request
is what the plugin would pass to `sbatch`: `mem_mb`, `cpus_per_task`, `gpu` with `gpu_model`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cosmos_t2.errors import CosmosError


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: dict[str, int] = field(default_factory=dict)  # GPU type ("" when untyped) -> count


def parse_gres(gres: str) -> dict[str, int]:
    """`gpu:h100:4(S:0-1),gpu:a100:2` -> {"h100": 4, "a100": 2}; `gpu:2` -> {"": 2}; `(null)` -> {}."""
    gpus: dict[str, int] = {}
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        parts = item.strip().split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        kind, count = (parts[1], parts[2]) if len(parts) > 2 else ("", parts[1])
        if count.isdigit():
            gpus[kind] = gpus.get(kind, 0) + int(count)
    return gpus


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from `sinfo -h -N -o '%N|%c|%m|%G'` (one line per node and partition)."""
    nodes = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4 or not fields[1].isdigit():
            continue
        name, cpus, mem, gres = fields
        nodes[name] = Node(
            name, int(cpus), int(mem.rstrip("+")) if mem.rstrip("+").isdigit() else 0, parse_gres(gres)
        )
    return list(nodes.values())


def partition_nodes(partition: str) -> list[Node]:
    """The nodes of a partition, from sinfo; CosmosError when sinfo cannot say."""
    cmd = ["sinfo", "-h", "-N", "-p", partition, "-o", "%N|%c|%m|%G"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CosmosError(f"SLURM pre-flight: cannot run sinfo: {exc}") from None
    if proc.returncode != 0:
        raise CosmosError(f"SLURM pre-flight: sinfo failed: {proc.stderr.strip() or proc.returncode}")
    return parse_sinfo(proc.stdout)


def unmet(rule: str, request: Mapping[str, Any], partition: str, nodes: Iterable[Node]) -> str | None:
    """The line that refuses `rule`'s request when no node of `partition` meets all of it, else None."""
    nodes = list(nodes)
    if not nodes:
        return f"rule {rule}: partition '{partition}' has no nodes (sinfo -p {partition})"
    mem = _int(request.get("mem_mb"))
    cpus = _int(request.get("cpus_per_task"))
    gpus = _int(request.get("gpu"))
    model = str(request.get("gpu_model") or "") if gpus else ""

    def gpu_count(node: Node) -> int:
        return node.gpus.get(model, 0) if model else sum(node.gpus.values())

    checks = [
        ("mem_mb", mem, lambda n: n.mem_mb, "MB of memory"),
        ("cpus_per_task", cpus, lambda n: n.cpus, "CPUs"),
        (f"gpu={gpus}" + (f" of gpu_model {model}" if model else ""), gpus, gpu_count, "such GPUs"),
    ]
    for name, wanted, has, unit in checks:
        if wanted and not any(has(n) >= wanted for n in nodes):
            best = max(has(n) for n in nodes)
            asked = name if name.startswith("gpu=") else f"{name}={wanted}"
            return f"rule {rule} asks for {asked}, but no node of partition '{partition}' has more than {best} {unit} (sinfo)"
    fits = [n for n in nodes if all(not w or h(n) >= w for _, w, h, _ in checks)]
    if not fits:
        return f"rule {rule}: no single node of partition '{partition}' has mem_mb={mem}, cpus_per_task={cpus} and {gpus} GPUs together (sinfo)"
    return None


def _int(value: Any) -> int:
    value = getattr(value, "raw", value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def preflight(requests: Iterable[tuple[str, Mapping[str, Any]]]) -> str | None:
    """The first refusal among (rule, resources) requests, each checked against the nodes of its
    `slurm_partition` (sinfo, asked once a partition); None when every request fits some node."""
    nodes: dict[str, list[Node]] = {}
    seen = set()
    for rule, resources in requests:
        request = {
            k: resources.get(k) for k in ("slurm_partition", "mem_mb", "cpus_per_task", "gpu", "gpu_model")
        }
        key = (rule, *map(str, request.values()))
        if key in seen:
            continue
        seen.add(key)
        partition = str(request["slurm_partition"] or "")
        if not partition:  # the site's default partition: SLURM picks it and checks the request itself
            continue
        if partition not in nodes:
            nodes[partition] = partition_nodes(partition)
        refusal = unmet(rule, request, partition, nodes[partition])
        if refusal:
            return refusal
    return None
