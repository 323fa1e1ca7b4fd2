"""What each stage of a sweep asks its executor for: a GPU or not, host memory, CPUs and minutes.

Declared here once for every profile (a profile only maps them to a site: partition, GPU model, account).
Host memory (`mem_mb`) follows the job's shape: a stage's request at the reference shape (full size, 720p, 93
frames, one control) is the measured peak RSS with room to spare (docs/benchmarks.md, "Host memory of the GPU
stages"), and a larger job adds what it holds beyond the reference's. What grows with the shape is the video a
stage keeps whole in host memory as uint8 frames (the weights, torch and the CUDA libraries do not grow):

- decode: the input at its own size, twice while its frames are stacked, and the model-size copy it writes;
- controls, masks: the decoded input (twice while stacked) and one model-size video per modality made;
- diffuse: the input and each control and mask at the model size, and one stacking copy;
- encode: the decoded output and its copy at the input's size (keep_input_resolution), times the panels shown
  side by side (input, controls), and one stacking copy.

Each byte past the reference counts MARGIN times (the frames' float and resize copies, the allocator's
slack). A job whose input cannot be read gets the reference's request; the job itself then fails with the
reader's one-line error.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_t2.errors import CosmosError
from cosmos_t2.video import model_resolution, video_header

# stage: (GPU stage, mem_mb at the reference shape, cpus_per_task, runtime in minutes). diffuse and encode:
# the measured peak RSS at the reference (6.8 GB and 4.1 GB) with room for the stage's own variation; the
# stages that load a text, depth or segmentation model are not measured yet and keep a wide margin.
STAGE_NEEDS: dict[str, tuple[bool, int, int, int]] = {
    "decode": (False, 16000, 4, 30),
    "controls": (True, 64000, 8, 60),
    "masks": (True, 64000, 8, 60),
    "prompt": (True, 64000, 8, 30),
    "diffuse": (True, 16000, 16, 120),
    "encode": (True, 12000, 8, 60),
    "bench": (True, 128000, 16, 60),
}
TINY_NEEDS = {"mem_mb": 3000, "cpus_per_task": 1, "runtime": 15}  # peak RSS of a tiny job: under 2 GB
MARGIN = 2
MB = 10**6


@dataclass(frozen=True)
class Footprint:
    """What a job's host memory depends on: its frames, the model's and the input's frame size, the
    modalities, and the panels its video shows side by side."""

    frames: int
    model_size: tuple[int, int]
    source_size: tuple[int, int]
    controls: int = 1
    panels: int = 1  # the output, plus the input (show_input) and the controls (show_control_condition)
    keep_input_resolution: bool = True

    @property
    def model_video(self) -> int:
        return self.frames * self.model_size[0] * self.model_size[1] * 3

    @property
    def source_video(self) -> int:
        return self.frames * self.source_size[0] * self.source_size[1] * 3


REFERENCE = Footprint(frames=93, model_size=(704, 1280), source_size=(720, 1280))


def held_bytes(stage: str, shape: Footprint) -> int:
    """Bytes of video the stage holds at once in host memory (see the module docstring)."""
    model, source = shape.model_video, shape.source_video
    if stage == "decode":
        return 2 * source + model
    if stage in ("controls", "masks"):
        return (2 + shape.controls) * model
    if stage == "diffuse":
        return (2 + 2 * shape.controls) * model
    if stage == "encode":
        out = source if shape.keep_input_resolution else model
        return shape.panels * (model + out) + model
    return 0  # prompt, bench: nothing of the job's video


def memory_mb(stage: str, shape: Footprint | None) -> int:
    """The stage's `mem_mb` for a job of this shape (None: the reference's), in whole GB."""
    base = STAGE_NEEDS[stage][1]
    if shape is None:
        return base
    beyond = max(0, held_bytes(stage, shape) - held_bytes(stage, REFERENCE))
    return base + 1000 * math.ceil(MARGIN * beyond / (1000 * MB))


def spec_footprint(spec: Any) -> Footprint | None:
    """The footprint of a validated spec's job, from its input video's header; None where the header does
    not give a size (an image, an unreadable file: the reference's request then)."""
    frames, height, width = _header(Path(spec.video_path))
    if not (frames and height and width):
        return None
    if spec.max_frames is not None:
        frames = min(frames, spec.max_frames)
    try:
        model = model_resolution(spec.resolution, height, width)
    except CosmosError:
        return None
    controls = len(spec.controls)
    panels = 1 + int(spec.show_input) + (controls if spec.show_control_condition else 0)
    return Footprint(frames=frames, model_size=model, source_size=(height, width), controls=controls,
                     panels=panels, keep_input_resolution=spec.keep_input_resolution)  # fmt: skip


@functools.cache
def _header(path: Path) -> tuple[int, int, int]:
    # Snakemake asks for every job's resources while it builds the DAG: one header read per input.
    return video_header(path)


def stage_resources(
    stage: str, *, gpu_device: bool, tiny: bool, gpu_model: str, shape: Footprint | None = None
) -> dict[str, Any]:
    """A stage rule's resources. Only GPU stages of a cuda sweep get `gpu` and the site's `gpu_model` (a CPU
    job given a model would ask SLURM for `--gpus=<model>:0`)."""
    gpu_stage, _, cpus, minutes = STAGE_NEEDS[stage]
    gpus = 1 if gpu_stage and gpu_device else 0
    resources: dict[str, Any] = {"gpu": gpus, "gpu_model": gpu_model if gpus else ""}
    # The accelerator's one slot, on CPU sweeps too: a cluster profile caps it at 1 (`resources:`, scope
    # local), so the GPU stages it groups into one allocation run there one after the other and the
    # allocation asks for the largest stage's needs, not their sum. Locally it is not capped.
    resources["accelerator_slot"] = 1 if gpu_stage else 0
    resources.update(mem_mb=memory_mb(stage, shape), cpus_per_task=cpus, runtime=minutes)
    return resources | (TINY_NEEDS if tiny and stage != "bench" else {})
