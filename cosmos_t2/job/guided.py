"""Guided generation: keep the input's content where a mask says so, for the first denoising steps.

What the official inference does (nvidia-cosmos/cosmos-transfer2.5,
`cosmos_transfer2/_src/transfer2/inference/inference_pipeline.py`: `_read_guided_generation_mask`,
`construct_latent_weight_map`, the chunk loop of `generate_img2world`; the sampler loop in
`cosmos_transfer2/_src/transfer2/models/vid2vid_model_control_vace_rectified_flow.py`), and so what this does:

- The mask file is a video (upstream: .mp4; here any video PyAV decodes) read like the input video
  (resized to the model resolution with INTER_AREA, `max_frames` applied); channel 0 / 255 is the weight,
  so grey levels blend softly. Or a .npz whose `arr_0` is a (T, H, W) label array: labels not in
  `guided_generation_foreground_labels` become 0 (when the key is given), every non-zero label 255, then
  resized to the input's model size with INTER_LINEAR, and / 255.
- White (1) = guided: per chunk, for sampler steps 0..step_threshold (counted from 0, so the default 25
  guides 26 steps; a threshold at or past the step count guides every step), the network input there is
  replaced by the chunk's input-video latent noised to the step's sigma with the chunk's initial noise,
  (1 - sigma) * x0 + sigma * noise. Outside the mask, and after the threshold, the sampler runs freely.
- x0 is the VAE latent of the chunk's input frames (the same frames `sigma_max` starts from); the mask is
  sliced to the chunk's frames (mirrored past the end, as the input is) and resized to the latent grid by
  the control-mask rule (`controls.masks.mask_to_latent_grid`: frame 0 alone to latent frame 0, each next 4
  frames trilinearly to one latent frame, bilinear in space; the same numbers as upstream's per-group
  interpolation). Conditioning frames carried over from the previous chunk still go in clean: the blend
  comes first, the conditioning overwrite after it, as upstream's `denoise` does.
- The distilled 4-step model's sampler (`Cosmos2InteractiveModel.generate_samples_from_batch`) never reads
  the guidance upstream; here that combination is an error instead of a silently ignored key.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cosmos_t2.controls.masks import mask_to_latent_grid
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.chunking import Chunk
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.sampling.unipc import GuidedGeneration
from cosmos_t2.video import read_at_model_resolution, resize_to_model

KEY = "guided_generation_mask"


def load_guided_mask(spec: Spec, num_frames: int, size: tuple[int, int]) -> torch.Tensor | None:
    """The spec's guided-generation mask as (num_frames, H, W) float32 weights in [0, 1], or None.

    `size` is the input's model (height, width); a label array is resized to it, a mask video to its own
    model size (the latent resize then stretches it, as upstream). A mask shorter than the input (after
    max_frames) is an error; a longer one is cut.
    """
    path = spec.guided_generation_mask
    if path is None:
        return None
    if path.suffix.lower() == ".npz":
        weights = _label_mask(path, spec.guided_generation_foreground_labels, spec.max_frames, size)
    else:
        try:
            video, _ = read_at_model_resolution(path, spec.resolution, max_frames=spec.max_frames)
        except CosmosError as exc:  # the reader names the file; add which key pointed at it
            raise CosmosError(exc.reason, file=exc.file or path, key=KEY) from exc
        weights = video.frames[..., 0].float() / 255.0
    if weights.shape[0] < num_frames:
        raise CosmosError(
            f"has {weights.shape[0]} frames but the input video has {num_frames} (after max_frames); "
            "the mask must cover every input frame",
            file=path,
            key=KEY,
        )
    return weights[:num_frames].contiguous()


def _label_mask(
    path: Path, labels: tuple[int, ...] | None, max_frames: int | None, size: tuple[int, int]
) -> torch.Tensor:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "arr_0" not in data:
                raise CosmosError(
                    f"a .npz mask needs an 'arr_0' array (T, H, W), found {sorted(data.files)}",
                    file=path,
                    key=KEY,
                )
            frames = np.asarray(data["arr_0"])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CosmosError(f"cannot read the .npz mask ({exc})", file=path, key=KEY) from exc
    if frames.ndim != 3 or not (np.issubdtype(frames.dtype, np.number) or frames.dtype == bool):
        raise CosmosError(
            f"'arr_0' must be a (T, H, W) array of labels, got {frames.dtype} {frames.shape}",
            file=path,
            key=KEY,
        )
    if frames.shape[0] == 0:
        raise CosmosError("'arr_0' has no frames", file=path, key=KEY)
    if max_frames is not None:
        frames = frames[:max_frames]
    foreground = np.isin(frames, labels) if labels is not None else frames != 0
    binary = np.repeat((foreground.astype(np.uint8) * 255)[..., None], 3, axis=-1)
    resized = resize_to_model(torch.from_numpy(binary), *size, interpolation=cv2.INTER_LINEAR)
    return resized[..., 0].float() / 255.0


def chunk_guide(mask: torch.Tensor, chunk: Chunk, x0: torch.Tensor, step_threshold: int) -> GuidedGeneration:
    """The sampler's guidance for one chunk: x0 (1, C, T, h, w) its input latent, mask the job's weights."""
    _, _, t, h, w = x0.shape
    window = mask[list(chunk.frame_indices)]
    latent_mask = mask_to_latent_grid(window, t, h, w)[None, None].to(x0.device)
    return GuidedGeneration(x0=x0.float(), mask=latent_mask, step_threshold=step_threshold)


def refuse_distilled(spec: Spec, distilled: bool) -> None:
    """Upstream's distilled sampler drops the guidance without a word; say so instead of doing the same."""
    if distilled and spec.guided_generation_mask is not None:
        raise CosmosError(
            "the distilled 4-step edge model does not apply guided generation (upstream ignores it); "
            "remove the key or run the full edge model",
            file=spec.guided_generation_mask,
            key=KEY,
        )


def guided_record(spec: Spec, mask: torch.Tensor | None) -> dict[str, Any] | None:
    """What the sidecar says about guided generation: None when it was off."""
    if mask is None:
        return None
    return {
        "mask": str(spec.guided_generation_mask),
        "step_threshold": spec.guided_generation_step_threshold,
        "guided_steps": min(spec.guided_generation_step_threshold + 1, spec.num_steps),
        "foreground_labels": (
            list(spec.guided_generation_foreground_labels)
            if spec.guided_generation_foreground_labels is not None
            else None
        ),
        "coverage": round(float(mask.mean()), 6),
    }
