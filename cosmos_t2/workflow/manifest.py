"""The sweep's manifest: where each job's files live in a run folder, for the report to find them.

The workflow's rules and the manifest use the same path patterns (`PATHS`), so the report never has to
guess a key: every job lists its spec, prompt embeddings, controls, masks, latents, sidecar and video,
and the benchmark file of each rule it went through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cosmos_t2.atomic import write_json_atomic
from cosmos_t2.errors import CosmosError
from cosmos_t2.workflow.sweep import Job, Sweep

# Where each product lives under a run folder (`<results>/<hardware label>`); the rules and the
# manifest the report reads both use these patterns.
PATHS = {
    "spec": "specs/{stage}/{key}.json",
    "decoded": "decode/{key}/input.mkv",
    "controls": "controls/{key}",
    "masks": "masks/{key}",
    "prompt": "prompts/{key}.safetensors",
    "latents": "diffuse/{job}/{name}.latents.safetensors",
    "diffuse_sidecar": "diffuse/{job}/{name}.json",
    "video": "videos/{job}/{name}.mp4",
    "video_sidecar": "videos/{job}/{name}.json",  # render publishes it after the mp4: the completion record
    "bench": "bench/{preset}.json",
    "manifest": "manifest.json",
}


# Every rule of a job logs to logs/<rule>/<its benchmark key>.log (the rules' `log:` lines); a failed
# job's log is where its one-line error is.
LOG = "logs/{rule}/{key}.log"
# What a reader needs of each job (a manifest from another version or a hand is checked against it).
JOB_FIELDS: dict[str, type] = {"key": str, "name": str, "spec_file": str, "paths": dict}
JOB_PATHS = ("spec", "prompt", "latents", "diffuse_sidecar", "video")


def job_paths(job: Job) -> dict[str, str]:
    """A job's files relative to the run folder: what its diffusion rule reads and what it makes. The rules
    (`diffuse_inputs`) and the manifest both take them from here, so they cannot disagree."""
    paths = {
        "spec": PATHS["spec"].format(stage="job", key=job.key),
        "prompt": PATHS["prompt"].format(key=job.prompt),
        "latents": PATHS["latents"].format(job=job.key, name=job.name),
        "diffuse_sidecar": PATHS["diffuse_sidecar"].format(job=job.key, name=job.name),
        "video": PATHS["video"].format(job=job.key, name=job.name),
    }
    if job.controls:
        paths["controls"] = PATHS["controls"].format(key=job.controls)
    if job.masks:
        paths["masks"] = PATHS["masks"].format(key=job.masks)
    if job.decode:
        paths["decoded"] = PATHS["decoded"].format(key=job.decode)
    return paths


def manifest(sweep: Sweep, hardware: Mapping[str, Any], bench: Iterable[str] = ()) -> dict[str, Any]:
    """What the report needs to find every job's files, relative to the run folder."""
    jobs = []
    order = sorted(
        sweep.jobs.values(),
        key=lambda j: (j.spec_file, j.name, json.dumps(j.settings, sort_keys=True), j.key),
    )
    for job in order:
        paths = job_paths(job)
        # benchmark files are benchmarks/<rule>/<this>.tsv
        rules = {
            "spec": f"job-{job.key}",
            "decode": job.decode,
            "controls": job.controls,
            "masks": job.masks,
            "prompt": job.prompt,
            "diffuse": f"{job.key}/{job.name}",
            "encode": f"{job.key}/{job.name}",
        }
        jobs.append(
            {
                "key": job.key,
                "name": job.name,
                "spec_file": job.spec_file,
                "settings": job.settings,
                "overrides": job.overrides,
                "modalities": job.modalities,
                "paths": paths,
                "benchmarks": {rule: key for rule, key in rules.items() if key},
                "logs": {rule: LOG.format(rule=rule, key=key) for rule, key in rules.items() if key},
            }
        )
    bench_paths = [PATHS["bench"].format(preset=p) for p in bench]
    return {"version": 1, "hardware": dict(hardware), "jobs": jobs, "bench": bench_paths}


def write_manifest(path: str | Path, data: Mapping[str, Any]) -> None:
    write_json_atomic(path, data, sort_keys=True, default=str)


def _relative(value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(value)
        and not Path(value).is_absolute()
        and ".." not in Path(value).parts
    )


def check_manifest(data: Any, where: str | Path) -> dict[str, Any]:
    """`data` if it is a manifest a reader can use: every job with its key, name, spec file and the
    paths of its files (relative, inside the run folder); else one CosmosError naming the field."""
    if not isinstance(data, dict):
        raise CosmosError("expected a JSON object (a sweep manifest)", file=where)
    if not isinstance(data.get("hardware", {}), dict):
        raise CosmosError("expected an object", file=where, key="hardware")
    jobs = data.get("jobs")
    if not isinstance(jobs, list):
        raise CosmosError("expected a list of jobs", file=where, key="jobs")
    for i, job in enumerate(jobs):
        key = f"jobs[{i}]"
        if not isinstance(job, dict):
            raise CosmosError("expected an object", file=where, key=key)
        for name, kind in JOB_FIELDS.items():
            if not isinstance(job.get(name), kind):
                raise CosmosError(f"missing or not {kind.__name__}", file=where, key=f"{key}.{name}")
        for name in ("settings", "benchmarks", "logs"):
            if not isinstance(job.get(name, {}), dict):
                raise CosmosError("expected an object", file=where, key=f"{key}.{name}")
        if not isinstance(job.get("modalities", []), list):
            raise CosmosError("expected a list", file=where, key=f"{key}.modalities")
        paths = job["paths"]
        for name in JOB_PATHS:
            if name not in paths:
                raise CosmosError("missing", file=where, key=f"{key}.paths.{name}")
        for section in ("paths", "benchmarks", "logs"):
            for name, value in job.get(section, {}).items():
                if not _relative(value):
                    raise CosmosError(
                        f"expected a path inside the run folder, got {value!r}",
                        file=where,
                        key=f"{key}.{section}.{name}",
                    )
    bench = data.get("bench", [])
    if not isinstance(bench, list) or not all(_relative(b) for b in bench):
        raise CosmosError("expected a list of paths inside the run folder", file=where, key="bench")
    return data
