"""Seg control: GroundingDINO boxes on the first frame, SAM2 video propagation, the official colouring.

Follows `VideoSegmentationModel` (cosmos_transfer2/_src/transfer2/auxiliary/sam2/sam2_model.py) in prompt
mode: GroundingDINO on frame 0 with box threshold 0.15 and text threshold 0.25 (retried at 0.1 / 0.1 when
nothing is found), boxes sorted by score, each box one SAM2 object on frame 0, masks propagated through
the clip and thresholded at logit 0. `convert_masks_to_frames` then keeps at most 100 objects and
`segmentation_color_mask` (transfer2/datasets/augmentors/seg.py) paints them, largest first, each in a
random colour (hue U(0,1), saturation U(0.1,1), value U(0.2,1)) on black. Differences, on purpose:
- colours come from a seeded generator (upstream's are unseeded, so every run differs);
- the frames go to SAM2 as they are (upstream round-trips them through JPEG files), at the model size
  (upstream segments the source video, writes an mp4 and resizes it with INTER_NEAREST);
- transformers' Sam2VideoProcessor needs torchvision, which has no build for this torch here; its work
  (bilinear resize to the model's square input, ImageNet normalisation, box scaling) is done here.
"""

from __future__ import annotations

import colorsys
import logging
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from cosmos_t2.controls.models import (
    GroundingModel,
    ModelPaths,
    Sam2Model,
    autocast,
    load_grounding_model,
    load_sam2_model,
)
from cosmos_t2.errors import CosmosError

log = logging.getLogger(__name__)

BOX_THRESHOLDS = ((0.15, 0.25), (0.1, 0.1))  # (box, text) thresholds, then the retry
MAX_OBJECTS = 100


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the frame
    score: float
    label: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_boxes(image: np.ndarray, prompt: str, grounding: GroundingModel) -> list[Detection]:
    """GroundingDINO detections of `prompt` in one (H, W, 3) uint8 frame, best first."""
    inputs = grounding.processor(images=image, text=prompt, return_tensors="pt").to(grounding.device)
    with torch.inference_mode():
        outputs = grounding.model(**inputs)
    for box_threshold, text_threshold in BOX_THRESHOLDS:
        result = grounding.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=box_threshold,
            text_threshold=text_threshold,
            target_sizes=[image.shape[:2]],
        )[0]
        if len(result["boxes"]):
            break
    order = torch.argsort(result["scores"].float().cpu(), descending=True, stable=True).tolist()
    boxes, scores = result["boxes"].float().cpu().tolist(), result["scores"].float().cpu().tolist()
    labels = list(result.get("text_labels", [prompt] * len(boxes)))
    return [Detection(tuple(boxes[i]), scores[i], str(labels[i])) for i in order]


def propagate_masks(frames: np.ndarray, boxes: list[tuple[float, ...]], sam2: Sam2Model) -> np.ndarray:
    """SAM2 masks of the objects in `boxes` (given on frame 0) through the clip: (N, T, H, W) bool."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    num_frames, height, width, _ = frames.shape
    device, size = sam2.device, sam2.image_size
    video = rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "t h w c -> t c h w")
    video = F.interpolate(video.float(), size=(size, size), mode="bilinear", antialias=True) / 255.0
    mean = torch.tensor(sam2.mean)[:, None, None]
    std = torch.tensor(sam2.std)[:, None, None]
    session = Sam2VideoInferenceSession(
        video=(video - mean) / std,
        video_height=height,
        video_width=width,
        inference_device=device,
        inference_state_device=device,
        video_storage_device=device,
        dtype=torch.float32,
    )
    to_model = torch.tensor([size / width, size / height] * 2, dtype=torch.float32)
    corner_labels = torch.tensor([[[2, 3]]], dtype=torch.int32)  # SAM's labels of a box's two corners
    for obj_id, box in enumerate(boxes):
        corners = (torch.tensor(box, dtype=torch.float32) * to_model).reshape(1, 1, 2, 2)
        obj_idx = session.obj_id_to_idx(obj_id)
        session.add_point_inputs(obj_idx, 0, {"point_coords": corners, "point_labels": corner_labels})
    session.obj_with_new_inputs = list(range(len(boxes)))

    masks = np.zeros((len(boxes), num_frames, height, width), dtype=bool)
    with torch.inference_mode(), autocast(device):
        for output in sam2.model.propagate_in_video_iterator(session, start_frame_idx=0):
            # SAM2's video predictor scales its low-res logits straight to the video size
            logits = F.interpolate(
                output.pred_masks.float(), size=(height, width), mode="bilinear", align_corners=False
            )
            hits = (logits[:, 0] > 0).cpu().numpy()  # one device-to-host copy per frame, not per object
            masks[list(output.object_ids), output.frame_idx] = hits
    return masks


def distinct_colors(count: int, seed: int = 0) -> np.ndarray:
    """`count` random RGB colours drawn as upstream's generate_distinct_colors: (count, 3) uint8."""
    rng = random.Random(seed)
    colors = []
    for _ in range(count):
        hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.1, 1), rng.uniform(0.2, 1.0)
        colors.append((np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255).astype(np.uint8))
    return np.stack(colors) if colors else np.zeros((0, 3), dtype=np.uint8)


def color_masks(masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, T, H, W) object masks -> (T, H, W, 3) uint8: largest first, smaller ones painted over them."""
    _, num_frames, height, width = masks.shape
    out = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    order = sorted(range(len(masks)), key=lambda i: int(np.count_nonzero(masks[i])), reverse=True)
    for color, i in zip(distinct_colors(len(masks), seed), order, strict=True):
        out[masks[i]] = color
    return out


def segment_video(
    frames: np.ndarray, prompt: str, models: ModelPaths, device: torch.device
) -> tuple[np.ndarray, list[Detection]]:
    """Object masks (N, T, H, W) of what `prompt` names, found on frame 0 and tracked; N may be 0."""
    sam2_dir, grounding_dir = models.require_all("seg_model_dir", "grounding_model_dir")
    grounding = load_grounding_model(grounding_dir, device)
    sam2 = load_sam2_model(sam2_dir, device)
    detections = detect_boxes(np.ascontiguousarray(frames[0]), prompt, grounding)[:MAX_OBJECTS]
    if not detections:
        return np.zeros((0, *frames.shape[:3]), dtype=bool), []
    return propagate_masks(frames, [d.box for d in detections], sam2), detections


def seg_control(
    frames: np.ndarray, prompt: str | None, models: ModelPaths, device: torch.device, color_seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Seg control video of (T, H, W, 3) uint8 frames for `prompt`, and what produced it."""
    if not prompt or not prompt.strip():
        raise CosmosError(
            "seg is computed from the video but control_prompt is empty: name the objects to segment "
            "(e.g. 'car. road. tree.') or give a precomputed control_path",
            key="seg.control_prompt",
        )
    masks, detections = segment_video(frames, prompt, models, device)
    if not detections:
        raise CosmosError(
            f"GroundingDINO found nothing matching {prompt!r} on the first frame; name objects that are "
            "visible there, or give a precomputed control_path",
            key="seg.control_prompt",
        )
    info = {
        "control_prompt": prompt,
        "grounding_model_dir": str(models.grounding_model_dir),
        "seg_model_dir": str(models.seg_model_dir),
        "box_thresholds": [list(pair) for pair in BOX_THRESHOLDS],
        "color_seed": color_seed,
        "detections": [d.to_dict() for d in detections],
    }
    return color_masks(masks, color_seed), info


def compute(
    frames: np.ndarray, params: Mapping[str, Any], models: ModelPaths, device: torch.device
) -> tuple[np.ndarray, dict[str, Any]]:
    """The registry's entry point: the seg control of `frames` for the block's control_prompt."""
    return seg_control(
        frames, params.get("control_prompt"), models, device, int(params.get("color_seed") or 0)
    )
