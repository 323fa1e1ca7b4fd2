"""`cosmos-t2 reproduce SIDECAR`: rerun a finished job from its record alone and say whether the bytes repeat.

The sidecar holds all a rerun needs (the resolved spec with its seed, `run`: device, model folder, inputs given,
latents-only, deterministic mode) and all it is checked against (`identity`: sha256 of latents, mp4 and decoded
YUV planes; `environment`; `provenance.checkpoint_sha256`). Before anything runs, the model files are hashed
again: a replaced checkpoint is named even though the rerun goes ahead. The verdict:
- identical: every recorded identity matches (exit 0);
- different, and a recorded field differs too (model file, library version, CPU flags, GPU, ...): named, exit 3;
- different with nothing recorded differing: a reproducibility failure of ours, exit 1.
Where both sides are at hand, the size of a difference: latents' largest absolute difference (the original
latents file of a latents-only job) and the lowest frame PSNR between the two mp4s.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosmos_t2.errors import CosmosError
from cosmos_t2.job.record import LATENTS_SUFFIX, load_latents, read_json
from cosmos_t2.job.run import RunOptions, run_job
from cosmos_t2.job.sidecar import JobRecord
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.runtime.acceleration import resolve_acceleration
from cosmos_t2.video import read_video
from cosmos_t2.weights.hashes import checkpoint_hashes
from cosmos_t2.weights.locate import locate_models

IDENTICAL, DIFFERENT_UNEXPLAINED, DIFFERENT_EXPLAINED = 0, 1, 3
IDENTITY_KEYS = ("latents_sha256", "video_sha256", "yuv_sha256")
NOT_COMPARED = {"threads"}  # the CPU pins make the thread count irrelevant to the bytes


@dataclass
class Reproduction:
    """What a rerun gave against its record."""

    sidecar: Path
    rerun_sidecar: Path
    identities: dict[str, tuple[str, str]]  # key -> (recorded, rerun), for keys both have
    environment_diffs: list[tuple[str, Any, Any]] = field(default_factory=list)  # (field, recorded, now)
    model_diffs: list[tuple[str, Any, Any]] = field(default_factory=list)  # (slot, recorded, now)
    latents_max_abs: float | None = None
    min_frame_psnr_db: float | None = None

    @property
    def identical(self) -> bool:
        return bool(self.identities) and all(a == b for a, b in self.identities.values())

    @property
    def exit_code(self) -> int:
        if self.identical:
            return IDENTICAL
        return DIFFERENT_EXPLAINED if (self.environment_diffs or self.model_diffs) else DIFFERENT_UNEXPLAINED

    def lines(self) -> list[str]:
        if self.identical:
            names = ", ".join(k.removesuffix("_sha256") for k in self.identities)
            return [f"identical: {names} match the record ({self.sidecar})"]
        differing = [k.removesuffix("_sha256") for k, (a, b) in self.identities.items() if a != b]
        out = [f"different: {', '.join(differing)} differ from the record ({self.sidecar})"]
        if self.latents_max_abs is not None:
            out.append(f"  latents: largest absolute difference {self.latents_max_abs:.3g}")
        if self.min_frame_psnr_db is not None:
            out.append(f"  video: lowest frame PSNR {self.min_frame_psnr_db:.2f} dB")
        for slot, was, now in self.model_diffs:
            out.append(f"  model file {slot}: sha256 {_short(was)} recorded, {_short(now)} now")
        for name, was, now in self.environment_diffs:
            out.append(f"  environment {name}: {was!r} recorded, {now!r} now")
        if self.exit_code == DIFFERENT_UNEXPLAINED:
            out.append("  nothing recorded differs: the same environment gave other bytes (please report it)")
        out.append(f"  rerun: {self.rerun_sidecar}")
        return out


def reproduce(sidecar: Path, out_dir: Path | None = None, *, progress: bool | str = False) -> Reproduction:
    """Rerun the job `sidecar` records into `out_dir` (default: a new temporary folder) and compare."""
    sidecar = Path(sidecar)
    record = _read_record(sidecar)
    spec_data, run, identity = record.spec, record.run, record.identity
    if not (isinstance(spec_data, dict) and isinstance(run, dict) and isinstance(identity, dict)):
        named = (("spec", spec_data), ("run", run), ("identity", identity))
        missing = [key for key, value in named if not isinstance(value, dict)]
        raise CosmosError(
            f"this sidecar has no {', '.join(missing)} record (written by an older cosmos-t2 or by render): "
            "rerun the job with this version to record one",
            file=sidecar,
        )
    spec = _recorded_spec(spec_data, sidecar)
    model_dir = Path(run["model_dir"]) if run.get("model_dir") else None
    model_diffs = _model_diffs(record, spec, run, model_dir)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="cosmos-t2-reproduce-"))
    device = str(run.get("device") or "cpu")
    options = RunOptions(
        out_dir=out,
        device=device,
        tiny=bool(run.get("tiny")),
        model_dir=model_dir,
        controls_dir=_path(run.get("controls_dir")),
        masks_dir=_path(run.get("masks_dir")),
        prompt_embeddings=_path(run.get("prompt_embeddings")),
        latents_only=bool(run.get("latents_only")),
        prefer_distilled=bool(record.distilled),  # the checkpoint that ran, where DIR has both
        progress=progress,
        offload=str(run.get("offload") or "auto"),
        acceleration=resolve_acceleration(
            device,
            attn_backend=str(run.get("attn_backend") or "auto"),
            deterministic=run.get("deterministic"),
        ),
    )
    result = run_job(spec, options)
    assert result.sidecar is not None  # one process: rank 0
    rerun = _read_record(result.sidecar)
    recorded, now = identity, rerun.identity or {}
    found = Reproduction(
        sidecar=sidecar,
        rerun_sidecar=result.sidecar,
        identities={k: (recorded[k], now[k]) for k in IDENTITY_KEYS if k in recorded and k in now},
        model_diffs=model_diffs,
    )
    if not found.identical:
        found.environment_diffs = _environment_diffs(record.environment, rerun.environment)
        found.latents_max_abs = _latents_difference(record, sidecar, result.latents)
        found.min_frame_psnr_db = _psnr_difference(record, sidecar, result.video)
    return found


def _read_record(sidecar: Path) -> JobRecord:
    data = read_json(sidecar)
    if not isinstance(data, dict):
        raise CosmosError("not a JSON sidecar: not a JSON object", file=sidecar)
    return JobRecord.from_json(data)  # version 1 (no schema_version) as well


def _recorded_spec(data: dict[str, Any], sidecar: Path) -> Spec:
    with tempfile.TemporaryDirectory(prefix="cosmos-t2-spec-") as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(data))
        try:
            return load_job(path)
        except CosmosError as exc:
            raise CosmosError(f"the recorded spec no longer loads: {exc}", file=sidecar) from exc


def _path(value: Any) -> Path | None:
    return Path(value) if value else None


def _model_diffs(
    record: JobRecord, spec: Spec, run: dict[str, Any], model_dir: Path | None
) -> list[tuple[str, Any, Any]]:
    """Checkpoints whose sha256 now differs from the record's (a replaced or changed model file)."""
    was = (record.provenance.checkpoint_sha256 if record.provenance is not None else None) or {}
    files = locate_models(
        model_dir,
        list(spec.controls),
        tiny=bool(run.get("tiny")),
        need_text_encoder=run.get("prompt_embeddings") is None,
        need_image_encoder=spec.image_context_path is not None or spec.context_frame_index is not None,
        prefer_distilled=bool(record.distilled),
    )
    now = checkpoint_hashes(files) or {}
    return [
        (slot, was.get(slot), now.get(slot))
        for slot in sorted(set(was) | set(now))
        if was.get(slot) != now.get(slot)
    ]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _environment_diffs(was: Any, now: Any) -> list[tuple[str, Any, Any]]:
    a, b = _flatten(was or {}), _flatten(now or {})
    return [
        (k, a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and k.split(".")[-1] not in NOT_COMPARED
    ]


def _latents_difference(record: JobRecord, sidecar: Path, rerun: Path | None) -> float | None:
    name = record.outputs.get("latents")
    original = sidecar.parent / name if name else Path(str(sidecar.with_suffix("")) + LATENTS_SUFFIX)
    if rerun is None or not original.is_file():
        return None
    (a, _), (b, _) = load_latents(original), load_latents(rerun)
    if [t.shape for t in a] != [t.shape for t in b]:
        return math.inf
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b, strict=True))


def _psnr_difference(record: JobRecord, sidecar: Path, rerun: Path | None) -> float | None:
    name = record.outputs.get("video")
    if rerun is None or not name or not (sidecar.parent / name).is_file():
        return None
    a, b = read_video(sidecar.parent / name).frames, read_video(rerun).frames
    if a.shape != b.shape:
        return 0.0
    return min(frame_psnr(x, y) for x, y in zip(a, b, strict=True))


def frame_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 frames (inf when equal)."""
    mse = float(np.mean((a.numpy().astype(np.float64) - b.numpy().astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _short(digest: Any) -> str:
    if isinstance(digest, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in digest.items()) + "}"
    return "none" if digest is None else str(digest)[:12]
