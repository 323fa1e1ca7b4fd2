"""The `cosmos-t2` Typer app, the option types its commands share, and the global --debug flag."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape

from cosmos_t2 import __version__
from cosmos_t2.distributed.launch import under_torchrun
from cosmos_t2.errors import CosmosError

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


def _device_option(ctx: typer.Context, value: str | None) -> str | None:
    """Check --device when it is parsed: an unknown or absent device is one line before any work.

    Not for `infer --server` (an eager option, so parsed first): the server checks it, and the client
    stays a process that never imports torch."""
    if value is None or ctx.params.get("server"):
        return value
    from cosmos_t2.model.device import resolve_device

    resolve_device(value)
    return value


def positive(ctx: typer.Context, param: click.Parameter, value: float | None) -> float | None:
    """Check a numeric option as it is parsed: finite and > 0, else one line naming the option.

    Every count, size and duration option uses this one check, so `nan`, `inf` (also `1e400`, which
    parses as inf), 0 and negatives never reach the library (where nan ends a server at once, and 0 GPUs
    divides by zero)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise CosmosError(f"{param.opts[0]} must be a finite number greater than 0, not {value!r}")
    return value


def not_negative(ctx: typer.Context, param: click.Parameter, value: float | None) -> float | None:
    """As `positive`, where 0 means "none" (e.g. untimed warm-up steps)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise CosmosError(f"{param.opts[0]} must be a finite number of at least 0, not {value!r}")
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
    typer.Option(
        "--memory-cap", help="GiB: plan for (and on CUDA hold the process to) this much.", callback=positive
    ),
]
ModelSizeInput = Annotated[
    Path | None, typer.Option("--input", help="Model-size input (default DIR/input.mkv, else decoded).")
]


def replay_warnings(held: list[warnings.WarningMessage]) -> None:
    """Show warnings held back while a command ran (main's, and a served job's on the server)."""
    for w in held:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


def print_error(line: str) -> None:
    """A failed command's one red line on stderr (main's, and a served job's on the server)."""
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


def default_device(name: str | None) -> str:
    """A command's --device (already checked by `_device_option`), or CUDA when present, else the CPU."""
    from cosmos_t2.model.device import resolve_device

    return name if name is not None else resolve_device(None).type


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    gpu_slots: Annotated[
        int | None,
        typer.Option(
            "--gpu-slots",
            help="Run on one GPU of N, the first that no other such process holds (waits while all are "
            "taken): N concurrent jobs get N different GPUs. Sets CUDA_VISIBLE_DEVICES.",
            callback=positive,
        ),
    ] = None,
    gpu_slot_wait: Annotated[
        float | None,
        typer.Option(
            "--gpu-slot-wait", help="Give up after this many seconds (default: wait).", callback=positive
        ),
    ] = None,
) -> None:
    _state["debug"] = debug
    # Before any command imports torch: the slot's device must be the only one CUDA sees. A torchrun
    # rank takes none; its launcher chose the devices of the whole job.
    if gpu_slots is not None and not under_torchrun():
        from cosmos_t2.service.slots import use_gpu_slot

        use_gpu_slot(gpu_slots, timeout=gpu_slot_wait)  # held until this process ends


@app.command()
def version() -> None:
    """Print the version of cosmos-t2."""
    typer.echo(__version__)


# --- commands added by each stage go below; keep each one thin -------------------------------
