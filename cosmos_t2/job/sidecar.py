"""The job record: what a job's sidecar JSON holds, as one frozen, versioned dataclass.

`publish` writes it beside the job's outputs and `render` beside the video it decodes; the report, the
batch's skip check and `bench --e2e` read it by attribute. `JobRecord.from_json` reads every sidecar
cosmos-t2 wrote: those without `schema_version` (version 1: every one before the version was recorded)
and today's. Keys a part does not name are kept as they
were read (`extra`), so a sidecar of a newer cosmos-t2 round-trips. docs/record.schema.json is the same
record as a JSON Schema, for tools of one's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

SCHEMA_VERSION = 2  # 1: a sidecar without the field (cosmos-t2 before the record was versioned)
P = TypeVar("P", bound="_Part")


@dataclass(frozen=True)
class _Part:
    """A nested part of the record: named keys typed, the others kept in `extra` as read."""

    extra: dict[str, Any] = field(default_factory=dict)
    # Keys written even when None (a None there means something: no budget, no cache); others are left out.
    KEEP_NONE: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_json(cls: type[P], data: dict[str, Any] | None) -> P | None:
        if not isinstance(data, dict):
            return None
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def to_json(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "extra" and (getattr(self, f.name) is not None or f.name in self.KEEP_NONE)
        }
        return {**out, **self.extra}


@dataclass(frozen=True)
class DeviceRecord(_Part):
    """Where the job ran: device type, dtype, process count; the GPU's attention kernel or the CPU's threads."""

    type: str | None = None
    dtype: str | None = None
    processes: int | None = None
    name: str | None = None
    attention: str | None = None  # CUDA: the kernel that ran (fa4, cudnn, ...)
    threads: int | None = None  # CPU


@dataclass(frozen=True)
class MemoryRecord(_Part):
    """The memory plan (`runtime.memory_choice.Choice.record`) and what residency did."""

    KEEP_NONE: ClassVar[frozenset[str]] = frozenset({"budget_gib"})
    offload_requested: str | None = None
    plan: dict[str, Any] | None = None
    budget_gib: float | None = None
    budget_source: str | None = None
    estimate_gib: dict[str, float] | None = None
    estimate_peak_gib: float | None = None
    text_encoder_on_gpu: bool | None = None
    expandable_segments: bool | None = None
    model_loads: int | None = None
    block_fetches: int | None = None
    block_misses: int | None = None


@dataclass(frozen=True)
class AccelerationRecord(_Part):
    """How the network was run (`runtime.acceleration.Acceleration.record`)."""

    KEEP_NONE: ClassVar[frozenset[str]] = frozenset({"compile_mode", "compile_cache"})
    compile: bool | None = None
    compile_mode: str | None = None
    attention_backend: str | None = None
    attention_kernel: str | None = None
    inference_mode: bool | None = None
    cudnn_benchmark: bool | None = None
    compile_cache: str | None = None
    prefetch_inputs: bool | None = None
    deterministic: bool | None = None


@dataclass(frozen=True)
class ProvenanceRecord(_Part):
    """Where the bytes came from (`runtime.provenance.provenance`): commit, command line, host, time, hashes."""

    KEEP_NONE: ClassVar[frozenset[str]] = frozenset({"git", "checkpoint_sha256"})
    cosmos_t2: str | None = None
    git: dict[str, Any] | None = None
    command: list[str] | None = None
    host: str | None = None
    created_utc: str | None = None
    checkpoint_sha256: dict[str, Any] | None = None


# The timing keys sit at the sidecar's top level (the report and the workflow read them there).
_TIMING_KEYS = ("timings_s", "seconds_per_step", "peak_memory_gib", "total_s", "startup_s")


@dataclass(frozen=True)
class Timings:
    """What the job cost: seconds per stage, per step (all steps; after each chunk's first), total,
    the process's start and imports, and peak memory."""

    stages_s: dict[str, float] = field(default_factory=dict)  # the sidecar's `timings_s`
    seconds_per_step: float | None = None
    steady_seconds_per_step: float | None = None
    peak_memory_gib: dict[str, float] = field(default_factory=dict)
    total_s: float | None = None
    startup_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "timings_s": self.stages_s, "seconds_per_step": self.seconds_per_step,
            "peak_memory_gib": self.peak_memory_gib, "total_s": self.total_s, "startup_s": self.startup_s,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timings:
        def mapping(key: str) -> dict[str, float]:
            return _mapping(data.get(key))

        return cls(
            stages_s=mapping("timings_s"), seconds_per_step=data.get("seconds_per_step"),
            steady_seconds_per_step=data.get("steady_seconds_per_step"),
            peak_memory_gib=mapping("peak_memory_gib"), total_s=data.get("total_s"),
            startup_s=mapping("startup_s"),
        )  # fmt: skip


# Top-level keys of the sidecar, in the order they are written; the parts' keys are theirs.
_PLAIN_KEYS = (
    "name", "label", "tiny", "distilled", "spec", "changed_by_mode", "seed", "chunk_seeds", "num_frames",
    "fps", "model_size", "source_size", "chunks", "steps", "diffusion_steps_total", "sources", "models",
    "versions",
)  # fmt: skip
_PARTS = {
    "provenance": ProvenanceRecord, "device": DeviceRecord, "acceleration": AccelerationRecord,
    "memory": MemoryRecord,
}  # fmt: skip
_AFTER_PARTS = (
    "created_unix", "warnings", "guided_generation", "guardrails", "identity", "environment", "output_files",
    "run",
)  # fmt: skip


@dataclass(frozen=True)
class JobRecord:
    """One job's sidecar. Every field but `name` may be missing in a sidecar `render` wrote without the
    job's own (then it holds the name, the label, `outputs` and `render`) or in an older one."""

    name: str
    schema_version: int = SCHEMA_VERSION
    label: str | None = None
    tiny: bool | None = None
    distilled: bool | None = None
    spec: dict[str, Any] | None = None  # the effective spec, `Spec.to_dict()`
    changed_by_mode: dict[str, Any] = field(default_factory=dict)  # key -> value the spec gave
    seed: int | None = None
    chunk_seeds: list[int] | None = None
    num_frames: int | None = None
    fps: float | None = None
    model_size: list[int] | None = None
    source_size: list[int] | None = None
    chunks: list[dict[str, Any]] | None = None
    steps: int | None = None
    diffusion_steps_total: int | None = None
    sources: dict[str, Any] | None = None
    models: dict[str, Any] | None = None
    versions: dict[str, str] | None = None
    provenance: ProvenanceRecord | None = None
    device: DeviceRecord | None = None
    created_unix: int | None = None
    warnings: list[str] = field(default_factory=list)
    guided_generation: dict[str, Any] | None = None
    acceleration: AccelerationRecord | None = None
    memory: MemoryRecord | None = None
    guardrails: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None  # latents_sha256, video_sha256, ...: what `reproduce` compares
    environment: dict[str, Any] | None = None
    output_files: dict[str, dict[str, Any]] | None = None  # name -> bytes, sha256: a batch's skip check
    run: dict[str, Any] | None = None  # how it ran (`job.publish.run_record`)
    timings: Timings = field(default_factory=Timings)
    outputs: dict[str, str] = field(default_factory=dict)  # "video" / "latents" -> file name
    render: dict[str, Any] | None = None  # `render`'s run, on the sidecar beside the video it decoded
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not name, as read

    def to_json(self) -> dict[str, Any]:
        """The sidecar's JSON object (keys of missing fields left out, as older versions wrote them)."""
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for key in _PLAIN_KEYS:
            out[key] = getattr(self, key)
        for key, _ in _PARTS.items():
            part = getattr(self, key)
            out[key] = None if part is None else part.to_json()
        for key in _AFTER_PARTS:
            out[key] = getattr(self, key)
        out |= self.timings.to_json()
        out["outputs"] = self.outputs
        out["steady_seconds_per_step"] = self.timings.steady_seconds_per_step
        out["render"] = self.render
        present = {k: v for k, v in out.items() if v is not None or k in _NONE_MEANS}
        if self.spec is None:  # no job behind it (`render` without the job's sidecar): what it holds only
            present = {k: v for k, v in present.items() if v not in (None, {}, [])}
        return {**present, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        """Any sidecar cosmos-t2 wrote, versioned or not (see the module's docstring)."""
        known = {*_PLAIN_KEYS, *_PARTS, *_AFTER_PARTS, *_TIMING_KEYS, "schema_version", "outputs",
                 "steady_seconds_per_step", "render"}  # fmt: skip
        plain = {k: data[k] for k in (*_PLAIN_KEYS, *_AFTER_PARTS, "render") if k in data}
        plain.pop("name", None)
        plain["changed_by_mode"] = _mapping(data.get("changed_by_mode"))
        if plain.get("warnings") is None:
            plain.pop("warnings", None)
        return cls(
            name=str(data.get("name") or ""),
            schema_version=version if isinstance(version := data.get("schema_version"), int) else 1,
            **plain,
            **{key: part.from_json(data.get(key)) for key, part in _PARTS.items()},
            timings=Timings.from_json(data),
            outputs=_mapping(data.get("outputs")),
            extra={k: v for k, v in data.items() if k not in known},
        )


# Keys written even when None: a job with no style reference, guardrails off, no steady step (one step).
_NONE_MEANS = frozenset({
    "guided_generation", "guardrails", "seconds_per_step", "steady_seconds_per_step", "acceleration", "memory",
})  # fmt: skip


def _mapping(value: Any) -> dict[str, Any]:
    """A JSON object's copy; {} for anything else (a hand-edited or damaged sidecar is read, not refused)."""
    return dict(value) if isinstance(value, dict) else {}
