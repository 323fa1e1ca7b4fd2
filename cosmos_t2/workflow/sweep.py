"""Plan a sweep for the Snakemake workflow: specs × grid → jobs, each with the content key of every stage
it reads (`cosmos_t2.workflow.keys`), and one representative job spec per shared stage.

Jobs that agree on what a stage reads share that stage's file, so a sweep over control weights re-runs
only diffusion and rendering. Everything here is a pure function of the config and the files it names, so
the DAG is the same on every machine that sees the same files.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snakemake.io import contains_wildcard

from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.jobspec.load import load_samples, resolve_sample
from cosmos_t2.workflow.keys import (
    DECODE_FIELDS,
    PROMPT_FIELDS,
    FileHasher,
    ModelSettings,
    job_keys,
    modalities_of,
    stable_hash,
)

# ModelSettings, job_keys and stable_hash live in keys; tests/controls/test_modality_registry.py imports them from here.
__all__ = [
    "Job",
    "ModelSettings",
    "StageSpec",
    "Sweep",
    "check_wildcard_name",
    "expand_spec_entries",
    "format_set_args",
    "grid_points",
    "job_keys",
    "name_constraint",
    "plan_sweep",
    "point_overrides",
    "stable_hash",
]

STAGES = ("job", "decode", "controls", "masks", "prompt")
# Grid dimensions that set one top-level sample key each.
SCALAR_GRID_KEYS = ("seed", "guidance", "num_steps")


def expand_spec_entries(entries: Iterable[str], root: Path) -> list[Path]:
    """Spec paths and globs from the config, relative to `root`, in order and without repeats."""
    found: list[Path] = []
    for entry in entries:
        pattern = entry if os.path.isabs(entry) else str(root / entry)
        matches = sorted(glob.glob(pattern)) if glob.has_magic(entry) else [pattern]
        if not matches:
            raise CosmosError(f"no spec file matches '{entry}'", key="specs")
        for match in matches:
            path = Path(match)
            if not path.is_file():
                raise CosmosError("spec file not found", file=path, key="specs")
            if path not in found:
                found.append(path)
    return found


def grid_points(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of the grid's axes; an absent or empty axis keeps the spec's value."""
    axes: list[tuple[str, list[Any]]] = []
    for key in ("control_weight", *SCALAR_GRID_KEYS, "preset"):
        values = grid.get(key) or []
        if values:
            axes.append((key, list(values)))
    for dotted, values in sorted((grid.get("set") or {}).items()):
        if values:
            axes.append((f"set:{dotted}", list(values)))
    names = [name for name, _ in axes]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))]


def point_overrides(data: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted-key overrides that apply one grid point to one sample.

    `control_weight` sets the weight of every control the sample has, `preset` every preset key of its
    controls (the edge threshold and blur strength presets), and a `set` key inside a control block
    (``depth.control_weight``) only reaches samples that have that control.
    """
    present = modalities_of(data)
    out: dict[str, Any] = {}
    for key, value in point.items():
        if key == "control_weight":
            out.update({f"{m}.control_weight": value for m in present})
        elif key == "preset":
            out.update(
                {f"{m}.{k.name}": value for m in present for k in MODALITIES[m].spec_keys if k.is_preset}
            )
        elif key in SCALAR_GRID_KEYS:
            out[key] = value
        elif key.startswith("set:"):
            dotted = key.removeprefix("set:")
            head, dot, _ = dotted.partition(".")
            if dot and head in MODALITIES and head not in present:
                continue  # a key of a control the sample does not have would add that control
            out[dotted] = value
    return out


def format_set_args(overrides: Mapping[str, Any]) -> list[str]:
    """`--set key=value` arguments for `cosmos-t2 validate`; values as JSON so "7" stays a string."""
    args: list[str] = []
    for key in sorted(overrides):
        args += ["--set", f"{key}={json.dumps(overrides[key])}"]
    return args


def _stage_of_override(dotted: str) -> set[str]:
    """Which stage specs must carry an override: everything reaches the job; a few keys reach more."""
    stages = {"job"}
    head, _, leaf = dotted.partition(".")
    if dotted in (*DECODE_FIELDS, "video_path"):
        stages |= {"decode", "controls", "masks"}
    if dotted in PROMPT_FIELDS:
        stages |= {"prompt", "controls"}  # a text key (seg's control_prompt) may default to the prompt
    if head in MODALITIES and (leaf == "control_path" or leaf in MODALITIES[head].key_names):
        stages.add("controls")
    if head in MODALITIES and leaf in ("mask_path", "mask_prompt"):
        stages.add("masks")
    if head in MODALITIES and not leaf:
        stages |= {"controls", "masks"}  # a whole control block replaced
    return stages


@dataclass(frozen=True)
class StageSpec:
    """What `cosmos-t2 validate` needs to write one stage's spec: a sample and the overrides it reads."""

    spec_file: str
    name: str
    overrides: dict[str, Any]

    def sort_key(self) -> tuple[str, str, str]:
        return (self.spec_file, self.name, json.dumps(self.overrides, sort_keys=True, default=str))

    def validate_args(self) -> list[str]:
        return ["--name", self.name, *format_set_args(self.overrides)]


@dataclass(frozen=True)
class Job:
    """One diffusion job: a sample, a grid point, and the key of every stage it reads."""

    key: str
    name: str
    spec_file: str
    settings: dict[str, Any]  # the grid point, for the report
    overrides: dict[str, Any]
    modalities: list[str]
    decode: str | None
    controls: str | None
    masks: str | None
    prompt: str
    spec: Spec | None = field(default=None, compare=False, repr=False)  # resolved: what its resources follow


READ_STAGES = ("decode", "controls", "masks", "prompt")  # the shared stages a job reads, by Job attribute


@dataclass
class Sweep:
    jobs: dict[str, Job] = field(default_factory=dict)
    stage_specs: dict[tuple[str, str], StageSpec] = field(default_factory=dict)
    decode_of: dict[str, str] = field(default_factory=dict)  # controls/masks key -> its decode key
    _readers: dict[tuple[str, str | None], Job] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # len(jobs) when _readers was built
    _readers_of_jobs: int = field(default=-1, init=False, repr=False, compare=False)

    def keys(self, stage: str) -> list[str]:
        return sorted({key for st, key in self.stage_specs if st == stage})

    def job_of(self, stage: str, key: str) -> Job:
        """The first job that reads the output of `stage`'s `key` (decode, controls, masks, prompt): what
        its input's shape is. Snakemake asks it for every such job while it builds the DAG, so the readers
        are indexed once per set of jobs rather than scanned per call."""
        if self._readers_of_jobs != len(self.jobs):  # jobs are only added, while the sweep is planned
            self._readers = {}
            for job in self.jobs.values():
                for st in READ_STAGES:
                    self._readers.setdefault((st, getattr(job, st)), job)
            self._readers_of_jobs = len(self.jobs)
        try:
            return self._readers[(stage, key)]
        except KeyError:
            raise KeyError(f"no job of this sweep reads {stage} {key}") from None

    def stage_spec(self, stage: str, key: str) -> StageSpec:
        try:
            return self.stage_specs[(stage, key)]
        except KeyError as exc:
            raise CosmosError(f"no {stage} spec with key {key} in this sweep") from exc

    def _offer(self, stage: str, key: str, spec: StageSpec) -> None:
        # The first sample in sorted order represents a shared stage, so the choice does not
        # depend on grid order and a changed grid value leaves other stages' specs untouched.
        held = self.stage_specs.get((stage, key))
        if held is None or spec.sort_key() < held.sort_key():
            self.stage_specs[(stage, key)] = spec


# against rules that pump a wildcard forever: `snakemake.io.PeriodicityDetector`), and a sample name is
# the {name} wildcard of the diffusion and encode rules.
_PERIODIC = re.compile(r"(.+?)\1{19,}$", re.DOTALL)


def check_wildcard_name(name: str, where: str) -> None:
    """Refuse, when the sweep is planned and with the sample that has it, the two kinds of name Snakemake
    cannot take in a path: one holding a `{word}` (a wildcard to it, in static and function inputs alike),
    and one its periodic-wildcard check would stop the whole DAG on (e.g. "run_" + 20 zeros)."""
    if contains_wildcard(name):
        raise CosmosError(
            f"{name!r} holds a {{word}}, which Snakemake reads as a wildcard in every path and has no escape "
            "for; use other brackets",
            file=where,
            key="name",
        )
    found = _PERIODIC.search(name)
    if found:
        raise CosmosError(
            f"{name!r} ends in {found[1]!r} repeated {len(found[0]) // len(found[1])} times, which Snakemake "
            "takes for a runaway wildcard and stops the whole sweep on; shorten the repetition (under 20)",
            file=where,
            key="name",
        )


def name_constraint(names: Iterable[str]) -> str:
    """The regex of the {name} wildcard: exactly the sweep's sample names, so a name with dots, dashes or
    digits (`run.v2`, `a_1`), or one that is a prefix of another (`a`, `a_1`, `a_1_edge`), only ever matches
    itself. Longest first, escaped; braces as \\x7b / \\x7d, since Snakemake reads a literal brace in a
    constraint as the end of the wildcard (a brace that is not a {word} can be in a name)."""
    alternatives = sorted(set(names), key=lambda n: (-len(n), n))
    escaped = (re.escape(n).replace("\\{", r"\x7b").replace("\\}", r"\x7d") for n in alternatives)
    return "|".join(escaped)


def plan_sweep(config: Mapping[str, Any], root: Path, hasher: Callable[[Path], str] | None = None) -> Sweep:
    """Every job of the config's sweep and one representative spec per stage key.

    Samples are validated by `cosmos_t2.jobspec.job` (the same code `cosmos-t2 validate` runs), so a bad spec
    fails when the DAG is built, and keys see the resolved values (defaults filled, paths absolute).
    """
    hasher = hasher or FileHasher()
    model = ModelSettings.from_config(config)
    points = grid_points(config.get("grid") or {})
    wanted = set(config.get("samples") or [])
    sweep = Sweep()
    for spec_path in expand_spec_entries(config.get("specs") or [], root):
        spec_file = os.path.relpath(spec_path, root)
        for base, raw in load_samples(spec_path):  # the file is read and validated once
            if wanted and base.name not in wanted:
                continue
            check_wildcard_name(base.name, raw.where)
            base_data = base.to_dict()
            for point in points:
                overrides = point_overrides(base_data, point)
                resolved = resolve_sample(raw, spec_path, overrides) if overrides else base
                keys = job_keys(resolved.to_dict(), model, hasher)
                job_key = str(keys["job"])
                if job_key in sweep.jobs:
                    continue  # e.g. a preset axis on a sample without edge or vis
                sweep.jobs[job_key] = Job(
                    key=job_key,
                    name=base.name,
                    spec_file=spec_file,
                    settings=dict(point),
                    overrides=overrides,
                    modalities=list(resolved.controls),
                    decode=keys["decode"] if keys["controls"] or keys["masks"] else None,
                    controls=keys["controls"],
                    masks=keys["masks"],
                    prompt=str(keys["prompt"]),
                    spec=resolved,
                )
                for stage in ("controls", "masks"):
                    if keys[stage]:
                        sweep.decode_of[str(keys[stage])] = str(keys["decode"])
                for stage in STAGES:
                    key = keys[stage]
                    if key is None or (stage == "decode" and not (keys["controls"] or keys["masks"])):
                        continue  # only computed controls and masks read the decoded input
                    kept = {k: v for k, v in overrides.items() if stage in _stage_of_override(k)}
                    sweep._offer(stage, key, StageSpec(spec_file, base.name, kept))
    if not sweep.jobs:
        raise CosmosError("the sweep has no jobs: check 'specs' and 'samples'", key="specs")
    if isinstance(hasher, FileHasher):
        hasher.save()
    return sweep
