"""Where a job's weights come from: the model directory and checks on its files (nothing is built here).

Model directory layout (`--model-dir DIR`):

    DIR/edge.safetensors | edge.pt        one official per-modality checkpoint each (backbone + control branch);
    DIR/vis.*  DIR/depth.*  DIR/seg.*     only the modalities a spec uses need to be there
    DIR/edge_distilled.safetensors | .pt  the 4-step distilled edge model (used when DIR has no edge.*)
    DIR/tokenizer.pth | .safetensors      the Wan2.1 VAE
    DIR/text_encoder/                     Cosmos-Reason1-7B for transformers (not needed with --prompt-embeddings)
    DIR/image_encoder/                    SigLIP2 so400m-patch16-naflex (only for a style reference)

Several controls load one control branch per modality, as the official multi-control inference does
(`load_multi_branch_checkpoints`: `control_blocks.*` of file n -> `control_blocks_{n}.*`); we load only
the spec's modalities, since a branch of weight 0 adds exactly nothing. See `checkpoint.load_checkpoint`
for where the backbone comes from.

A checkpoint's modality is known from its name when it carries the official checkpoint's UUID (the file
names on Hugging Face, or the `source` a converted .safetensors records) or from a `modality` metadata
entry; a file whose known modality differs from its slot is refused before anything is built.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class ModelFiles:
    """The files a job will load (None: random tiny weights, or not needed)."""

    checkpoints: dict[str, Path]  # modality -> checkpoint, in the spec's (upstream's) modality order
    vae: Path | None
    text_encoder: Path | None
    image_encoder: Path | None
    distilled: bool  # known from names/metadata; a .pt's DMD2 keys can still reveal it at load time

    def to_dict(self) -> dict[str, object]:
        return {
            "checkpoints": {m: str(p) for m, p in self.checkpoints.items()},
            "vae": None if self.vae is None else str(self.vae),
            "text_encoder": None if self.text_encoder is None else str(self.text_encoder),
            "image_encoder": None if self.image_encoder is None else str(self.image_encoder),
        }


def _first_file(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in CHECKPOINT_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def _safetensors_metadata(path: Path) -> dict[str, str]:
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # a corrupt header: say so now rather than after building models
        raise CosmosError(f"not a readable safetensors file: {exc}", file=path) from exc


def official_uuids() -> dict[str, tuple[str, bool]]:
    """UUID in an official checkpoint's Hugging Face file name (cosmos_oss/checkpoints_transfer2.py)
    -> (modality, distilled), from the control registry."""
    uuids: dict[str, tuple[str, bool]] = {}
    for m in MODALITIES.values():
        uuids.update({uuid: (m.name, False) for uuid in m.checkpoints})
        uuids.update({uuid: (m.name, True) for uuid in m.distilled_checkpoints})
    return uuids


def _distilled_alone(modalities: list[str]) -> bool:
    """A distilled model exists for this control set: one control whose modality has one."""
    entry = MODALITIES.get(modalities[0]) if len(modalities) == 1 else None
    return entry is not None and bool(entry.distilled_checkpoints)


def _link_names(path: Path, hops: int = 8) -> list[str]:
    """The file's name and those along its chain of links: a link into the Hugging Face cache points at
    a snapshot file with the official name, which points at a blob named only by its hash."""
    names = [path.name]
    for _ in range(hops):
        if not path.is_symlink():
            break
        path = path.parent / os.readlink(path)
        names.append(path.name)
    return names


def checkpoint_identity(path: Path) -> tuple[str | None, bool]:
    """(modality or None when unknown, distilled) from the file's names and metadata (no tensors read)."""
    meta = _safetensors_metadata(path)
    names = " ".join([*_link_names(path), meta.get("source", "")]).lower()
    modality = meta.get("modality")
    distilled = meta.get("variant") == "distilled" or "distilled" in names
    official = official_uuids()
    for uuid in _UUID.findall(names):
        if uuid in official:
            modality, distilled = official[uuid][0], official[uuid][1] or distilled
    return modality, distilled


def locate_models(
    model_dir: Path | None,
    modalities: list[str],
    *,
    tiny: bool,
    need_text_encoder: bool,
    need_image_encoder: bool,
    prefer_distilled: bool = False,
) -> ModelFiles:
    """Check the model directory for everything the job needs; raise one clear error otherwise.
    `prefer_distilled` (infer's --distilled): `<control>_distilled.*` before `<control>.*`, which a folder
    filled by `models fetch` and `models fetch --distilled` holds side by side."""
    if model_dir is None:
        if tiny:
            return ModelFiles({}, None, None, None, distilled=False)
        raise CosmosError(
            "no model directory: pass --model-dir DIR (official checkpoints) or --tiny (random tiny model)"
        )
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CosmosError("model directory not found", file=model_dir)
    if prefer_distilled and not _distilled_alone(modalities):
        names = " or ".join(m.name for m in MODALITIES.values() if m.distilled_checkpoints)
        raise CosmosError(f"--distilled: the distilled model runs only with the {names} control alone; the "
                          f"spec uses {', '.join(modalities) or 'no control'}")  # fmt: skip
    checkpoints: dict[str, Path] = {}
    distilled = False
    for modality in modalities:
        stems = (modality, f"{modality}_distilled") if _distilled_alone(modalities) else (modality,)
        if prefer_distilled:
            stems = stems[::-1]
        path = _first_file(model_dir, stems)
        if path is None:
            raise CosmosError(
                f"no {modality} checkpoint: expected {modality}.safetensors or {modality}.pt in the model "
                f"directory (the spec uses the {modality} control)",
                file=model_dir,
            )
        known, is_distilled = checkpoint_identity(path)
        if known is not None and known != modality:
            raise CosmosError(
                f"this is the {known} checkpoint, but it sits in the {modality} slot (the spec's "
                f"{modality} control needs the {modality} model)",
                file=path,
            )
        checkpoints[modality] = path
        distilled = distilled or is_distilled
    if prefer_distilled and not distilled:
        stem = f"{modalities[0]}_distilled"
        raise CosmosError(f"--distilled: no distilled checkpoint: expected {stem}.safetensors or {stem}.pt "
                          "(`cosmos-t2 models fetch --distilled`)", file=model_dir)  # fmt: skip
    if distilled and not _distilled_alone(modalities):
        names = " or ".join(m.name for m in MODALITIES.values() if m.distilled_checkpoints)
        raise CosmosError(
            f"the distilled checkpoint is an {names} model and runs only with the {names} control alone"
        )
    vae = _first_file(model_dir, ("tokenizer",))
    if vae is None:
        raise CosmosError(
            "no VAE: expected tokenizer.pth or tokenizer.safetensors (Wan2.1 VAE)", file=model_dir
        )
    text_encoder = model_dir / "text_encoder" if need_text_encoder else None
    if text_encoder is not None and not text_encoder.is_dir() and not tiny:
        raise CosmosError(
            "no text_encoder/ folder (Cosmos-Reason1); give it, or --prompt-embeddings from encode-prompt",
            file=model_dir,
        )
    image_encoder = model_dir / "image_encoder" if need_image_encoder else None
    if image_encoder is not None and not image_encoder.is_dir() and not tiny:
        raise CosmosError("no image_encoder/ folder (SigLIP2) for the style reference", file=model_dir)
    if tiny:  # tiny-shaped weights from DIR; encoders stay the tiny random ones unless present
        text_encoder = text_encoder if text_encoder is not None and text_encoder.is_dir() else None
        image_encoder = image_encoder if image_encoder is not None and image_encoder.is_dir() else None
    return ModelFiles(checkpoints, vae, text_encoder, image_encoder, distilled=distilled)
