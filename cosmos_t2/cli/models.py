"""`cosmos-t2 models fetch|check`: lay out and verify the real model folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cosmos_t2.cli.app import (
    app,
)
from cosmos_t2.errors import CosmosError

if TYPE_CHECKING:
    from cosmos_t2.weights.official import Selection

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
    from cosmos_t2.weights.official import Selection

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
    from cosmos_t2.weights.hub import fetch_folder

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

    from cosmos_t2.weights.hub import check_folder, reports_json

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
