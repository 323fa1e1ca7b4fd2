"""The job commands: infer (one job or many), render, bench. Each imports its library inside its body
(the CLI's start stays light)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cosmos_t2.cli.app import (
    MaybeDevice,
    MemoryCap,
    Offload,
    app,
    default_device,
    err_console,
    not_negative,
    positive,
)
from cosmos_t2.cli.infer_job import infer_here, print_event
from cosmos_t2.cli.serve import DEFAULT_IDLE_S, ServerIdle, ServerOption, infer_on_server, render_on_server
from cosmos_t2.destination import check_destination, check_output_file
from cosmos_t2.distributed.launch import first_rank, under_torchrun
from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.job import DEFAULT_NUM_STEPS


@app.command()
def bench(
    preset: Annotated[
        str | None,
        typer.Option(
            help="Job shape: 720p93 (the job users time), 480p93, tiny. Default 720p93 (--sweep on CPU: tiny).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int | None,  # None: not given (an explicit 35 with --distilled runs 35); 4 is sampling.distilled's,
        typer.Option(  # spelled out because importing it would import torch at the CLI's start
            help=f"Steps for the projected total (default {DEFAULT_NUM_STEPS}); --e2e, --sweep: the jobs' steps "
            f"(default the spec's, {DEFAULT_NUM_STEPS}, or with --distilled the distilled model's 4).",
            show_default=False,
            callback=positive,
        ),
    ] = None,
    controls: Annotated[
        str, typer.Option(help="Comma-separated control modalities (one branch each).")
    ] = "edge",
    cp: Annotated[
        int,
        typer.Option("--cp", help="Context-parallel ranks (relaunches under torchrun).", callback=positive),
    ] = 1,
    compare: Annotated[
        str, typer.Option(help="'diffusers' also times diffusers' models in the same run.")
    ] = "",
    compile: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help="torch.compile the blocks (step: off; --e2e: as infer)."),
    ] = None,
    attn_backend: Annotated[
        str, typer.Option(help="auto | fa4 | cudnn | flash | efficient | math.")
    ] = "auto",
    e2e: Annotated[
        bool,
        typer.Option(
            "--e2e", help="Time whole jobs through infer's path (random weights in a model folder)."
        ),
    ] = False,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Time the real Snakemake sweep (workflow/, profile local-gpu; CPU: local, tiny model) on "
            "random weights: per job, wall to its mp4, steps and overhead.",
        ),
    ] = False,
    specs: Annotated[
        int, typer.Option(help="--sweep: synthetic spec files (one clip each).", callback=positive)
    ] = 2,
    control_weights: Annotated[
        str,
        typer.Option(help="--sweep: the grid's control weights, comma-separated (one job each per spec)."),
    ] = "0.25,0.5,0.75,1.0",
    distilled: Annotated[bool, typer.Option(help="--e2e, --sweep: the 4-step distilled edge model.")] = False,
    jobs: Annotated[
        int,
        typer.Option(help="--e2e: this many jobs in one process (infer's batch path).", callback=positive),
    ] = 1,
    spec: Annotated[Path | None, typer.Option(help="--e2e: time this spec at full size.")] = None,
    frames: Annotated[
        int | None, typer.Option(help="--e2e: input frames (185 at 720p: two chunks).", callback=positive)
    ] = None,
    guided: Annotated[bool, typer.Option(help="--e2e: with a guided-generation mask.")] = False,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="--e2e, --sweep: keep the model folder and outputs here (default: temporary)."),
    ] = None,
    vae: Annotated[bool, typer.Option("--vae/--no-vae", help="Also time VAE encode and decode.")] = False,
    warmup: Annotated[int, typer.Option(help="Untimed steps first.", callback=not_negative)] = 2,
    iters: Annotated[int, typer.Option(help="Timed steps (median reported).", callback=positive)] = 3,
    device: Annotated[str, typer.Option(help="cuda or cpu (cpu only with --preset tiny).")] = "cuda",
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Write the full result as JSON.")
    ] = None,
    cfg_parallel: Annotated[
        bool, typer.Option(help="With --cp N: the two CFG passes on two rank groups.")
    ] = False,
    profile: Annotated[Path | None, typer.Option(help="Write a kernel time table of one step here.")] = None,
    compile_mode: Annotated[str | None, typer.Option(help="torch.compile mode (with --compile).")] = None,
    plain: Annotated[
        bool, typer.Option(help="Call the network directly, bypassing the parallel wrapper.")
    ] = False,
    offload: Annotated[str, typer.Option(help="--e2e: as infer --offload.")] = "auto",
    memory_cap: Annotated[
        float | None,
        typer.Option(
            "--memory-cap", help="--e2e: hold the GPU to this many GiB (a smaller card).", callback=positive
        ),
    ] = None,
) -> None:
    """Time one denoising step of the full-size network beside its floor, (--e2e) whole jobs or (--sweep) a
    Snakemake sweep (random weights)."""
    if sweep:
        if e2e:
            raise CosmosError("--sweep and --e2e are two benchmarks: give one", key="--sweep")
        if spec is not None or compare:
            raise CosmosError(
                "--spec and --compare are --e2e options; --sweep writes its own specs", key="--sweep"
            )
        from cosmos_t2.bench import sweep as sweep_bench
        from cosmos_t2.bench.sweep_rows import print_sweep

        if json_out is not None:
            check_output_file(json_out)
        sweep_opts = sweep_bench.SweepOptions(
            preset=preset, specs=specs, control_weights=sweep_bench.parse_weights(control_weights), steps=steps,
            distilled=distilled, device=device, work_dir=work_dir,
        )  # fmt: skip
        sweep_result = sweep_bench.run_sweep(sweep_opts)
        if json_out is not None:
            sweep_bench.write_result(sweep_result, json_out)
        print_sweep(sweep_result)
        return
    preset = preset or "720p93"
    if e2e:
        from cosmos_t2.bench import e2e as e2e_bench

        opts = e2e_bench.E2EOptions(
            preset=preset, controls=tuple(c for c in controls.split(",") if c),
            steps=steps, distilled=distilled, jobs=jobs, spec=spec,
            frames=frames, guided=guided, device=device, compile=compile, compile_mode=compile_mode,
            attn_backend=attn_backend, compare_diffusers=compare == "diffusers", warmup=warmup, iters=iters,
            work_dir=work_dir, offload=offload, memory_cap_gib=memory_cap,
        )  # fmt: skip
        result = e2e_bench.run_e2e(opts)
        if json_out is not None:  # on record before diffusers runs: their failure keeps our figures
            e2e_bench.write_result(result, json_out)
        e2e_bench.print_e2e(result)
        if opts.compare_diffusers:
            result = e2e_bench.compare_diffusers(result, opts)
            if json_out is not None:
                e2e_bench.write_result(result, json_out)
            e2e_bench.print_diffusers(result)
        return
    from cosmos_t2.bench.step import BenchOptions, print_result, run_bench_cli
    from cosmos_t2.model.device import parse_device

    parse_device(device)  # a name, not a presence check: the benchmark says itself what it needs
    for path in (json_out, profile):
        if path is not None:
            check_output_file(path)

    opts = BenchOptions(
        preset=preset,
        steps=DEFAULT_NUM_STEPS if steps is None else steps,
        controls=tuple(c for c in controls.split(",") if c),
        warmup=warmup,
        iters=iters,
        compile=bool(compile),
        attn_backend=attn_backend,
        compare_diffusers=compare == "diffusers",
        vae=vae,
        device=device,
        dtype="bf16" if device == "cuda" else "fp32",
        cp=cp,
        cfg_parallel=cfg_parallel,
        profile=str(profile) if profile else None,
        compile_mode=compile_mode,
        plain=plain,
    )
    result = run_bench_cli(opts, json_out)
    if result is not None:
        print_result(result)


@app.command()
def infer(
    jobs: Annotated[
        list[Path],
        typer.Argument(
            metavar="JOB...",
            help="Job specs, spec files (a JSONL runs every sample unless --name) or folders of them.",
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="Folder for <name>.mp4 and <name>.json (one job: default its output_dir)."
        ),
    ] = None,
    tiny: Annotated[
        bool, typer.Option("--tiny", help="The tiny random-weight model (CPU demo, tests).")
    ] = False,
    model_dir: Annotated[Path | None, typer.Option("--model-dir", help="Checkpoints, VAE, encoders.")] = None,
    distilled: Annotated[
        bool,
        typer.Option(
            "--distilled",
            help="The 4-step distilled edge checkpoint (edge_distilled.*) where --model-dir also "
            "holds the full one (a folder of `models fetch` and `models fetch --distilled`).",
        ),
    ] = False,
    device: MaybeDevice = None,
    gpus: Annotated[
        int, typer.Option("--gpus", help="Processes (one GPU each) under torchrun.", callback=positive)
    ] = 1,
    controls_dir: Annotated[
        Path | None, typer.Option("--controls-dir", help="Control videos from `cosmos-t2 controls`.")
    ] = None,
    masks_dir: Annotated[
        Path | None, typer.Option("--masks-dir", help="Masks from `cosmos-t2 masks`.")
    ] = None,
    prompt_embeddings: Annotated[
        Path | None, typer.Option("--prompt-embeddings", help="From `cosmos-t2 encode-prompt`.")
    ] = None,
    latents_only: Annotated[
        bool, typer.Option("--latents-only", help="Write <name>.latents.safetensors, no mp4 (see render).")
    ] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a spec key: [bold]--set num_steps=2[/].")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The sample to run from a JSONL.")] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", help="Plain one-line stage messages instead of the progress bar (logs)."),
    ] = False,
    guardrails: Annotated[
        bool,
        typer.Option(
            "--guardrails", help="NVIDIA's cosmos-guardrail on the prompts and the video (if installed)."
        ),
    ] = False,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile", help="torch.compile the blocks (default: on for CUDA, off for CPU)."
        ),
    ] = None,
    compile_mode: Annotated[str | None, typer.Option(help="torch.compile mode (default: torch's).")] = None,
    attn_backend: Annotated[
        str,
        typer.Option(help="auto (FlashAttention-4, else cuDNN) | fa4 | cudnn | flash | efficient | math."),
    ] = "auto",
    compile_cache: Annotated[
        Path | None,
        typer.Option(
            help="Compiled-kernel cache shared by jobs (default $COSMOS_T2_CACHE_DIR/torch-compile)."
        ),
    ] = None,
    no_compile_cache: Annotated[
        bool, typer.Option("--no-compile-cache", help="Leave torch's compile cache where torch puts it.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With several jobs: rerun jobs whose outputs exist.")
    ] = False,
    offload: Offload = "auto",
    memory_cap: MemoryCap = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--no-deterministic",
            help="CUDA: deterministic kernels, no autotuning: the same bits in every process on the same GPU "
            "kind and software (CPU: always).",
        ),
    ] = None,
    server: ServerOption = False,
    server_idle: ServerIdle = DEFAULT_IDLE_S,
) -> None:
    """Run jobs: spec -> controls, masks, embeddings -> diffusion -> <name>.mp4 + <name>.json each.

    Several jobs run in one process, models built and compiled once; a failing job does not stop the others."""
    from cosmos_t2.job.options import RunSettings
    from cosmos_t2.service.infer import InferArgs

    run = RunSettings(
        device=device, compile=compile, compile_mode=compile_mode, attn_backend=attn_backend,
        compile_cache=compile_cache, use_compile_cache=not no_compile_cache, deterministic=deterministic,
        offload=offload, memory_cap_gib=memory_cap,
    )  # fmt: skip
    args = InferArgs(
        jobs=jobs, out_dir=out_dir, run=run, tiny=tiny, model_dir=model_dir, distilled=distilled, gpus=gpus,
        controls_dir=controls_dir, masks_dir=masks_dir, prompt_embeddings=prompt_embeddings,
        latents_only=latents_only, set_=set_ or [], name=name, quiet=quiet, guardrails=guardrails, force=force,
    )  # fmt: skip
    if server:
        if gpus == 1 and not under_torchrun():
            raise typer.Exit(infer_on_server(args, idle_timeout=server_idle))
        if first_rank():  # one note for the whole torchrun job
            err_console.print("note: --server serves one-GPU jobs; this one runs in its own processes")
    from cosmos_t2.distributed.launch import maybe_relaunch_under_torchrun

    if maybe_relaunch_under_torchrun(gpus, default_device(device), sys.argv[1:]):
        return
    infer_here(args)


@app.command()
def render(
    latents: Annotated[
        Path, typer.Argument(help="A <name>.latents.safetensors from `infer --latents-only`.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="The mp4 to write (its .json goes beside it).")],
    tiny: Annotated[bool, typer.Option("--tiny", help="Latents of the tiny model (tiny VAE).")] = False,
    model_dir: Annotated[Path | None, typer.Option("--model-dir", help="Folder with tokenizer.pth.")] = None,
    device: MaybeDevice = None,
    guardrails: Annotated[
        bool, typer.Option("--guardrails", help="NVIDIA's cosmos-guardrail on the video (if installed).")
    ] = False,
    server: ServerOption = False,
    server_idle: ServerIdle = DEFAULT_IDLE_S,
) -> None:
    """Decode latents with the VAE into an mp4 (and its sidecar JSON)."""
    from cosmos_t2.service.render import RenderArgs, run_render

    args = RenderArgs(latents, out, tiny=tiny, model_dir=model_dir, device=device, guardrails=guardrails)
    if server:
        raise typer.Exit(render_on_server(args, idle_timeout=server_idle))
    run_render(args, events=print_event)


@app.command()
def reproduce(
    sidecar: Annotated[Path, typer.Argument(help="A job's <name>.json, written by infer.")],
    out_dir: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write the rerun here (default: a temporary folder).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No stage lines from the rerun.")] = False,
) -> None:
    """Rerun a finished job from its sidecar alone and compare the bytes: exit 0 identical, 3 different with
    the recorded difference named (model file, library, CPU, GPU), 1 different with nothing recorded differing."""
    from cosmos_t2.job.reproduce import reproduce as rerun

    if out_dir is not None:
        check_destination(out_dir, [])
    found = rerun(sidecar, out_dir, progress=False if quiet else "lines")
    for line in found.lines():
        typer.echo(line)
    raise typer.Exit(found.exit_code)
