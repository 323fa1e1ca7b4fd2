"""The workflow's stage commands: validate, decode, controls, masks, encode-prompt, convert-checkpoint,
report. Each imports its library inside its body (the CLI's start stays light)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cosmos_t2.cli.app import (
    JobArg,
    MaybeDevice,
    MemoryCap,
    ModelSizeInput,
    Offload,
    SampleName,
    _device_option,
    app,
    not_negative,
    positive,
)
from cosmos_t2.cli.infer_job import print_event
from cosmos_t2.cli.serve import DEFAULT_IDLE_S, ServerIdle, ServerOption, prompt_on_server
from cosmos_t2.destination import check_destination, check_output_file
from cosmos_t2.errors import CosmosError

if TYPE_CHECKING:
    from cosmos_t2.controls.models import ModelPaths
    from cosmos_t2.controls.run import StageCompute


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
    gpus: Annotated[
        int, typer.Option("--gpus", help="--estimate: GPUs the job runs on.", callback=positive)
    ] = 1,
    offload: Offload = "auto",
    memory_cap: MemoryCap = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="--estimate: the tiny model (fp32 on CPU).")] = False,
    text_encoder: Annotated[
        bool, typer.Option(help="--estimate: count the text-encoder stage (off: --prompt-embeddings).")
    ] = True,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="--estimate: the network as infer runs it (default: compiled on a GPU).",
        ),
    ] = None,
) -> None:
    """Check spec files and print the resolved spec(s) as JSON (one object, or a list for several)."""
    import json

    from cosmos_t2.jobspec.load import load_batch, write_job_spec
    from cosmos_t2.jobspec.parse import parse_set_options

    if json_out is not None:
        check_output_file(json_out)
    resolved = load_batch(specs, parse_set_options(set_ or []), name=name)
    if estimate:
        from cosmos_t2.job.options import RunSettings
        from cosmos_t2.job.run import effective_spec
        from cosmos_t2.runtime.residency import estimate_job

        # the job as infer would run it: a full-size one on a GPU (this machine may have none), tiny on CPU
        run = RunSettings(
            device="cpu" if tiny else "cuda", compile=compile, offload=offload, memory_cap_gib=memory_cap
        )
        compiled = run.acceleration(run.device).compile
        for spec in resolved:
            typer.echo(spec.name)
            for line in estimate_job(effective_spec(spec, tiny).spec, gpus=gpus, offload=run.offload,
                                     memory_cap_gib=run.memory_cap_gib, tiny=tiny, text_encoder=text_encoder,
                                     compiled=compiled):  # fmt: skip
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

    from cosmos_t2.jobspec.load import load_job
    from cosmos_t2.video import decode_to_model

    spec = load_job(job, name=name)
    check_destination(out_dir, ["input.mkv", "input.json"])
    info = decode_to_model(
        spec.video_path, out_dir, resolution="tiny" if tiny else spec.resolution, max_frames=spec.max_frames
    )
    typer.echo(json.dumps(asdict(info), indent=2))


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
    server: ServerOption = False,
    server_idle: ServerIdle = DEFAULT_IDLE_S,
) -> None:
    """Encode the job's prompt and negative prompt into one .safetensors file (cached per prompt)."""
    from cosmos_t2.service.prompt import PromptArgs, run_encode_prompt

    args = PromptArgs(job, out, tiny=tiny, text_encoder_dir=text_encoder_dir, name=name, cache_dir=cache_dir,
                      no_cache=no_cache, device=device)  # fmt: skip
    if server:
        raise typer.Exit(prompt_on_server(args, idle_timeout=server_idle))
    run_encode_prompt(args, events=print_event)  # the 7B model is loaded only for a prompt the cache misses


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
    from cosmos_t2.controls.models import ModelPaths
    from cosmos_t2.controls.run import compute_missing_controls, missing_control_stems

    models = ModelPaths.from_env(depth_model_dir, seg_model_dir, grounding_model_dir)
    _run_stage(
        job, out_dir, missing_control_stems, compute_missing_controls, models, input_path, device, tiny, name
    )


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
    from cosmos_t2.controls.masks import compute_masks, mask_stems
    from cosmos_t2.controls.models import ModelPaths

    models = ModelPaths.from_env(seg_model_dir=seg_model_dir, grounding_model_dir=grounding_model_dir)
    _run_stage(job, out_dir, mask_stems, compute_masks, models, input_path, device, tiny, name)


def _run_stage(
    job: Path,
    out_dir: Path,
    stems_of: Callable[[Any], list[str]],
    compute: StageCompute,
    models: ModelPaths,
    input_path: Path | None,
    device: str | None,
    tiny: bool,
    name: str | None,
) -> None:
    """`controls` and `masks`: DIR first, then the job; prints stem -> written .mkv as JSON."""
    import json

    from cosmos_t2.controls.run import stage_for_job
    from cosmos_t2.jobspec.load import load_job

    check_destination(out_dir)
    spec = load_job(job, name=name)
    written = stage_for_job(
        spec, out_dir, stems_of(spec), compute, input_path=input_path, models=models, device=device,
        resolution="tiny" if tiny else None,
    )  # fmt: skip
    typer.echo(json.dumps({m: str(p) for m, p in written.items()}, indent=2))


@app.command()
def report(
    results: Annotated[
        Path,
        typer.Argument(
            help="Any folder of cosmos-t2 outputs: a workflow's results (or one run folder), infer or batch outputs."
        ),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="The HTML file to write.")] = Path("report.html"),
    metrics: Annotated[bool, typer.Option(help="Score outputs against their controls.")] = True,
    metric_frames: Annotated[
        int, typer.Option(help="Frames per video the metrics look at.", callback=positive)
    ] = 16,
    embed_limit_mb: Annotated[
        float, typer.Option(help="Inline previews up to this size.", callback=not_negative)
    ] = 8.0,
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
