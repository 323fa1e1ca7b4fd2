"""The `cosmos-t2` command line. Commands are thin: parse, call one library function, print.

Each command imports its library inside its body, so that `cosmos-t2 --help` and `validate` start
without loading torch.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cosmos_t2 import __version__
from cosmos_t2.destination import check_destination, check_output_file
from cosmos_t2.errors import CosmosError, os_error_line

if TYPE_CHECKING:
    from cosmos_t2.pipeline.batch import Outcome
    from cosmos_t2.pipeline.official import Selection

app = typer.Typer(
    name="cosmos-t2",
    help="Cosmos-Transfer2.5 from a spec file to a finished video.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
_state = {"debug": False}


# Arguments several stage commands share (the workflow calls them all the same way).
JobArg = Annotated[Path, typer.Argument(help="A job spec, or a spec file (with --name for a JSONL).")]
SampleName = Annotated[str | None, typer.Option("--name", help="The sample to use from a JSONL.")]


def _device_option(value: str | None) -> str | None:
    """Check --device when it is parsed: an unknown or absent device is one line before any work."""
    if value is None:
        return None
    from cosmos_t2.model.device import resolve_device

    resolve_device(value)
    return value


MaybeDevice = Annotated[
    str | None,
    typer.Option("--device", help="cpu or cuda (default: cuda if present).", callback=_device_option),
]
Offload = Annotated[
    str,
    typer.Option(
        help="auto (the fastest that fits) | none | model (whole models per stage) | blocks (streamed)."
    ),
]
MemoryCap = Annotated[
    float | None,
    typer.Option("--memory-cap", help="GiB: plan for (and on CUDA hold the process to) this much."),
]
ModelSizeInput = Annotated[
    Path | None, typer.Option("--input", help="Model-size input (default DIR/input.mkv, else decoded).")
]


def _device(name: str | None) -> str | None:
    """--device checked before any work: cpu, cuda or cuda:N (None: the command's default)."""
    if name is None:
        return None
    import torch

    try:
        kind = torch.device(name).type
    except (RuntimeError, ValueError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise CosmosError(f"unknown device {name!r}; expected cpu, cuda or cuda:N", key="--device")
    return name


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def version() -> None:
    """Print the version of cosmos-t2."""
    typer.echo(__version__)


# --- commands added by each stage go below; keep each one thin -------------------------------


@app.command()
def validate(
    specs: Annotated[
        list[Path],
        typer.Argument(metavar="SPEC...", help="Spec files: .json/.jsonc (one sample), .jsonl (one a line)."),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key: [bold]--set depth.control_weight=0.5[/] (repeatable)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Keep only the sample with this name.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Write the one resolved sample here as a job spec.")
    ] = None,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="Print each job's memory per stage and offload mode instead.")
    ] = False,
    gpus: Annotated[int, typer.Option("--gpus", help="--estimate: GPUs the job runs on.")] = 1,
    offload: Offload = "auto",
    memory_cap: MemoryCap = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="--estimate: the tiny model (fp32 on CPU).")] = False,
    text_encoder: Annotated[
        bool, typer.Option(help="--estimate: count the text-encoder stage (off: --prompt-embeddings).")
    ] = True,
) -> None:
    """Check spec files and print the resolved spec(s) as JSON (one object, or a list for several)."""
    import json

    from cosmos_t2.spec.job import load_batch, write_job_spec
    from cosmos_t2.spec.parse import parse_set_options

    if json_out is not None:
        check_output_file(json_out)
    resolved = load_batch(specs, parse_set_options(set_ or []), name=name)
    if estimate:
        from cosmos_t2.pipeline.residency import estimate_job
        from cosmos_t2.pipeline.run import effective_spec

        for spec in resolved:
            typer.echo(spec.name)
            for line in estimate_job(effective_spec(spec, tiny).spec, gpus=gpus, offload=offload,
                                     memory_cap_gib=memory_cap, tiny=tiny, text_encoder=text_encoder):  # fmt: skip
                typer.echo(line)
        return
    if json_out is not None:
        if len(resolved) != 1:
            names = ", ".join(s.name for s in resolved)
            raise CosmosError(
                f"--json-out writes one job spec, but there are {len(resolved)} samples ({names}); pick one with --name",
                file=", ".join(map(str, specs)),
            )
        write_job_spec(resolved[0], json_out)
    dicts = [s.to_dict() for s in resolved]
    typer.echo(json.dumps(dicts[0] if len(dicts) == 1 else dicts, indent=2))


@app.command()
def decode(
    job: JobArg,
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="Folder for input.mkv and input.json.")],
    tiny: Annotated[bool, typer.Option("--tiny", help="Use the tiny model's resolution.")] = False,
    name: SampleName = None,
) -> None:
    """Decode the job's input video, resized to the model resolution, into a lossless input.mkv + input.json."""
    import json
    from dataclasses import asdict

    from cosmos_t2.spec.job import load_job
    from cosmos_t2.video import decode_to_model

    spec = load_job(job, name=name)
    check_destination(out_dir, ["input.mkv", "input.json"])
    info = decode_to_model(
        spec.video_path, out_dir, resolution="tiny" if tiny else spec.resolution, max_frames=spec.max_frames
    )
    typer.echo(json.dumps(asdict(info), indent=2))


@app.command()
def bench(
    preset: Annotated[
        str, typer.Option(help="Job shape: 720p93 (the job users time), 480p93, tiny.")
    ] = "720p93",
    steps: Annotated[int, typer.Option(help="Steps for the projected total.")] = 35,
    controls: Annotated[
        str, typer.Option(help="Comma-separated control modalities (one branch each).")
    ] = "edge",
    cp: Annotated[int, typer.Option("--cp", help="Context-parallel ranks (relaunches under torchrun).")] = 1,
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
    distilled: Annotated[bool, typer.Option(help="--e2e: the 4-step distilled edge model.")] = False,
    jobs: Annotated[int, typer.Option(help="--e2e: this many jobs in one process (infer's batch path).")] = 1,
    spec: Annotated[Path | None, typer.Option(help="--e2e: time this spec at full size.")] = None,
    frames: Annotated[int | None, typer.Option(help="--e2e: input frames (185 at 720p: two chunks).")] = None,
    guided: Annotated[bool, typer.Option(help="--e2e: with a guided-generation mask.")] = False,
    work_dir: Annotated[
        Path | None, typer.Option(help="--e2e: keep the model folder and outputs here (default: temporary).")
    ] = None,
    vae: Annotated[bool, typer.Option("--vae/--no-vae", help="Also time VAE encode and decode.")] = False,
    warmup: Annotated[int, typer.Option(help="Untimed steps first.")] = 2,
    iters: Annotated[int, typer.Option(help="Timed steps (median reported).")] = 3,
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
        typer.Option("--memory-cap", help="--e2e: hold the GPU to this many GiB (a smaller card)."),
    ] = None,
) -> None:
    """Time one denoising step of the full-size network beside its floor, or (--e2e) whole jobs (random weights)."""
    if e2e:
        from cosmos_t2.bench.e2e import E2EOptions, print_e2e, run_e2e, write_result

        result = run_e2e(
            E2EOptions(
                preset=preset, controls=tuple(c for c in controls.split(",") if c),
                steps=None if steps == 35 else steps, distilled=distilled, jobs=jobs, spec=spec,
                frames=frames, guided=guided, device=device, compile=compile, compile_mode=compile_mode,
                attn_backend=attn_backend, compare_diffusers=compare == "diffusers", warmup=warmup, iters=iters,
                work_dir=work_dir, offload=offload, memory_cap_gib=memory_cap,
            )
        )  # fmt: skip
        if json_out is not None:
            write_result(result, json_out)
        print_e2e(result)
        return
    from cosmos_t2.bench.step import BenchOptions, print_result, run_bench_cli

    _device(device)
    for path in (json_out, profile):
        if path is not None:
            check_output_file(path)

    opts = BenchOptions(
        preset=preset,
        steps=steps,
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


@app.command("convert-checkpoint")
def convert_checkpoint_cmd(
    src: Annotated[Path, typer.Argument(help="Official checkpoint (.pt or .safetensors).")],
    dst: Annotated[Path, typer.Argument(help="Output .safetensors file.")],
    dtype: Annotated[str, typer.Option(help="bf16, fp32 or keep.")] = "bf16",
    tiny: Annotated[bool, typer.Option("--tiny", help="Check against the tiny test network.")] = False,
) -> None:
    """Check an official checkpoint against the network's keys and shapes, and write it as .safetensors."""
    import torch

    from cosmos_t2.model.checkpoint import convert_checkpoint
    from cosmos_t2.model.config import TransferConfig

    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32, "keep": None}
    if dtype not in dtypes:
        raise CosmosError(f"unknown dtype {dtype!r}; choose bf16, fp32 or keep")
    config = TransferConfig.tiny() if tiny else TransferConfig.full_2b()
    check_output_file(dst, src.stat().st_size if src.is_file() else 0)
    out = convert_checkpoint(src, dst, config, dtype=dtypes[dtype])
    typer.echo(str(out))


@app.command("encode-prompt")
def encode_prompt(
    job: Annotated[Path, typer.Argument(help="Job spec, or a spec file (with --name for a JSONL).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .safetensors (prompt, negative_prompt).")],
    tiny: Annotated[bool, typer.Option("--tiny", help="Use the tiny random text encoder (demo).")] = False,
    text_encoder_dir: Annotated[
        Path | None, typer.Option("--text-encoder-dir", help="Local Cosmos-Reason1-7B directory.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Sample to pick from a JSONL.")] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Embedding cache (default $COSMOS_T2_CACHE_DIR/text-embeddings)."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")] = False,
    device: MaybeDevice = None,
) -> None:
    """Encode the job's prompt and negative prompt into one .safetensors file (cached per prompt)."""
    from cosmos_t2.model.text import EmbeddingCache, default_cache_dir, encoder_for, write_prompt_embeddings
    from cosmos_t2.spec.job import load_job

    spec = load_job(job, name=name)
    check_output_file(out)
    encoder = encoder_for(tiny=tiny, text_encoder_dir=text_encoder_dir, device=_device(device))
    cache = None if no_cache else EmbeddingCache(cache_dir or default_cache_dir())
    meta = write_prompt_embeddings(out, encoder, spec.prompt, spec.negative_prompt, cache)
    typer.echo(f"{out} ({meta['encoder_label']}, {meta['max_length']} tokens x {meta['dim']} channels)")


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
    device: MaybeDevice = None,
    gpus: Annotated[int, typer.Option("--gpus", help="Processes (one GPU each) under torchrun.")] = 1,
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
) -> None:
    """Run jobs: spec -> controls, masks, embeddings -> diffusion -> <name>.mp4 + <name>.json each.

    Several jobs run in one process, models built and compiled once; a failing job does not stop the others."""
    from cosmos_t2.distributed.launch import maybe_relaunch_under_torchrun

    if _device(device) is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if maybe_relaunch_under_torchrun(gpus, device, sys.argv[1:]):
        return
    from cosmos_t2.pipeline.acceleration import resolve_acceleration
    from cosmos_t2.pipeline.batch import failure_line, load_batch_jobs, run_batch
    from cosmos_t2.pipeline.run import RunOptions, run_on_ranks
    from cosmos_t2.spec.job import load_job
    from cosmos_t2.spec.parse import parse_set_options

    overrides = parse_set_options(set_ or [])
    options = RunOptions(
        out_dir=out_dir,
        device=device,
        tiny=tiny,
        model_dir=model_dir,
        controls_dir=controls_dir,
        masks_dir=masks_dir,
        prompt_embeddings=prompt_embeddings,
        latents_only=latents_only,
        progress="lines" if quiet else "auto",  # auto: the bar on a terminal, lines in a log file
        guardrails=guardrails,
        acceleration=resolve_acceleration(
            device,
            compile=compile,
            compile_mode=compile_mode,
            attn_backend=attn_backend,
            compile_cache=compile_cache,
            use_compile_cache=not no_compile_cache,
        ),
        offload=offload,
        memory_cap_gib=memory_cap,
    )
    single = (
        len(jobs) == 1 and not jobs[0].is_dir() and (name is not None or jobs[0].suffix.lower() != ".jsonl")
    )
    if single:  # one job: its error is the command's error, outputs are rewritten
        spec = load_job(jobs[0], name=name, overrides=overrides)
        if options.out_dir is None:
            if spec.output_dir is None:
                raise CosmosError("no output folder: pass -o DIR or set output_dir in the spec", file=jobs[0])
            options = dataclasses.replace(options, out_dir=spec.output_dir)
        result = run_on_ranks(spec, options)
        for path in (result.video, result.latents, result.sidecar):
            if path is not None:
                typer.echo(str(path))
        return

    def report(outcome: Outcome) -> None:
        if outcome.status == "failed":
            err_console.print(
                f"[bold red]failed:[/] {escape(f'{outcome.name}: {outcome.error}')}",
                highlight=False,
                soft_wrap=True,
            )
        elif outcome.status == "skipped":
            typer.echo(f"skipped {outcome.name} (outputs exist; --force reruns it)")
        else:
            for path in (outcome.result.video, outcome.result.latents, outcome.result.sidecar):
                if path is not None:
                    typer.echo(str(path))

    if options.out_dir is None:  # the batch record and every job's outputs go to one folder
        raise CosmosError("several jobs write to one folder: pass -o DIR", file=", ".join(map(str, jobs)))
    result = run_batch(load_batch_jobs(jobs, overrides, name=name), options, force=force, on_outcome=report)
    if result.failed:
        raise CosmosError(failure_line(result))


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
) -> None:
    """Decode latents with the VAE into an mp4 (and its sidecar JSON)."""
    from cosmos_t2.pipeline.guardrails import load_guardrails
    from cosmos_t2.pipeline.output import render_latents

    check_destination(out.parent, [out.name, out.with_suffix(".json").name])
    if out.is_dir():
        raise CosmosError("the output path is a folder; give an .mp4 file name", file=out)
    if _device(device) is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    check = load_guardrails(device).check_video if guardrails else None
    render_latents(latents, out, tiny=tiny, model_dir=model_dir, device=device, check_video=check)
    typer.echo(str(out))


_DEPTH_DIR_HELP = "Depth Anything V2 folder (else $COSMOS_T2_DEPTH_MODEL_DIR)."
_SEG_DIR_HELP = "SAM2 video folder (else $COSMOS_T2_SAM2_MODEL_DIR)."
_GROUNDING_DIR_HELP = "GroundingDINO folder (else $COSMOS_T2_GROUNDING_MODEL_DIR)."


@app.command()
def controls(
    job: JobArg,
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="Folder for <modality>.mkv/.mp4/.json.")],
    input_path: ModelSizeInput = None,
    device: MaybeDevice = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="Decode at the tiny model's resolution.")] = False,
    name: SampleName = None,
    depth_model_dir: Annotated[Path | None, typer.Option(help=_DEPTH_DIR_HELP)] = None,
    seg_model_dir: Annotated[Path | None, typer.Option(help=_SEG_DIR_HELP)] = None,
    grounding_model_dir: Annotated[Path | None, typer.Option(help=_GROUNDING_DIR_HELP)] = None,
) -> None:
    """Compute every control of the job that has no control_path (lossless .mkv + .mp4 preview + .json)."""
    import json

    from cosmos_t2.controls.models import ModelPaths
    from cosmos_t2.controls.run import controls_for_job
    from cosmos_t2.spec.job import load_job

    models = ModelPaths.from_env(depth_model_dir, seg_model_dir, grounding_model_dir)
    check_destination(out_dir)
    written = controls_for_job(
        load_job(job, name=name), out_dir, input_path=input_path, models=models, device=_device(device),
        resolution="tiny" if tiny else None,
    )  # fmt: skip
    typer.echo(json.dumps({m: str(p) for m, p in written.items()}, indent=2))


@app.command()
def masks(
    job: JobArg,
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="Folder for <modality>_mask.mkv/.mp4/.json.")],
    input_path: ModelSizeInput = None,
    device: MaybeDevice = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="Decode at the tiny model's resolution.")] = False,
    name: SampleName = None,
    seg_model_dir: Annotated[Path | None, typer.Option(help=_SEG_DIR_HELP)] = None,
    grounding_model_dir: Annotated[Path | None, typer.Option(help=_GROUNDING_DIR_HELP)] = None,
) -> None:
    """Write the binary mask (white = control applies) of every control with mask_path or mask_prompt."""
    import json

    from cosmos_t2.controls.masks import masks_for_job
    from cosmos_t2.controls.models import ModelPaths
    from cosmos_t2.spec.job import load_job

    models = ModelPaths.from_env(seg_model_dir=seg_model_dir, grounding_model_dir=grounding_model_dir)
    check_destination(out_dir)
    written = masks_for_job(
        load_job(job, name=name), out_dir, input_path=input_path, models=models, device=_device(device),
        resolution="tiny" if tiny else None,
    )  # fmt: skip
    typer.echo(json.dumps({m: str(p) for m, p in written.items()}, indent=2))


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="The workflow's results folder (a run folder per label).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The HTML file to write.")] = Path("report.html"),
    metrics: Annotated[bool, typer.Option(help="Score outputs against their controls.")] = True,
    metric_frames: Annotated[int, typer.Option(help="Frames per video the metrics look at.")] = 16,
    embed_limit_mb: Annotated[float, typer.Option(help="Inline previews up to this size.")] = 8.0,
    depth_model_dir: Annotated[Path | None, typer.Option(help="Also score depth controls (si-RMSE).")] = None,
    device: Annotated[
        str, typer.Option(help="Where the depth model runs: cpu or cuda.", callback=_device_option)
    ] = "cpu",
    sweep: Annotated[
        Path | None,
        typer.Option(
            help="Report only this sweep's jobs (its manifest.json); other jobs on disk are listed apart."
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML report: jobs, costs per rule and hardware, previews, control fidelity."""
    from cosmos_t2.report.build import ReportOptions, build_report

    _device(device)
    check_output_file(out)
    options = ReportOptions(
        metrics=metrics,
        metric_frames=metric_frames,
        embed_limit_mb=embed_limit_mb,
        depth_model_dir=depth_model_dir,
        device=device,
        sweep=sweep,
    )
    typer.echo(build_report(results, out, options))


# --- models: the real weights -------------------------------------------------------------------

models_app = typer.Typer(
    help="Get and verify the real model folder (--model-dir): checkpoints, VAE, encoders, control models.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

Modalities = Annotated[
    str, typer.Option("--modalities", help="Comma-separated controls whose checkpoints to cover.")
]
Distilled = Annotated[bool, typer.Option("--distilled", help="Also the 4-step distilled edge model.")]
TextEncoder = Annotated[
    bool, typer.Option("--text-encoder/--no-text-encoder", help="Cosmos-Reason1-7B (text_encoder/).")
]
ImageEncoder = Annotated[
    bool,
    typer.Option("--image-encoder/--no-image-encoder", help="SigLIP2 (image_encoder/), for style images."),
]
ControlModels = Annotated[
    bool,
    typer.Option(
        "--control-models/--no-control-models", help="Depth Anything (depth), GroundingDINO + SAM2 (seg)."
    ),
]


def _selection(
    modalities: str, distilled: bool, text_encoder: bool, image_encoder: bool, control: bool
) -> Selection:
    from cosmos_t2.controls.registry import MODALITIES
    from cosmos_t2.pipeline.official import Selection

    names = tuple(m.strip() for m in modalities.split(",") if m.strip())
    unknown = [m for m in names if m not in MODALITIES]
    if unknown or not names:
        raise CosmosError(
            f"unknown modality {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODALITIES)}",
            key="--modalities",
        )
    return Selection(names, distilled, text_encoder, image_encoder, control)


@models_app.command("fetch")
def models_fetch(
    folder: Annotated[Path, typer.Argument(help="The model folder to lay out (created if absent).")],
    modalities: Modalities = "edge,vis,depth,seg",
    distilled: Distilled = False,
    text_encoder: TextEncoder = True,
    image_encoder: ImageEncoder = False,
    control_models: ControlModels = True,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Hugging Face hub cache (default: HF_HUB_CACHE).")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", "--mirror", help="A Hub mirror's URL (default: HF_ENDPOINT).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Only the local hub cache (as HF_HUB_OFFLINE=1).")
    ] = False,
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy files instead of linking into the cache.")
    ] = False,
) -> None:
    """Download the official files (or take them from a hub cache / mirror) and lay out FOLDER."""
    from cosmos_t2.pipeline.hub import fetch_folder

    selection = _selection(modalities, distilled, text_encoder, image_encoder, control_models)
    done = fetch_folder(
        folder,
        selection,
        cache_dir=cache_dir,
        endpoint=endpoint,
        offline=offline,
        copy=copy,
    )
    for item, _ in done:
        typer.echo(f"{folder / item.slot}  <- {item.source}  [{item.licence}]")
    typer.echo(f"check it with: cosmos-t2 models check {folder} --modalities {modalities}")


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count} B"


@models_app.command("check")
def models_check(
    folder: Annotated[Path, typer.Argument(help="The model folder (--model-dir) to verify.")],
    modalities: Modalities = "edge,vis,depth,seg",
    distilled: Distilled = False,
    text_encoder: TextEncoder = True,
    image_encoder: ImageEncoder = False,
    control_models: ControlModels = True,
    hashes: Annotated[
        bool, typer.Option("--hash/--no-hash", help="Compare sha256 where the fetch manifest knows it.")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Verify FOLDER: every file present, each checkpoint of its modality, sizes, sha256 where known."""
    import json

    from cosmos_t2.pipeline.hub import check_folder, reports_json

    selection = _selection(modalities, distilled, text_encoder, image_encoder, control_models)
    reports = check_folder(folder, selection, hashes=hashes)
    if json_out:
        typer.echo(json.dumps(reports_json(reports), indent=2))
    else:
        for r in reports:
            size = "" if r.size_bytes is None else f" {_size(r.size_bytes)}"
            typer.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.slot:<20}{size}  {r.detail}")
    failed = [r.slot for r in reports if not r.ok]
    if failed:
        raise CosmosError(f"model folder check failed at {', '.join(failed)}", file=folder)


def main() -> None:
    """Entry point that turns CosmosError and OSError into one red line and exit code 2.

    Warnings (torch's, transformers', ours) are held until the command ends: shown after a success,
    dropped after a failure, so the error line is the one thing a failed command prints (--debug shows
    them and the traceback).
    """
    held: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as held:
            app()
    except (CosmosError, OSError) as exc:
        if _state["debug"]:
            _replay(held)
            raise
        line = str(exc) if isinstance(exc, CosmosError) else os_error_line(exc)
        line = " ".join(line.split())  # one line, whatever a library put in its message
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except SystemExit:
        _replay(held)
        raise


def _replay(held: list[warnings.WarningMessage]) -> None:
    for w in held:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


if __name__ == "__main__":
    main()
