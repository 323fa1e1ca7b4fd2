"""A job's last phase: the outputs. The video guardrail, the sidecar record (with the checkpoint hashes,
the identities `cosmos-t2 reproduce` compares a rerun against, the files a batch checks before it skips
the job), and the files published together, the sidecar last (`atomic.OutputSet`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cosmos_t2.atomic import OutputSet, atomic_outputs
from cosmos_t2.job.generate import Generated, Generation
from cosmos_t2.job.guardrails import guard_panels
from cosmos_t2.job.identity import environment, latents_sha256, video_identity
from cosmos_t2.job.load import Loaded
from cosmos_t2.job.output import LatentPlan, write_outputs
from cosmos_t2.job.prepare import Prepared
from cosmos_t2.job.record import job_record, job_timings, write_json
from cosmos_t2.job.sidecar import AccelerationRecord, JobRecord, MemoryRecord
from cosmos_t2.runtime.build import TINY_LABEL
from cosmos_t2.weights.hashes import sha256_file

if TYPE_CHECKING:
    from cosmos_t2.job.run import RunOptions

FULL_LABEL = "Cosmos-Transfer2.5-2B"
DISTILLED_LABEL = "Cosmos-Transfer2.5-2B distilled edge (4-step)"


@dataclass(frozen=True)
class Published:
    """The sidecar and the final paths of what the job wrote ("video" or "latents")."""

    sidecar: Path
    paths: dict[str, Path]
    record: JobRecord


def publish(job: Prepared, loaded: Loaded, gen: Generation, made: Generated) -> Published:
    """Write the job's video (or latents) and its sidecar, published together; rank 0 only."""
    spec, inputs, opts, timer, device = (
        gen.settings.spec,
        loaded.inputs_read.inputs,
        job.options,
        job.timer,
        job.device,
    )
    label = TINY_LABEL if opts.tiny else (DISTILLED_LABEL if loaded.distilled else FULL_LABEL)
    plan = LatentPlan.of(spec, inputs, gen.chunks, label=label, tiny=opts.tiny)
    assert loaded.hashing is not None  # rank 0, the only one here, started it
    with timer.stage("provenance"):  # the hashes' wait: nothing once the steps outlasted them
        checkpoint_sha256 = loaded.hashing.result()
    record = job_record(
        spec, inputs, gen.chunks, job.files, label=label, tiny=opts.tiny, distilled=loaded.distilled,
        changed=gen.settings.changed, seeds=gen.seeds, device=device, dtype=job.dtype,
        world_size=1 if job.parallel is None else job.parallel.world_size, started=job.started,
        warnings=gen.warnings, checkpoint_sha256=checkpoint_sha256, command=opts.argv,
    )  # fmt: skip
    acceleration = AccelerationRecord.from_json(job.acceleration.record(device))
    assert acceleration is not None and record.device is not None  # from_json of a dict; job_record sets it
    record = replace(
        record,
        acceleration=acceleration,
        memory=MemoryRecord.from_json({**job.memory.record(), **loaded.residency.record()}),
    )
    if device.type == "cuda":  # the kernel that ran, not the auto default's
        record = replace(record, device=replace(record.device, attention=acceleration.attention_kernel))
    panels = made.panels
    if job.guard is not None and panels:
        with timer.stage("guardrail_video"):  # a blocked video is not written
            panels = guard_panels(job.guard, panels, gen.chunks, inputs.num_frames, inputs.size[1])
    record = replace(record, guardrails=None if job.guard is None else job.guard.record())
    sidecar = opts.out_dir / f"{spec.name}.json"
    with atomic_outputs() as outputs:  # published together, the sidecar last
        with timer.stage("write"):  # with the identities `cosmos-t2 reproduce` compares a rerun against
            paths = write_outputs(opts, spec, inputs, gen.chunks, plan, made.latents, panels, outputs)
            record = _with_identity(record, device, made.latents, paths, outputs)
        timings = job_timings(
            timer, spec.num_steps * len(gen.chunks), job.started,
            first_in_process=opts.first_in_process, step_intervals=made.intervals,
        )  # fmt: skip
        outputs_named = {k: p.name for k, p in paths.items() if p is not None}
        record = replace(record, run=run_record(opts), timings=timings, outputs=outputs_named)
        # the versioned record (docs/record.schema.json)
        write_json(outputs.stage(sidecar, record=True), record.to_json())
    return Published(sidecar, paths, record)


def _with_identity(
    record: JobRecord, device: torch.device, latents: list[torch.Tensor], paths: dict[str, Path],
    outputs: OutputSet,
) -> JobRecord:  # fmt: skip
    """The latents' and the video's identity, the environment, and each output file's size and sha256."""
    video = outputs.staged(paths["video"]) if "video" in paths else None
    identity = {
        "latents_sha256": latents_sha256(latents),
        **(video_identity(video) if video is not None else {}),
    }
    acceleration = None if record.acceleration is None else record.acceleration.to_json()
    video_sha256 = identity.get("video_sha256")
    return replace(
        record,
        identity=identity,
        environment=environment(device, acceleration, video),
        # what a batch checks before it skips the job as done (`batch.redo_reason`)
        output_files={
            final.name: output_file_record(
                outputs.staged(final), video_sha256 if final == paths.get("video") else None
            )
            for final in paths.values()
        },
    )


def output_file_record(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """A written file's size and sha256 (`sha256` when already computed: the video's identity)."""
    return {"bytes": path.stat().st_size, "sha256": sha256 or sha256_file(path)}


def run_record(options: RunOptions) -> dict[str, Any]:
    """How the job ran, as far as its bytes depend on it: with the resolved spec, all `reproduce` needs."""

    def path(p: Path | None) -> str | None:
        return None if p is None else str(Path(p).resolve())

    acc = options.acceleration
    return {
        "device": options.device,
        "tiny": options.tiny,
        "model_dir": path(options.model_dir),
        "controls_dir": path(options.controls_dir),
        "masks_dir": path(options.masks_dir),
        "prompt_embeddings": path(options.prompt_embeddings),
        "latents_only": options.latents_only,
        "offload": options.offload,
        "attn_backend": acc.attn_backend if acc is not None else "auto",
        "deterministic": acc.deterministic if acc is not None else None,
    }
