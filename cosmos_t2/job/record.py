"""Files a job writes besides the video: the JSON sidecar, the latents file, and the stage timer.

All writes are atomic (temp file in the same folder, then os.replace). The latents file is a
.safetensors with one tensor per chunk (`chunk_0`, ...) and one metadata entry, `cosmos_t2`, holding the
JSON that `render` needs (chunk plan, fps, sizes, tiny flag); one entry because safetensors stores its
metadata as a hash map, whose order (and so the file's bytes) is not fixed when there are several.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from cosmos_t2 import __version__
from cosmos_t2.atomic import write_bytes_atomic, write_json_atomic
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.chunking import Chunk
from cosmos_t2.job.guided import guided_record
from cosmos_t2.job.inputs import JobInputs
from cosmos_t2.job.latents_check import check_latents
from cosmos_t2.job.sidecar import DeviceRecord, JobRecord, ProvenanceRecord, Timings
from cosmos_t2.job.startup import startup_seconds
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.model.attention import attention_kernel
from cosmos_t2.runtime.provenance import library_versions, provenance
from cosmos_t2.weights.locate import ModelFiles

LATENTS_SUFFIX = ".latents.safetensors"
_META_KEY = "cosmos_t2"


def write_json(path: Path, data: dict[str, Any]) -> Path:
    return write_json_atomic(path, data)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CosmosError("sidecar not found", file=path) from exc
    except json.JSONDecodeError as exc:
        raise CosmosError(f"not a JSON sidecar: {exc}", file=path) from exc


def versions() -> dict[str, str]:
    """Versions that decide the numbers: ours, Python, torch (and its CUDA), numpy, PyAV, OpenCV,
    transformers, diffusers (when installed), snakemake (under a Snakemake job)."""
    out = {"cosmos_t2": __version__, **library_versions(), "torch": torch.__version__}
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    return out


def device_info(device: torch.device, dtype: torch.dtype, world_size: int) -> DeviceRecord:
    common = {"type": device.type, "dtype": str(dtype).removeprefix("torch."), "processes": world_size}
    if device.type == "cuda":  # fa4 or cudnn: what a run's speed depends on
        name = torch.cuda.get_device_name(device)
        return DeviceRecord(**common, name=name, attention=attention_kernel("auto", device))
    return DeviceRecord(**common, name=cpu_name(), threads=torch.get_num_threads())


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13"): Linux /proc/cpuinfo; else what `platform` knows ("arm")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def job_record(
    spec: Spec,
    inputs: JobInputs,
    chunks: list[Chunk],
    files: ModelFiles,
    *,
    label: str,
    tiny: bool,
    distilled: bool,
    changed: dict[str, Any],
    seeds: list[int],
    device: torch.device,
    dtype: torch.dtype,
    world_size: int,
    started: float,
    warnings: list[str],
    checkpoint_sha256: dict[str, Any] | None,
    command: list[str],
) -> JobRecord:
    """The sidecar of a job as far as it is known before the outputs are written (see `job_timings`)."""
    return JobRecord(
        name=spec.name,
        label=label,
        tiny=tiny,
        distilled=distilled,
        spec=spec.to_dict(),
        changed_by_mode=dict(changed),
        seed=spec.seed,
        chunk_seeds=seeds,
        num_frames=inputs.num_frames,
        fps=inputs.fps,
        model_size=list(inputs.size),
        source_size=list(inputs.source_size),
        chunks=[dataclasses.asdict(c) for c in chunks],
        steps=spec.num_steps,
        diffusion_steps_total=spec.num_steps * len(chunks),
        sources=inputs.sources,
        models=files.to_dict(),
        versions=versions(),
        # commit, command line, host, UTC time, hashes
        provenance=ProvenanceRecord.from_json(provenance(checkpoint_sha256, command=command)),
        device=device_info(device, dtype, world_size),
        created_unix=math.floor(started),
        warnings=warnings,
        guided_generation=guided_record(spec, inputs.guided_mask),
    )


def job_timings(
    timer: StageTimer, steps: int, started: float, *, first_in_process: bool, step_intervals: list[float]
) -> Timings:
    """What the job cost, once its outputs are written: stage times, s/step, peak memory, total, start-up."""
    diffusion = timer.seconds.get("diffusion", 0.0)
    startup = startup_seconds(started)  # before the stages: interpreter start, imports
    if not first_in_process:  # the interpreter's start and imports belong to the batch's first job
        startup = {k: 0.0 for k in startup}
    return Timings(
        stages_s=timer.rounded(),
        seconds_per_step=round(diffusion / steps, 4) if steps else None,
        steady_seconds_per_step=round(statistics.median(step_intervals), 4) if step_intervals else None,
        peak_memory_gib={k: round(v, 3) for k, v in timer.peak_memory_gib().items()},
        total_s=round(time.time() - started, 3),
        startup_s=startup,
    )


class StageListener(Protocol):
    """Told when a timed stage starts and ends (the progress display, `job.progress`)."""

    def stage_started(self, name: str) -> None: ...
    def stage_finished(self, name: str, seconds: float) -> None: ...


class StageTimer:
    """Wall time per stage (summed when a stage repeats, e.g. per chunk) and peak memory."""

    def __init__(self, device: torch.device, listener: StageListener | None = None) -> None:
        self.device = device
        self.listener = listener
        self.seconds: dict[str, float] = {}
        self.gpu_peak: dict[str, float] = {}  # stage -> peak allocated bytes during it

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.listener is not None:
            self.listener.stage_started(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize(self.device)
                peak = torch.cuda.max_memory_allocated(self.device)
                self.gpu_peak[name] = max(self.gpu_peak.get(name, 0), peak)
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            if self.listener is not None:
                self.listener.stage_finished(name, elapsed)

    def peak_memory_gib(self) -> dict[str, float]:
        """GPU: the allocator's peak over the job and during diffusion (the text encoder runs alone, before
        the DiT is loaded); CPU: the process's peak resident set (includes the interpreter)."""
        if self.device.type == "cuda":
            out = {"gpu_allocated": max(self.gpu_peak.values(), default=0) / 2**30}
            if "diffusion" in self.gpu_peak:
                out["gpu_allocated_diffusion"] = self.gpu_peak["diffusion"] / 2**30
            return out
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
        return {"cpu_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30}

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


def save_latents(path: Path, chunks: list[torch.Tensor], meta: dict[str, Any]) -> Path:
    """Per-chunk latents (1, C, T, h, w) fp32 and the render metadata, atomically."""
    from safetensors.torch import save

    tensors = {f"chunk_{i}": c.detach().float().cpu().contiguous() for i, c in enumerate(chunks)}
    data = save(tensors, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
    return write_bytes_atomic(path, data)


def load_latents(path: Path) -> tuple[list[torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    if not path.is_file():
        raise CosmosError("latents file not found", file=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
            count = len([k for k in f.keys() if k.startswith("chunk_")])  # noqa: SIM118 (safe_open is no dict)
            chunks = [f.get_tensor(f"chunk_{i}") for i in range(count)]
    except (KeyError, json.JSONDecodeError) as exc:
        raise CosmosError("not a cosmos-t2 latents file (no chunk plan in its metadata)", file=path) from exc
    except Exception as exc:  # safetensors' own error types
        raise CosmosError(f"cannot read latents file: {exc}", file=path) from exc
    check_latents(chunks, meta, path)
    return chunks, meta
