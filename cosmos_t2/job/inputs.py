"""A job's pixel inputs at the model resolution: input frames, one control video per modality, masks.

Everything here is checked before any model is built: a control or mask video whose frame count differs
from the input's is an error naming the file. Sources, in order of preference:
- controls: `control_path` (resized with the official per-modality interpolation, `read_and_process_control_input`:
  the registry's `Modality.interpolation`), else `CONTROLS_DIR/<modality>.mkv` written by
  `cosmos-t2 controls`, else computed here from the input (`cosmos_t2.controls.compute_control`);
- masks: `MASKS_DIR/<modality>_mask.mkv` written by `cosmos-t2 masks`, else `mask_path` (video or shapes),
  else `mask_prompt` segmented here. An all-white mask counts as no mask, as upstream;
- the guided-generation mask (`guided_generation_mask`), as weights in [0, 1] (`cosmos_t2.job.guided`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cosmos_t2.controls.compute import compute_control
from cosmos_t2.controls.masks import binarize_mask_frames, load_mask, mask_from_prompt
from cosmos_t2.controls.models import ModelPaths
from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.guided import load_guided_mask
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.video import read_at_model_resolution, read_video, resize_to_model


@dataclass
class JobInputs:
    """Frames are (T, H, W, 3) uint8 RGB at the model size; masks (T, H, W) bool; guided_mask (T, H', W')
    float32 in [0, 1] (its own model size for a mask video), None without guided generation."""

    frames: torch.Tensor
    fps: float
    source_size: tuple[int, int]  # (height, width) of the input video
    controls: dict[str, torch.Tensor]
    sources: dict[str, str] = field(default_factory=dict)  # modality (or "<m>_mask") -> where it came from
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    guided_mask: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def _require_frames(count: int, expected: int, path: Path, key: str) -> None:
    if count != expected:
        raise CosmosError(
            f"has {count} frames but the input video has {expected} (after max_frames); "
            "control and mask videos must match the input frame for frame",
            file=path,
            key=key,
        )


def _control(
    spec: Spec,
    modality: str,
    frames: torch.Tensor,
    controls_dir: Path | None,
    device: str,
    models: ModelPaths | None = None,
) -> tuple[torch.Tensor, str]:
    block = spec.controls[modality]
    height, width = int(frames.shape[1]), int(frames.shape[2])
    if block.control_path is not None:
        video = read_video(block.control_path, max_frames=spec.max_frames)
        _require_frames(video.num_frames, frames.shape[0], block.control_path, f"{modality}.control_path")
        resized = resize_to_model(
            video.frames, height, width, interpolation=MODALITIES[modality].interpolation
        )
        return resized, f"file {block.control_path}"
    cached = controls_dir / f"{modality}.mkv" if controls_dir is not None else None
    if cached is not None and cached.is_file():
        video = read_video(cached, max_frames=spec.max_frames)
        _require_frames(video.num_frames, frames.shape[0], cached, modality)
        if video.frames.shape[1:3] != frames.shape[1:3]:
            raise CosmosError(
                f"is {video.height}x{video.width} but the model runs at {height}x{width} "
                "(made for another resolution? run `cosmos-t2 controls` again)",
                file=cached,
            )
        return video.frames, f"controls-dir {cached}"
    computed = compute_control(modality, frames, block, models=models, device=device)
    return torch.from_numpy(np.ascontiguousarray(computed)), "computed"


def _mask(
    spec: Spec,
    modality: str,
    frames: torch.Tensor,
    masks_dir: Path | None,
    device: str,
    models: ModelPaths | None = None,
) -> tuple[np.ndarray | None, str]:
    block = spec.controls[modality]
    num, height, width = (int(s) for s in frames.shape[:3])
    cached = masks_dir / f"{modality}_mask.mkv" if masks_dir is not None else None
    if cached is not None and cached.is_file():  # made by `cosmos-t2 masks` from this very input
        return load_mask(cached, height, width, num), f"masks-dir {cached}"
    if block.mask_path is not None:
        if block.mask_path.suffix.lower() == ".json":
            return load_mask(block.mask_path, height, width, num), f"file {block.mask_path}"
        video = read_video(block.mask_path, max_frames=spec.max_frames)
        _require_frames(video.num_frames, num, block.mask_path, f"{modality}.mask_path")
        return binarize_mask_frames(video.frames, height, width), f"file {block.mask_path}"
    if block.mask_prompt:
        mask, _ = mask_from_prompt(frames.numpy(), block.mask_prompt, models or ModelPaths.from_env(), device)
        return mask, f"prompt {block.mask_prompt!r}"
    return None, "none"


def load_inputs(
    spec: Spec,
    *,
    controls_dir: Path | None = None,
    masks_dir: Path | None = None,
    device: str = "cpu",
    models: ModelPaths | None = None,
) -> JobInputs:
    """Read the input, every control and every mask at the model resolution of `spec.resolution`; depth and
    seg models from `models` (default: the options' environment variables)."""
    video, source_size = read_at_model_resolution(
        spec.video_path, spec.resolution, max_frames=spec.max_frames
    )
    frames = video.frames
    inputs = JobInputs(frames=frames, fps=video.fps, source_size=source_size, controls={})
    for modality in spec.controls:
        inputs.controls[modality], inputs.sources[modality] = _control(
            spec, modality, frames, controls_dir, device, models
        )
        mask, source = _mask(spec, modality, frames, masks_dir, device, models)
        if mask is not None and not mask.all():  # all white = no mask, as upstream
            inputs.masks[modality] = torch.from_numpy(mask)
            inputs.sources[f"{modality}_mask"] = source
    inputs.guided_mask = load_guided_mask(spec, inputs.num_frames, inputs.size)
    if inputs.guided_mask is not None:
        inputs.sources["guided_generation_mask"] = f"file {spec.guided_generation_mask}"
    return inputs


def to_model_video(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, H, W) float in [-1, 1], as upstream's uint8_to_normalized_float."""
    return (frames.permute(3, 0, 1, 2)[None].float() / 127.5) - 1.0


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """(1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8, as upstream's normalized_float_to_uint8."""
    return (video[0].float() * 127.5 + 127.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).contiguous()
