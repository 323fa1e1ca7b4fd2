"""Reading spec files into validated Specs: one sample, a JSONL of many, a batch, `--set` overrides applied;
and writing a job spec back (the workflow's `specs/` files)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cosmos_t2.atomic import write_json_atomic
from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.fields import Source
from cosmos_t2.jobspec.job import Spec, validate_sample
from cosmos_t2.jobspec.parse import (
    RawSample,
    apply_overrides,
    flatten_overrides,
    read_spec_file,
    read_spec_samples,
)


def _sample_spec(
    raw: RawSample, path: Path, flat_overrides: dict[str, Any], overrides_dir: Path | None = None
) -> Spec:
    overridden = frozenset(flat_overrides)
    data = apply_overrides(raw.data, flat_overrides, raw.where)
    src = Source(where=raw.where, base_dir=path.resolve().parent, overridden=overridden,
                 overrides_dir=overrides_dir)  # fmt: skip
    default_name = path.stem if raw.line is None else f"{path.stem}_{raw.line}"
    return validate_sample(data, src, default_name)


def _load_located(
    path: Path, flat: dict[str, Any], overrides_dir: Path | None = None
) -> list[tuple[Spec, RawSample]]:
    """Specs of one file with the raw sample each came from; names must be unique within the file."""
    located: list[tuple[Spec, RawSample]] = []
    seen: dict[str, str] = {}
    for raw in read_spec_file(path):
        spec = _sample_spec(raw, path, flat, overrides_dir)
        if spec.name in seen:
            raise CosmosError(
                f"duplicate name {spec.name!r} (first at {seen[spec.name]})", file=raw.where, key="name"
            )
        seen[spec.name] = raw.where
        located.append((spec, raw))
    return located


def load_specs_each(
    path: str | Path, overrides: dict[str, Any] | None = None, *, overrides_dir: Path | None = None
) -> list[Spec | CosmosError]:
    """Every sample of a spec file, each a Spec or the error of its line alone (for a batch: a JSONL with
    one bad line runs the others). A file that cannot be read at all still raises. `overrides_dir`: where
    relative paths in `overrides` resolve (None: the working folder)."""
    path = Path(path)
    flat = flatten_overrides(overrides or {})
    out: list[Spec | CosmosError] = []
    seen: dict[str, str] = {}
    for raw in read_spec_samples(path):
        if isinstance(raw, CosmosError):
            out.append(raw)
            continue
        try:
            spec = _sample_spec(raw, path, flat, overrides_dir)
            if spec.name in seen:
                raise CosmosError(
                    f"duplicate name {spec.name!r} (first at {seen[spec.name]})", file=raw.where, key="name"
                )
        except CosmosError as exc:
            out.append(exc)
            continue
        seen[spec.name] = raw.where
        out.append(spec)
    return out


def load_samples(path: str | Path) -> list[tuple[Spec, RawSample]]:
    """Each sample of a spec file with its raw form, for callers that resolve one sample under many
    overrides (`resolve_sample`) without re-reading and re-validating the whole file each time."""
    return _load_located(Path(path), {})


def resolve_sample(raw: RawSample, path: str | Path, overrides: dict[str, Any]) -> Spec:
    """One sample of `path` with `overrides` (dotted key paths) applied and validated."""
    return _sample_spec(raw, Path(path), flatten_overrides(overrides))


def _pick(specs: list[Spec], name: str | None, where: str) -> list[Spec]:
    if name is None:
        return specs
    picked = [s for s in specs if s.name == name]
    if not picked:
        names = ", ".join(repr(s.name) for s in specs)
        raise CosmosError(
            f"no sample named {name!r} (--name); the samples are {names}", file=where, key="name"
        )
    return picked


def load_specs(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    overrides_dir: Path | None = None,
) -> list[Spec]:
    """Load a .json/.jsonc (one sample) or .jsonl (one per line) spec, or a job spec, into Specs.

    `overrides` maps dotted key paths to values (`{"depth.control_weight": 0.5, "seed": 7}`; nested
    dicts are flattened the same way) and wins over the file; its relative paths resolve in `overrides_dir`
    (None: the working folder). `name` keeps only that sample.
    Every problem is a CosmosError naming the file (and line) and the key path.
    """
    path = Path(path)
    specs = [spec for spec, _ in _load_located(path, flatten_overrides(overrides or {}), overrides_dir)]
    return _pick(specs, name, str(path))


def load_job(
    path: str | Path,
    *,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    overrides_dir: Path | None = None,
) -> Spec:
    """The one sample a command works on: a job spec, a one-sample spec, or `--name` of a JSONL."""
    specs = load_specs(path, overrides, name=name, overrides_dir=overrides_dir)
    if len(specs) != 1:
        names = ", ".join(repr(s.name) for s in specs)
        raise CosmosError(f"{len(specs)} samples here ({names}); pick one with --name", file=path)
    return specs[0]


def load_batch(
    paths: Iterable[str | Path], overrides: dict[str, Any] | None = None, *, name: str | None = None
) -> list[Spec]:
    """Load several spec files as one batch: sample names must be unique across all of them."""
    paths = [Path(p) for p in paths]
    flat = flatten_overrides(overrides or {})
    specs: list[Spec] = []
    first_at: dict[str, str] = {}
    for path in paths:
        for spec, raw in _load_located(path, flat):
            if spec.name in first_at:
                raise CosmosError(
                    f"duplicate name {spec.name!r} in the batch (first at {first_at[spec.name]})",
                    file=raw.where,
                    key="name",
                )
            first_at[spec.name] = raw.where
            specs.append(spec)
    return _pick(specs, name, ", ".join(str(p) for p in paths))


def write_job_spec(spec: Spec, path: str | Path) -> Path:
    """Write one resolved Spec as a job spec JSON, atomically (temp file in the same folder + rename)."""
    return write_json_atomic(path, spec.to_dict())
