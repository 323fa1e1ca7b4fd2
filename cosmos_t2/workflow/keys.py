"""Content keys: what each stage of one resolved sample reads, hashed.

A stage's output path is its key, and its key is a hash of exactly what that stage reads: the decoded
input depends on the video's bytes, the resolution and the frame limit; the control videos add the
modalities and presets; the prompt embeddings depend on the prompt text and the encoder; the diffusion
job depends on everything. Files enter by their contents (sha256, remembered by size and mtime in a small
on-disk cache), never by their paths, so moving an input keeps its results and editing it does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_t2.atomic import write_text_atomic
from cosmos_t2.controls.registry import MODALITIES, Modality
from cosmos_t2.errors import CosmosError

KEY_LEN = 16
# Resolved fields the decoded input depends on (besides the video's bytes).
DECODE_FIELDS = ("resolution", "max_frames")
# Top-level fields that name files; their contents, not their paths, enter the keys.
FILE_FIELDS = ("video_path", "image_context_path", "guided_generation_mask")
PROMPT_FIELDS = ("prompt", "prompt_path", "negative_prompt")


def stable_hash(obj: Any) -> str:
    """A short, order-independent digest of JSON-like data."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LEN]


class FileHasher:
    """sha256 of file contents, remembered by (size, mtime) so re-planning a big sweep stays fast."""

    def __init__(self, cache_path: Path | None = None) -> None:
        self.cache_path = cache_path
        self._cache: dict[str, list[Any]] = {}
        self._dirty = False
        if cache_path is not None and cache_path.is_file():
            try:
                self._cache = json.loads(cache_path.read_text())
            except (OSError, json.JSONDecodeError):
                self._cache = {}  # a damaged cache only costs re-hashing

    def __call__(self, path: Path) -> str:
        path = path.resolve()
        try:
            st = path.stat()
        except OSError as exc:
            raise CosmosError("file not found", file=path) from exc
        stamp = [st.st_size, st.st_mtime_ns]
        hit = self._cache.get(str(path))
        if hit is not None and hit[:2] == stamp:
            return str(hit[2])
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        self._cache[str(path)] = [*stamp, digest.hexdigest()]
        self._dirty = True
        return digest.hexdigest()

    def save(self) -> None:
        if self.cache_path is None or not self._dirty:
            return
        write_text_atomic(self.cache_path, json.dumps(self._cache, indent=0, sort_keys=True))
        self._dirty = False


def modalities_of(data: Mapping[str, Any]) -> list[str]:
    return [m for m in MODALITIES if isinstance(data.get(m), Mapping)]


@dataclass(frozen=True)
class ModelSettings:
    """The model files each stage reads; part of the keys so a new checkpoint never reuses old files."""

    tiny: bool = True
    model_dir: str | None = None
    text_encoder_dir: str | None = None
    depth_model_dir: str | None = None
    seg_model_dir: str | None = None
    grounding_model_dir: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSettings:
        def opt(key: str) -> str | None:
            return str(config[key]) if config.get(key) else None

        return cls(
            tiny=bool(config.get("tiny", True)),
            model_dir=opt("model_dir"),
            text_encoder_dir=opt("text_encoder_dir"),
            depth_model_dir=opt("depth_model_dir"),
            seg_model_dir=opt("seg_model_dir"),
            grounding_model_dir=opt("grounding_model_dir"),
        )


def _digest_path(path: Path, hasher: Callable[[Path], str]) -> str:
    """Content digest of a file, or of a folder's files (a mask folder) by relative name."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return stable_hash({str(p.relative_to(path)): hasher(p) for p in files})
    return hasher(path)


def job_keys(
    spec: Mapping[str, Any], model: ModelSettings, hasher: Callable[[Path], str]
) -> dict[str, str | None]:
    """The content key of every stage of one resolved sample (`Spec.to_dict()`: defaults filled, paths
    absolute); None where the job does not need that stage.
    """
    mods = modalities_of(spec)
    file_keys = [k for k in FILE_FIELDS if spec.get(k)]
    file_keys += [f"{m}.{k}" for m in mods for k in ("control_path", "mask_path") if spec[m].get(k)]
    files = {k: _digest_path(Path(_lookup(spec, k)), hasher) for k in file_keys}

    decode_params = {k: spec.get(k) for k in DECODE_FIELDS}
    decode = stable_hash(
        {"stage": "decode", "video": files["video_path"], "tiny": model.tiny, **decode_params}
    )

    computed = {
        m: _computed_key(MODALITIES[m], spec[m], spec, model) for m in mods if not spec[m].get("control_path")
    }
    controls = (
        stable_hash({"stage": "controls", "decode": decode, "controls": computed}) if computed else None
    )

    mask_params = {
        m: [files.get(f"{m}.mask_path"), spec[m].get("mask_prompt")]
        for m in mods
        if spec[m].get("mask_path") or spec[m].get("mask_prompt")
    }
    masks = None
    if mask_params:
        masks = stable_hash(
            {
                "stage": "masks",
                "decode": decode,
                "masks": mask_params,
                "seg": [model.seg_model_dir, model.grounding_model_dir],
            }
        )

    encoder = "tiny" if model.tiny else model.text_encoder_dir
    prompt = stable_hash(
        {
            "stage": "prompt",
            "prompt": spec.get("prompt"),
            "negative": spec.get("negative_prompt"),
            "encoder": encoder,
        }
    )
    # Paths are replaced by their files' digests: moving an input keeps its results, editing it does not.
    settings = {k: v for k, v in spec.items() if k not in (*FILE_FIELDS, "output_dir")}
    for m in mods:
        settings[m] = {k: v for k, v in spec[m].items() if k not in ("control_path", "mask_path")}
    job = stable_hash(
        {
            "stage": "job",
            "settings": settings,
            "files": files,
            "keys": [decode, controls, masks, prompt],
            "model": "tiny" if model.tiny else model.model_dir,
        }
    )
    return {"job": job, "decode": decode, "controls": controls, "masks": masks, "prompt": prompt}


def _computed_key(
    modality: Modality, block: Mapping[str, Any], spec: Mapping[str, Any], model: ModelSettings
) -> Any:
    """What a computed control reads besides the decoded input: its spec keys, then its model folders.

    One value stays a scalar and several become a list, in that order, so the keys of the released
    modalities (a preset; the depth folder; seg's prompt and two folders) are those older sweeps made.
    """
    values: list[Any] = [
        block.get(key.name) or (key.default if key.is_preset else spec.get("prompt"))
        for key in modality.spec_keys
    ]
    values += [getattr(model, name) for name in modality.model_fields]
    return values[0] if len(values) == 1 else values


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        node = node[part]
    return node


# Snakemake refuses a wildcard value that ends in one substring repeated 20 times or more (its guard
