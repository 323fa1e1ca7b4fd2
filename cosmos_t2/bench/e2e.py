"""`cosmos-t2 bench --e2e`: the whole job as users run it, at full size, without the released weights.

It writes a model folder of random weights in the official key layout (one network checkpoint, hard-linked
into every modality's slot, or `edge_distilled.safetensors` for `--distilled`; the Wan2.1 VAE as
`tokenizer.safetensors`), random prompt embeddings of the official shape (so no 7B text encoder is needed:
`infer --prompt-embeddings`), and a synthetic input video (moving shapes over a checkerboard, so Canny finds
edges and the blur has something to smooth), then runs the real `job.run.run_job` through the batch path
`infer` uses (`--jobs N`: N jobs in one process). Speed and memory do not depend on weight values.

Printed: every stage of every job (the sidecar's timings), seconds per step, the job's total, peak memory
and, for several jobs, what the later ones cost beyond their steps. `--compare diffusers` adds diffusers'
transformer + controlnet step, eager and compiled (`bench.diffusers`), at the same shape.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from cosmos_t2.atomic import write_json_atomic
from cosmos_t2.bench.diffusers import bench_diffusers
from cosmos_t2.bench.step import PRESETS, BenchOptions, Preset
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.options import RunSettings, build_run_options
from cosmos_t2.job.sidecar import JobRecord
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.jobspec.load import load_job, load_specs
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.vae import VAEConfig, WanVAE
from cosmos_t2.service.batch import Batch, run_batch
from cosmos_t2.video import write_video

PROMPT = "A robot arm moves a box across a checkered floor in front of a brick wall, daylight."
# Source sizes whose model resolution is the preset's (720p: 1280x720 -> 1280x704, as the official table).
SOURCE_SIZE = {"720p93": (720, 1280), "480p93": (480, 854), "tiny": (64, 112)}
FPS = 16.0
TEXT_TOKENS = 512
MODELS_RECORD = "random-models.json"


@dataclass
class E2EOptions:
    preset: str = "720p93"
    controls: tuple[str, ...] = ("edge",)
    steps: int | None = None  # None: the spec's (35), or the distilled model's 4
    distilled: bool = False
    jobs: int = 1
    spec: Path | None = None  # time this spec instead of the synthetic one
    frames: int | None = None  # input frames (default: the preset's; 185 at 720p gives two chunks)
    guided: bool = False  # add a guided-generation mask (left half kept)
    device: str = "cuda"
    compile: bool | None = None  # None: as infer (on for CUDA)
    compile_mode: str | None = None
    attn_backend: str = "auto"
    compare_diffusers: bool = False
    warmup: int = 1  # diffusers comparison only
    iters: int = 3
    work_dir: Path | None = None  # keep the model folder and outputs here (default: a temporary folder)
    offload: str = "auto"  # as infer --offload
    memory_cap_gib: float | None = None  # as infer --memory-cap: the card held to this much (a smaller GPU)

    def run_settings(self) -> RunSettings:
        """How the jobs run: as `infer` with the same options (its compile cache, attention, memory)."""
        return RunSettings(device=self.device, compile=self.compile, compile_mode=self.compile_mode,
                           attn_backend=self.attn_backend, offload=self.offload,
                           memory_cap_gib=self.memory_cap_gib)  # fmt: skip


@torch.no_grad()
def _random_state(
    module: torch.nn.Module, device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Random values of every parameter (std 1/sqrt(fan-in)), drawn on `device`, as CPU tensors of `dtype`."""
    module = module.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    state = {}
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point():
            std = tensor[0].numel() ** -0.5 if tensor.ndim >= 2 else 0.02
            tensor = torch.randn(tensor.shape, generator=gen, device=device, dtype=torch.float32) * std
        state[name] = tensor.to(dtype).cpu().contiguous()
    return state


def write_random_models(
    folder: Path,
    modalities: list[str],
    *,
    tiny: bool,
    distilled: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> Path:
    """A `--model-dir` of random weights for `modalities` (official key names, `net.` prefixed).

    A folder this function finished before for the same arguments is used as it is (`--work-dir` kept between
    runs): its record, written last, names what it holds."""
    names = ["edge_distilled"] if distilled else modalities
    record = {"tiny": tiny, "names": names, "dtype": str(dtype)}
    marker = folder / MODELS_RECORD
    files = [folder / f"{name}.safetensors" for name in names] + [folder / "tokenizer.safetensors"]
    if marker.is_file() and json.loads(marker.read_text()) == record and all(f.is_file() for f in files):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for stale in files:  # os.link below refuses an existing name
        stale.unlink(missing_ok=True)
    config = TransferConfig.tiny() if tiny else TransferConfig.full_2b()
    with torch.device("meta"):
        net = TransferNet(config, num_control_branches=1)
    state = {f"net.{k}": v for k, v in _random_state(net, device, dtype).items()}
    del net
    first = folder / f"{names[0]}.safetensors"
    save_file(state, str(first))
    del state
    for name in names[1:]:  # the same bytes in every slot; hard links keep the disk and the write small
        os.link(first, folder / f"{name}.safetensors")
    with torch.device("meta"):
        vae = WanVAE(VAEConfig.tiny() if tiny else VAEConfig.wan21())
    save_file(_random_state(vae, device, dtype), str(folder / "tokenizer.safetensors"))
    write_json_atomic(marker, record)
    return folder


def write_prompt_embeddings(path: Path, *, tiny: bool, dtype: torch.dtype) -> Path:
    """Random prompt and negative-prompt embeddings of the shape Cosmos-Reason1 gives (1, 512, 100352)."""
    channels = (TransferConfig.tiny() if tiny else TransferConfig.full_2b()).crossattn_proj_in_channels
    gen = torch.Generator().manual_seed(1)
    tensors = {
        k: torch.randn(1, TEXT_TOKENS, channels, generator=gen).to(dtype)
        for k in ("prompt", "negative_prompt")
    }
    save_file(tensors, str(path), metadata={"encoder": "random (bench --e2e)"})
    return path


def synthetic_frames(frames: int, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8: a checkerboard floor, a gradient sky and a box sliding across."""
    y, x = np.mgrid[0:height, 0:width]
    square = max(height // 12, 4)
    board = (((y // square) + (x // square)) % 2 * 120 + 60).astype(np.uint8)
    base = np.stack([board, board * 0 + (y * 200 // height).astype(np.uint8), board // 2], axis=-1)
    out = np.repeat(base[None], frames, axis=0)
    side = max(height // 4, 4)
    for t in range(frames):
        left = (t * (width - side)) // max(frames - 1, 1)
        out[t, height // 3 : height // 3 + side, left : left + side] = (220, 40, 30)
    return out


def _synthetic_specs(opts: E2EOptions, folder: Path, preset: Preset) -> list[Spec]:
    height, width = SOURCE_SIZE[opts.preset]
    frames = opts.frames or preset.frames
    video = synthetic_frames(frames, height, width)
    write_video(folder / "input.mp4", video, FPS)
    resolution = "480" if opts.preset == "480p93" else "720"  # tiny: --tiny's own resolution wins
    sample: dict[str, Any] = {"prompt": PROMPT, "video_path": "input.mp4", "resolution": resolution}
    if opts.steps is not None:
        sample["num_steps"] = opts.steps
    for modality in opts.controls:
        block: dict[str, Any] = {}
        if modality in ("depth", "seg"):  # their models are not needed to time the job: give the videos
            grey = np.repeat(video.mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
            control = grey if modality == "depth" else (video // 64) * 64
            write_video(folder / f"{modality}.mp4", control, FPS)
            block["control_path"] = f"{modality}.mp4"
        sample[modality] = block
    if opts.guided:
        mask = np.zeros_like(video)
        mask[:, :, : width // 2] = 255
        write_video(folder / "guided_mask.mp4", mask, FPS)
        sample["guided_generation_mask"] = "guided_mask.mp4"
    lines = [json.dumps({**sample, "name": f"e2e_{i}", "seed": 2025 + i}) for i in range(opts.jobs)]
    (folder / "e2e.jsonl").write_text("\n".join(lines) + "\n")
    return load_specs(folder / "e2e.jsonl")


def _given_specs(opts: E2EOptions) -> list[Spec]:
    assert opts.spec is not None
    spec = load_job(opts.spec, overrides={"num_steps": opts.steps} if opts.steps is not None else None)
    return [replace(spec, name=f"{spec.name}_{i}") if opts.jobs > 1 else spec for i in range(opts.jobs)]


# The jobs' outputs go to a temporary folder removed when the run ends (unless --work-dir).
TEMPORARY_NOTE = "deleted with their temporary folder (--work-dir DIR keeps them)"


def run_e2e(opts: E2EOptions) -> dict[str, Any]:
    """Write the random model folder and inputs, run the jobs in one process, return their sidecars."""
    if opts.preset not in SOURCE_SIZE:
        raise CosmosError(
            f"unknown preset {opts.preset!r}; choose from {', '.join(SOURCE_SIZE)}", key="--preset"
        )
    if opts.distilled and tuple(opts.controls) != ("edge",):
        raise CosmosError("the distilled model is an edge model: use --controls edge", key="--distilled")
    if opts.distilled and opts.compare_diffusers:
        raise CosmosError(
            "--compare diffusers times the 35-step CFG step; run it without --distilled", key="--compare"
        )
    if opts.jobs < 1:
        raise CosmosError(f"--jobs must be at least 1, got {opts.jobs}", key="--jobs")
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CosmosError("no CUDA device is available; use --device cpu with --preset tiny", key="--device")
    preset = PRESETS[opts.preset]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory(prefix="cosmos-t2-e2e-") as tmp:
        work = Path(opts.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        specs = _given_specs(opts) if opts.spec is not None else _synthetic_specs(opts, work, preset)
        modalities = list(specs[0].controls)
        models = write_random_models(work / "models", modalities, tiny=preset.tiny, distilled=opts.distilled,
                                     device=device, dtype=dtype)  # fmt: skip
        embeddings = write_prompt_embeddings(work / "prompt.safetensors", tiny=preset.tiny, dtype=dtype)
        if device.type == "cuda":  # the random-weight scratch is not part of the job
            torch.cuda.empty_cache()
        prepared = time.perf_counter() - started
        options = build_run_options(opts.run_settings(), out_dir=work / "out", tiny=preset.tiny, model_dir=models,
                                    prompt_embeddings=embeddings, progress=True,
                                    output_note=None if opts.work_dir else "(temporary, deleted after the benchmark)")  # fmt: skip
        t0 = time.perf_counter()
        batch = run_batch(Batch(specs=specs), options, force=True)
        wall = time.perf_counter() - t0
        if batch.failed:
            raise CosmosError(f"bench --e2e job failed: {batch.failed[0].name}: {batch.failed[0].error}")
        sidecars = [
            JobRecord.from_json(json.loads(o.result.sidecar.read_text()))
            for o in batch.outcomes
            if o.result and o.result.sidecar
        ]
    result: dict[str, Any] = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "prepare_s": round(prepared, 3),
        "jobs_wall_s": round(wall, 3),
        "builds": batch.builds,
        "modalities": modalities,
        "jobs": [_job_summary(s) for s in sidecars],
        "outputs": str(Path(opts.work_dir) / "out") if opts.work_dir else None,
    }
    return result


def compare_diffusers(result: dict[str, Any], opts: E2EOptions) -> dict[str, Any]:
    """`result` with diffusers' step, eager and compiled, at the jobs' shape (run after ours is on record, so
    a failure on their side keeps our figures)."""
    preset = PRESETS[opts.preset]
    device = torch.device(opts.device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    modalities = list(result["modalities"])
    return {**result, "diffusers": _diffusers(opts, preset, modalities, device)}


def _job_summary(record: JobRecord) -> dict[str, Any]:
    """What the benchmark's JSON keeps of a job's record (the sidecar's key names)."""

    def part(value: Any) -> dict[str, Any] | None:
        return None if value is None else value.to_json()

    timings = record.timings
    return {
        "name": record.name, "label": record.label, "steps": record.steps,
        "diffusion_steps_total": record.diffusion_steps_total, "num_frames": record.num_frames,
        "model_size": record.model_size, "timings_s": timings.stages_s, "seconds_per_step": timings.seconds_per_step,
        "steady_seconds_per_step": timings.steady_seconds_per_step, "total_s": timings.total_s,
        "peak_memory_gib": timings.peak_memory_gib, "acceleration": part(record.acceleration),
        "device": part(record.device), "chunks": record.chunks, "memory": part(record.memory),
    }  # fmt: skip


def _diffusers(
    opts: E2EOptions, preset: Preset, modalities: list[str], device: torch.device
) -> dict[str, Any]:
    cfg = TransferConfig.tiny() if preset.tiny else TransferConfig.full_2b()
    bench = BenchOptions(preset=preset.name, controls=tuple(modalities), warmup=opts.warmup, iters=opts.iters,
                         device=opts.device, dtype="bf16" if device.type == "cuda" else "fp32")  # fmt: skip
    eager = bench_diffusers(cfg, preset, bench, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    compiled = bench_diffusers(cfg, preset, bench, device, compiled=True)
    return {"eager": eager, "compiled": compiled}


def _first_step_extra(job: dict[str, Any]) -> str:
    """What the steps cost beyond steady ones: each chunk's first step pays compilation and autotuning."""
    steady = job["steady_seconds_per_step"]
    if steady is None:
        return "-"
    return f"{job['timings_s'].get('diffusion', 0.0) - job['diffusion_steps_total'] * steady:.2f}"


def write_result(result: dict[str, Any], path: Path) -> Path:
    return write_json_atomic(path, result, default=str)


def print_e2e(result: dict[str, Any]) -> None:
    """The per-stage table (one column per job), then s/step, totals, peak, and the diffusers steps."""
    from rich.console import Console
    from rich.table import Table

    jobs = result["jobs"]
    console = Console()
    table = Table(title=f"cosmos-t2 bench --e2e on {result['device']} ({jobs[0]['label']})")
    table.add_column("stage (s)")
    for job in jobs:
        table.add_column(job["name"], justify="right")
    stages = list(dict.fromkeys(k for job in jobs for k in job["timings_s"]))
    for stage in stages:
        table.add_row(stage, *(f"{job['timings_s'].get(stage, 0.0):.2f}" for job in jobs))
    table.add_row("s / step", *(f"{job['seconds_per_step']:.3f}" for job in jobs))
    steady = [job["steady_seconds_per_step"] for job in jobs]
    table.add_row("s / step after the first", *("-" if s is None else f"{s:.3f}" for s in steady))
    table.add_row("first steps' extra (s)", *(_first_step_extra(job) for job in jobs))
    table.add_row("total (s)", *(f"{job['total_s']:.1f}" for job in jobs))
    table.add_row("peak GiB", *(f"{max(job['peak_memory_gib'].values(), default=0):.1f}" for job in jobs))
    console.print(table)
    acc = jobs[0]["acceleration"]
    compiled = f"compiled ({acc['compile_mode']})" if acc["compile"] else "eager"
    console.print(
        f"network: {compiled}, {acc['attention_kernel']} attention; models built: {result['builds']}"
    )
    for job in jobs:  # the plan infer chose before building anything, and how its estimate held up
        memory = job.get("memory") or {}
        gpu = job["peak_memory_gib"].get("gpu_allocated")
        measured = f"measured {gpu:.2f} GiB" if gpu is not None else "no GPU peak to compare on CPU"
        plan = memory.get("plan", {})
        levers = [f"MLP in {plan['mlp_chunks']} chunks"] if plan.get("mlp_chunks") else []
        levers += ["tiled decode"] if plan.get("tiled_decode") else []
        console.print(
            f"{job['name']}: offload {plan.get('offload')}{' (' + ', '.join(levers) + ')' if levers else ''} "
            f"(asked {memory.get('offload_requested')}; budget {memory.get('budget_source')}): estimated peak "
            f"{memory.get('estimate_peak_gib', 0):.2f} GiB, {measured}"
        )
    diffusion = sum(job["timings_s"].get("diffusion", 0.0) for job in jobs)
    console.print(
        f"{len(jobs)} job(s) in one process: {result['jobs_wall_s']:.1f} s, of which steps {diffusion:.1f} s "
        f"(+{result['jobs_wall_s'] - diffusion:.1f} s around them); preparing the random model folder "
        f"{result['prepare_s']:.1f} s (not part of a job)"
    )
    console.print(f"total: {jobs[0]['total_s']:.1f} s (first job, start to finished files)")
    where = result.get("outputs")
    console.print(f"outputs: {where}" if where else f"outputs: {TEMPORARY_NOTE}")


def print_diffusers(result: dict[str, Any]) -> None:
    """diffusers' step beside our steady one (the first step of a process includes compilation)."""
    from rich.console import Console

    job = result["jobs"][-1]
    ours = job["steady_seconds_per_step"] or job["seconds_per_step"]
    for kind, theirs in result["diffusers"].items():
        Console().print(
            f"diffusers {kind}: {theirs['step_s']:.3f} s / step ({theirs['step_s'] / ours:.2f}x ours)"
        )
