"""`cosmos-t2 bench`: time one denoising step of the full-size network, beside its floor.

Random weights are fine: the time of a dense network does not depend on the values. The step is what the
sampler runs: both CFG passes batched in one forward (B=2) through control branch(es) + backbone, text already
projected (done once per job). Timings use CUDA events after warm-up; the floor uses matmul and attention rates
measured in the same process, so the two are comparable on whatever GPU runs the bench.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from cosmos_t2.atomic import write_json_atomic, write_text_atomic
from cosmos_t2.bench.diffusers import bench_diffusers
from cosmos_t2.bench.flops import StepShape, step_flops
from cosmos_t2.bench.timing import sync, time_callable
from cosmos_t2.bench.vae import bench_vae
from cosmos_t2.distributed.context import ParallelContext, parallel_job
from cosmos_t2.distributed.launch import maybe_relaunch_under_torchrun
from cosmos_t2.distributed.net import ParallelNet, cfg_pair
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.options import RunSettings
from cosmos_t2.jobspec.job import DEFAULT_NUM_STEPS
from cosmos_t2.model.attention import attention, attention_kernel, fa4_unavailable_reason
from cosmos_t2.model.config import TEMPORAL_COMPRESSION, TransferConfig
from cosmos_t2.model.control import ControlInput, TransferNet
from cosmos_t2.model.vae import VAEConfig
from cosmos_t2.runtime.acceleration import Acceleration, accelerate, accelerated


@dataclass(frozen=True)
class Preset:
    name: str
    frames: int
    height: int
    width: int
    tiny: bool = False

    def latent_grid(self) -> tuple[int, int, int]:
        return (1 + (self.frames - 1) // TEMPORAL_COMPRESSION, self.height // 8, self.width // 8)


PRESETS = {
    "720p93": Preset("720p93", 93, 704, 1280),
    "480p93": Preset("480p93", 93, 480, 832),
    "tiny": Preset("tiny", 17, 64, 112, tiny=True),
}


@dataclass
class BenchOptions:
    preset: str = "720p93"
    steps: int = DEFAULT_NUM_STEPS
    controls: tuple[str, ...] = ("edge",)
    warmup: int = 2
    iters: int = 3
    compile: bool = False
    attn_backend: str = "auto"
    compare_diffusers: bool = False
    vae: bool = False
    device: str = "cuda"
    dtype: str = "bf16"
    cp: int = 1
    cfg_parallel: bool = False
    profile: str | None = None  # write a kernel table of one profiled step to this file
    compile_mode: str | None = None  # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    plain: bool = False  # call the network directly instead of through the context-parallel wrapper

    def acceleration(self, device: torch.device) -> Acceleration:
        """What `infer` with these options would run on `device`: attention, compile, its cache, cuDNN and
        deterministic switches (`--compile` is off unless asked: the step is timed eager by default)."""
        settings = RunSettings(device=str(device), compile=self.compile, compile_mode=self.compile_mode,
                               attn_backend=self.attn_backend)  # fmt: skip
        return settings.acceleration(str(device))


def measure_rates(device: torch.device, tokens: int, heads: int, head_dim: int) -> dict[str, float]:
    """Measured bf16 matmul TFLOP/s (8192^3) and attention TFLOP/s at the step's own attention shape (B=1):
    cuDNN SDPA (the reference the floor is defined with) and, where it runs, FlashAttention-4."""
    if device.type != "cuda":
        return {}
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    mm = statistics.median(time_callable(lambda: a @ b, device, 3, 10))
    q, k, v = (torch.randn(1, tokens, heads, head_dim, device=device, dtype=torch.bfloat16) for _ in range(3))
    attention_flop = 4 * tokens**2 * heads * head_dim
    rates = {"matmul_tflops": 2 * 8192**3 / mm / 1e12}
    kernels = ["cudnn"] + (["fa4"] if fa4_unavailable_reason() is None else [])
    for kernel in kernels:
        att = statistics.median(time_callable(lambda k_=kernel: attention(q, k, v, k_), device, 2, 5))
        key = "attention_tflops" if kernel == "cudnn" else f"attention_tflops_{kernel}"
        rates[key] = attention_flop / att / 1e12
    return rates


def _inputs(cfg: TransferConfig, preset: Preset, n_controls: int, device: torch.device, dtype: torch.dtype):
    t, h, w = preset.latent_grid()
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    # The CFG pair as the sampler builds it: the same latents twice, prompt and negative text.
    x = randn(1, cfg.latent_channels, t, h, w).expand(2, -1, -1, -1, -1)
    timesteps = torch.full((2, t), 0.5, device=device)
    text = randn(2, 512, cfg.crossattn_emb_channels)  # projected once per job, as the pipeline does
    cond = torch.zeros(2, 1, t, 1, 1, device=device, dtype=dtype)
    controls = [
        ControlInput(latent=randn(1, cfg.latent_channels, t, h, w).expand(2, -1, -1, -1, -1), weight=1.0)
        for _ in range(n_controls)
    ]
    return x, timesteps, text, cond, controls


def bench_transfer(
    cfg: TransferConfig, preset: Preset, opts: BenchOptions, device: torch.device, ctx=None
) -> dict:
    """Time one CFG step (B=2, or B=1 per rank group with CFG parallel) of our TransferNet through the
    context-parallel wrapper (a plain call at world size 1); returns seconds and peak memory."""
    ctx = ctx or ParallelContext(device=device)

    dtype = torch.bfloat16 if opts.dtype == "bf16" else torch.float32
    n_controls = len(opts.controls)
    with torch.device("meta"):  # random weights made on the device: infer's build reads weight files
        net = TransferNet(cfg, num_control_branches=n_controls)
    net = net.to_empty(device=device).to(dtype)
    _random_init(net)
    net.eval().requires_grad_(False)
    acc = opts.acceleration(device)
    accelerate(net, acc)  # as the model pool does for infer: the same backend, compile and its cache
    x, timesteps, text, cond, controls = _inputs(cfg, preset, n_controls, device, dtype)
    model = net if opts.plain else ParallelNet(net, ctx)
    if ctx.cfg_size == 2:  # each rank group runs one CFG pass (B=1); an all-gather gives both to every rank
        controls = [replace(c, latent=c.latent[:1]) for c in controls]
        x, timesteps, cond = x[:1], timesteps[:1], cond[:1]
        texts = text[:1], text[1:]
        one_pass = model

        def model(x, timesteps, text, *, condition_mask, controls):
            return torch.cat(
                cfg_pair(
                    ctx,
                    lambda: one_pass(
                        x, timesteps, texts[0], condition_mask=condition_mask, controls=controls
                    ),
                    lambda: one_pass(
                        x, timesteps, texts[1], condition_mask=condition_mask, controls=controls
                    ),
                )
            )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> torch.Tensor:
        with accelerated(acc), torch.inference_mode():  # infer's switches (cuDNN, deterministic), even on CPU
            if ctx.cfg_size == 2:
                return model(x, timesteps, text, condition_mask=cond, controls=controls)
            return model(x, timesteps, text, condition_mask=cond, controls=controls, cfg_halves=True)

    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    times = time_callable(step, device, opts.warmup, opts.iters)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    if opts.profile:
        _profile_step(step, Path(opts.profile))
    return {
        "step_s": statistics.median(times),
        "step_times_s": times,
        "first_call_s": first,
        "peak_gib": peak,
    }


def _profile_step(step: Callable[[], object], path: Path) -> None:
    """Kernel-level time table of one step (where the gap to the floor goes)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    write_text_atomic(path, prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=90))


@torch.no_grad()
def _random_init(net: torch.nn.Module) -> None:
    """Random values everywhere (speed is value-independent; zeros would flatter some kernels)."""
    torch.manual_seed(0)
    for p in net.parameters():
        p.normal_(0.0, p.shape[-1] ** -0.5)


def run_bench(opts: BenchOptions, ctx=None) -> dict:
    if opts.preset not in PRESETS:
        raise CosmosError(f"unknown preset {opts.preset!r}; choose from {', '.join(PRESETS)}", key="--preset")
    preset = PRESETS[opts.preset]
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CosmosError("no CUDA device is available; use --device cpu with --preset tiny", key="--device")
    cfg = TransferConfig.tiny() if preset.tiny else TransferConfig.full_2b()
    t, h, w = preset.latent_grid()
    shape = StepShape(t, h, w, num_controls=len(opts.controls))
    flops = step_flops(cfg, shape)
    result: dict = {
        "preset": asdict(preset),
        "options": asdict(opts),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "tokens": shape.tokens(cfg),
        "step_tflop": flops.total / 1e12,
        "attention_share": flops.attention / flops.total,
    }
    rates = measure_rates(device, shape.tokens(cfg), cfg.num_heads, cfg.head_dim)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    result.update(rates)
    if rates:
        result["floor_step_s"] = flops.floor_seconds(rates["matmul_tflops"], rates["attention_tflops"])
        if "attention_tflops_fa4" in rates:
            result["floor_step_s_fa4"] = flops.floor_seconds(
                rates["matmul_tflops"], rates["attention_tflops_fa4"]
            )
    result["attention_kernel"] = attention_kernel(opts.attn_backend, device)
    if ctx is not None and ctx.device.type == "cuda":
        device = ctx.device
    ours = bench_transfer(cfg, preset, opts, device, ctx)
    result["cosmos_t2"] = ours
    result["cosmos_t2"]["projected_total_s"] = ours["step_s"] * opts.steps
    if ctx is not None and ctx.distributed:
        result["world_size"], result["cp_size"], result["cfg_size"] = (
            ctx.world_size,
            ctx.cp_size,
            ctx.cfg_size,
        )
    if opts.compare_diffusers and (ctx is None or not ctx.distributed):
        theirs = bench_diffusers(cfg, preset, opts, device)
        theirs["projected_total_s"] = theirs["step_s"] * opts.steps
        result["diffusers"] = theirs
        result["speedup_vs_diffusers"] = theirs["step_s"] / ours["step_s"]
        compiled = bench_diffusers(cfg, preset, opts, device, compiled=True)
        compiled["projected_total_s"] = compiled["step_s"] * opts.steps
        result["diffusers_compiled"] = compiled
        result["speedup_vs_diffusers_compiled"] = compiled["step_s"] / ours["step_s"]
    if opts.vae and (ctx is None or not ctx.distributed):
        vae_cfg = VAEConfig.tiny() if preset.tiny else VAEConfig.wan21()
        result["vae"] = bench_vae(
            device, config=vae_cfg, frames=preset.frames, height=preset.height, width=preset.width
        )
    return result


def run_bench_cli(opts: BenchOptions, json_out: Path | None) -> dict | None:
    """The `bench` command: relaunch under torchrun for --cp N, run, and on rank 0 write the JSON."""
    if opts.cp > 1 and maybe_relaunch_under_torchrun(opts.cp, opts.device, sys.argv[1:], option="--cp"):
        return None
    with parallel_job(opts.device, cfg_parallel=opts.cfg_parallel) as ctx:
        result = run_bench(opts, ctx)
    if not ctx.is_main:
        return None
    if json_out is not None:
        write_json_atomic(json_out, result, default=str)
    return result


def print_result(result: dict) -> None:
    """A short table: our step, the floor, diffusers' step, memory."""
    from rich.console import Console
    from rich.table import Table

    where = result["device"]
    if result.get("world_size", 1) > 1:
        where += f" x{result['world_size']} (cp {result['cp_size']}, cfg {result['cfg_size']})"
    table = Table(title=f"cosmos-t2 bench: {result['preset']['name']} on {where}")
    for col in ("what", "s / step", f"{result['options']['steps']} steps (s)", "peak GiB", "vs floor"):
        table.add_column(col)
    floor = result.get("floor_step_s")
    steps = result["options"]["steps"]

    def row(name: str, step_s: float, peak: float | None) -> None:
        ratio = f"{step_s / floor:.2f}x" if floor else "-"
        peak_s = f"{peak:.1f}" if peak is not None and peak == peak else "-"
        table.add_row(name, f"{step_s:.3f}", f"{step_s * steps:.1f}", peak_s, ratio)

    if floor:
        row("floor (counted FLOPs / measured rates, cuDNN attention)", floor, None)
    if "floor_step_s_fa4" in result:
        row("floor at FlashAttention-4's measured rate", result["floor_step_s_fa4"], None)
    row(
        f"cosmos-t2 ({result.get('attention_kernel', '?')} attention)",
        result["cosmos_t2"]["step_s"],
        result["cosmos_t2"]["peak_gib"],
    )
    if "diffusers" in result:
        row("diffusers (eager)", result["diffusers"]["step_s"], result["diffusers"]["peak_gib"])
    if "diffusers_compiled" in result:
        theirs = result["diffusers_compiled"]
        row("diffusers (regional torch.compile)", theirs["step_s"], theirs["peak_gib"])
    Console().print(table)
    if "speedup_vs_diffusers" in result:
        Console().print(f"speed-up over diffusers eager: {result['speedup_vs_diffusers']:.2f}x")
    if "speedup_vs_diffusers_compiled" in result:
        Console().print(f"speed-up over diffusers compiled: {result['speedup_vs_diffusers_compiled']:.2f}x")
