"""Where the depth and segmentation models live, and loading them once per process.

The spec has no key for model folders (upstream downloads from the Hugging Face Hub at run time; we never
do). A folder comes from a CLI option or an environment variable, the option winning. Each folder is what
`save_pretrained` writes for the transformers class named below; the official inference uses:
- depth: Video-Depth-Anything (ViT-S); we run Depth Anything V2 (`DepthAnythingForDepthEstimation`, e.g.
  depth-anything/Depth-Anything-V2-Small-hf) per frame and align the frames (see depth.py).
- seg: SAM2 (facebook/sam2-hiera-large) as `Sam2VideoModel`, prompted by boxes from GroundingDINO
  (IDEA-Research/grounding-dino-base) as `GroundingDinoForObjectDetection` + its processor.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cosmos_t2.errors import CosmosError

# field -> (CLI option, environment variable, what it is)
MODEL_DIR_SOURCES: dict[str, tuple[str, str, str]] = {
    "depth_model_dir": ("--depth-model-dir", "COSMOS_T2_DEPTH_MODEL_DIR", "Depth Anything V2"),
    "seg_model_dir": ("--seg-model-dir", "COSMOS_T2_SAM2_MODEL_DIR", "SAM2 video"),
    "grounding_model_dir": ("--grounding-model-dir", "COSMOS_T2_GROUNDING_MODEL_DIR", "GroundingDINO"),
}
# Where `cosmos-t2 models fetch DIR` puts each model: DIR/<folder>. A model folder given to infer is the last
# place looked in, after the option and the environment variable.
FETCHED_FOLDERS: dict[str, str] = {
    "depth_model_dir": "depth_anything",
    "seg_model_dir": "sam2",
    "grounding_model_dir": "grounding_dino",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelPaths:
    """Local folders of the models that compute depth and seg controls (None: not configured)."""

    depth_model_dir: Path | None = None
    seg_model_dir: Path | None = None
    grounding_model_dir: Path | None = None
    # Whether the command has the --*-model-dir options (controls, masks) or only --model-dir (infer): a
    # message recommends only options the command that prints it has.
    has_options: bool = True

    @classmethod
    def from_env(
        cls,
        depth_model_dir: str | Path | None = None,
        seg_model_dir: str | Path | None = None,
        grounding_model_dir: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
        model_dir: Path | None = None,
        has_options: bool = True,
    ) -> ModelPaths:
        """Folders given here (CLI options) win over the COSMOS_T2_*_MODEL_DIR environment variables, and
        those over `model_dir`'s subfolders in the `models fetch` layout (FETCHED_FOLDERS), where present."""
        environ = os.environ if environ is None else environ
        given = {
            "depth_model_dir": depth_model_dir,
            "seg_model_dir": seg_model_dir,
            "grounding_model_dir": grounding_model_dir,
        }
        values: dict[str, Path | None] = {}
        for field, value in given.items():
            value = value or environ.get(MODEL_DIR_SOURCES[field][1]) or None
            if not value and model_dir is not None:
                fetched = Path(model_dir).expanduser() / FETCHED_FOLDERS[field]
                value = fetched if fetched.is_dir() else None
            values[field] = Path(value).expanduser() if value else None
        return cls(**values, has_options=has_options)

    def require(self, field: str) -> Path:
        """The folder for `field`, or a CosmosError saying which option or variable to set."""
        return self.require_all(field)[0]

    def require_all(self, *fields: str) -> list[Path]:
        """The folders for `fields`; one CosmosError naming every missing one's option and variable."""
        missing = [f for f in fields if getattr(self, f) is None]
        if missing:
            needs = "; ".join(
                f"{MODEL_DIR_SOURCES[f][2]}: {self._where(f)} (workflow config key {f})" for f in missing
            )
            raise CosmosError(f"no model folder configured ({needs})")
        for field in fields:
            if not Path(getattr(self, field)).is_dir():
                option, env, what = MODEL_DIR_SOURCES[field]
                origin = f"{option} or {env}" if self.has_options else env
                raise CosmosError(
                    f"{what} model folder does not exist (from {origin})", file=getattr(self, field)
                )
        return [Path(getattr(self, f)) for f in fields]

    def _where(self, field: str) -> str:
        option, env, _ = MODEL_DIR_SOURCES[field]
        if self.has_options:
            return f"pass {option} DIR or set {env}"
        return f"set {env}, or fetch it into --model-dir DIR as DIR/{FETCHED_FOLDERS[field]} (cosmos-t2 models fetch)"


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA (as upstream runs SAM2), a no-op on the CPU."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@dataclass(frozen=True)
class DepthModel:
    processor: Any  # DPT image processor (PIL backend works without torchvision)
    model: Any  # DepthAnythingForDepthEstimation
    device: torch.device


@dataclass(frozen=True)
class GroundingModel:
    processor: Any  # GroundingDinoProcessor
    model: Any  # GroundingDinoForObjectDetection
    device: torch.device


@dataclass(frozen=True)
class Sam2Model:
    model: Any  # Sam2VideoModel
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device


def load_depth_model(path: Path, device: torch.device) -> DepthModel:
    return _load_depth(str(Path(path).resolve()), str(device))


def load_grounding_model(path: Path, device: torch.device) -> GroundingModel:
    return _load_grounding(str(Path(path).resolve()), str(device))


def load_sam2_model(path: Path, device: torch.device) -> Sam2Model:
    return _load_sam2(str(Path(path).resolve()), str(device))


# Cached on (folder, device) so a process that computes several controls or masks loads each model once.
@functools.cache
def _load_depth(path: str, device: str) -> DepthModel:
    from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

    loaded = _processor_and_model(
        "Depth Anything V2", path, device, AutoImageProcessor, DepthAnythingForDepthEstimation
    )
    return DepthModel(*loaded, torch.device(device))


@functools.cache
def _load_grounding(path: str, device: str) -> GroundingModel:
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    loaded = _processor_and_model(
        "GroundingDINO", path, device, AutoProcessor, GroundingDinoForObjectDetection
    )
    return GroundingModel(*loaded, torch.device(device))


def _processor_and_model(
    what: str, path: str, device: str, processor_class: Any, model_class: Any
) -> tuple[Any, Any]:
    """A transformers folder's processor and its model on `device` in eval mode."""
    with _loading(what, path):
        processor = processor_class.from_pretrained(path)
        model = model_class.from_pretrained(path)
    return processor, model.to(device).eval()


@functools.cache
def _load_sam2(path: str, device: str) -> Sam2Model:
    from transformers import Sam2VideoModel

    with _loading("SAM2 video", path):
        model = Sam2VideoModel.from_pretrained(path)
    # transformers' Sam2VideoProcessor needs torchvision, which has no build for this torch here; we do its
    # resize + normalise ourselves (seg.py) with the folder's processor settings when it has them.
    settings = _read_processor_settings(Path(path))
    return Sam2Model(
        model=model.to(device).eval(),
        image_size=int(model.config.image_size),
        mean=tuple(settings.get("image_mean", IMAGENET_MEAN)),
        std=tuple(settings.get("image_std", IMAGENET_STD)),
        device=torch.device(device),
    )


def _read_processor_settings(path: Path) -> dict[str, Any]:
    for name in ("video_preprocessor_config.json", "preprocessor_config.json", "processor_config.json"):
        if (path / name).is_file():
            data = json.loads((path / name).read_text())
            # processor_config.json nests the video/image processor settings
            for key in ("video_processor", "image_processor"):
                if isinstance(data.get(key), dict):
                    data = data[key]
                    break
            if "image_mean" in data:
                return data
    return {}


@contextlib.contextmanager
def _loading(what: str, path: str) -> Iterator[None]:
    """Turn a failed from_pretrained into one CosmosError naming the folder (not an option: the folder may
    have come from infer's --model-dir, a variable or controls' own option); keep transformers'
    weight-loading bar out of the output (a command's stdout is JSON a workflow reads)."""
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CosmosError(f"cannot load the {what} model from this folder: {exc}", file=path) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
