"""Style reference: an image (or one frame of the input video) -> the network's image-context tokens.

What the official inference does (cosmos-transfer2.5 `inference/utils.py: read_and_process_image_context`,
`networks/siglip2.py`, `networks/siglip2_image_context.py`):
- `image_context_path` is an image or a video; `context_frame_index` picks a frame of the *input video*
  instead (it wins over `image_context_path`); without an index the first frame is used.
- The image is resized to the model resolution of the input's aspect ratio and handed, as RGB 0..255, to
  the processor of `google/siglip2-so400m-patch16-naflex` (NaFlex: at most 256 patches of 16x16, padded).
- `Siglip2VisionModel` with `vision_use_head=False`; its `last_hidden_state` (B, 256, 1152) is the image
  context, padding tokens included.
- Without a reference the image context is zeros (B, 256, 1152): `TransferNet` feeds exactly that when
  given None, so the pipeline passes None.

The encoder is loaded through transformers from a local folder (MODEL_DIR/image_encoder: config.json,
preprocessor_config.json, weights). The tiny model is a 2-layer random SigLIP2 of the tiny DiT's width.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cosmos_t2.errors import CosmosError
from cosmos_t2.video import read_video

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TINY_SEED = 3


@dataclass
class ImageEncoder:
    """A SigLIP2 vision tower and its processor."""

    model: Any  # transformers Siglip2VisionModel
    processor: Any  # transformers Siglip2 image processor

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (1, N, D) fp32 tokens."""
        inputs = self.processor(images=[image], return_tensors="pt")
        param = next(self.model.parameters())
        inputs = {k: v.to(param.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(param.dtype)
        return self.model(**inputs).last_hidden_state.float()


def tiny_image_encoder(width: int, tokens: int) -> ImageEncoder:
    """A seeded random SigLIP2 whose tokens fit the tiny DiT (`image_context_dim`, `image_context_tokens`)."""
    from transformers import Siglip2ImageProcessor, Siglip2VisionConfig, Siglip2VisionModel

    config = Siglip2VisionConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_patches=16,
        patch_size=16,
        vision_use_head=False,
    )
    torch.manual_seed(TINY_SEED)
    model = Siglip2VisionModel(config).eval()
    return ImageEncoder(model, Siglip2ImageProcessor(patch_size=16, max_num_patches=tokens))


def load_image_encoder(folder: Path, device: torch.device, dtype: torch.dtype) -> ImageEncoder:
    """The SigLIP2 vision tower from a local folder (no download), without its pooling head."""
    from transformers import AutoConfig, AutoImageProcessor, Siglip2VisionModel

    if not (folder / "config.json").is_file():
        raise CosmosError(
            "image encoder folder missing or without config.json (SigLIP2 so400m-patch16-naflex)", file=folder
        )
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        vision = getattr(config, "vision_config", config)
        vision.vision_use_head = False
        model = Siglip2VisionModel.from_pretrained(folder, config=vision, local_files_only=True, dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CosmosError(f"cannot load the SigLIP2 image encoder: {exc}", file=folder) from exc
    return ImageEncoder(model.to(device).eval(), processor)


def reference_image(
    image_path: Path | None,
    video_path: Path,
    frame_index: int | None,
    size: tuple[int, int],
) -> np.ndarray | None:
    """The style reference as (H, W, 3) uint8 RGB at the model size (height, width), or None.

    A frame index reads that frame of the input video (as upstream: the index wins over the path);
    a video path without an index gives its first frame.
    """
    if frame_index is not None:
        source, index = video_path, frame_index
    elif image_path is not None:
        source, index = image_path, 0
    else:
        return None
    if source.suffix.lower() in IMAGE_SUFFIXES:
        bgr = cv2.imread(str(source), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CosmosError("cannot read the style reference image", file=source, key="image_context_path")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        frames = read_video(source, max_frames=index + 1).frames
        if index >= frames.shape[0]:
            raise CosmosError(
                f"context_frame_index {index} is past the video's {frames.shape[0]} frames",
                file=source,
                key="context_frame_index",
            )
        image = frames[index].numpy()
    height, width = size
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)


def check_reference(image_path: Path | None, frame_index: int | None) -> None:
    """Cheap checks before any model is built (paths exist already: the spec checks that)."""
    if frame_index is None and image_path is not None:
        suffix = image_path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES and suffix not in (".mp4", ".mkv", ".mov", ".avi", ".webm"):
            raise CosmosError(
                f"unsupported style reference type {suffix!r}; use an image or a video",
                file=image_path,
                key="image_context_path",
            )
