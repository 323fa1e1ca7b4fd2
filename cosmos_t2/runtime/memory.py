"""How much accelerator memory a job needs, per stage and offload mode, worked out before any model is built.

The model of memory (what `estimate` adds up; all figures are the allocator's peak, what
`torch.cuda.max_memory_allocated` reports and the sidecar records, so the CUDA context is not in it):

- **Weights**: parameter counts taken from the networks built on the meta device (`TransferConfig.full_2b()`
  with one control branch per control, `VAEConfig.wan21()`; the tiny configs for `--tiny`) times the bytes of
  the run's dtype (bf16 on CUDA, fp32 on CPU). At 2B: backbone 2.414 G (4.50 GiB in bf16; of it 28 blocks of
  81.8 M and 125 M outside the blocks), one control branch 349 M (0.65 GiB), VAE 127 M (0.24 GiB). The text
  encoder (Cosmos-Reason1-7B, a Qwen2.5-VL-7B) has 8.29 G parameters (15.4 GiB); it runs alone, before the
  network is built, and not at all with `--prompt-embeddings`.
- **Diffusion activations** are counted in units U = B x L x D x bytes: one tensor of the residual stream for
  the CFG pair (B = 2; 1 per rank under CFG parallel) over the L tokens of a chunk (T' x H/16 x W/16; divided
  by the ranks under context parallel), D = 2048. At 720p, 93 frames, U = 2 x 84,480 x 2048 x 2 B = 0.645 GiB.
  The compiled network (`infer`'s default on CUDA) peaks at COMPILED_ACT_UNITS = 13.8 U with one control and
  0.47 U more per further control, fitted to whole jobs through infer's path (H200, bf16, 2026-12-01, commit
  `a830db1`, `cosmos-t2 bench --e2e`): 14.25 GiB in diffusion at 720p/93 frames/1 control, 17.10 GiB with four,
  8.73 GiB at 480p (432x768; the model gives 14.28, 17.10 and 8.66), and checked on the capped jobs of commit
  `bf31b98` (12, 16 and 24 GiB, `none` and `blocks`: within 1%). That is the compiled step alone too
  (`cosmos-t2 bench`, STEP_ACT_UNITS = 13.3 U, 13.7 GiB). Eager (`--no-compile`) it peaks at ACT_UNITS = 18.9
  U and 0.77 U per further control (17.6 GiB and 21.0 GiB through eager `infer`, commit `ebcc0fc`): the fp32
  norm and RoPE temporaries compilation fuses away, and the MLP's 4x-wide hidden activation and its GELU
  (8 U) beside the residual stream. The chunked MLP (`FeedForward.chunk_tokens`, MLP_CHUNKS chunks) leaves
  8 U / MLP_CHUNKS of that hidden pair when eager (6 U saved at 4 chunks, predicted); compiled, the peak is
  elsewhere (a compiled job at a 16 GiB cap still needed 13.4 U with 4 chunks), so no saving is counted.
- **VAE**: encoding a chunk holds its video in bf16 (3 x F x H x W) and a working set of ENCODE_BYTES_PER_PIXEL
  per model pixel (the encoder runs 4 frames at a time); decoding holds the decoded video in bf16 and its fp32
  copy and a working set of DECODE_BYTES_PER_PIXEL (one latent frame, 4 pixel frames, at a time). The encode
  figure is fitted to `cosmos-t2 bench --vae` at 720p/93 frames (7.0 GiB); the decode figure to the compiled
  jobs above, whose peak outside diffusion (14.27 GiB at 720p with the network resident, the distilled job's
  too, whose diffusion peaks at 10.1 GiB) is the decode's (`bench --vae` measured 9.4 GiB alone; the model
  gives 9.1). A tiled decode
  (`WanVAE.decode(tile=...)`, 2 x 2 tiles of a quarter-side overlap) keeps TILED_DECODE_FRACTION of the
  working set. Its seams are blended, so it is a close approximation, not exact, and used only when needed.
- **Residency by offload mode**: `none` keeps the network and the VAE on the GPU for the whole job; `model`
  keeps only the running stage's model (network during diffusion, VAE while encoding or decoding); `blocks`
  keeps the network's parts outside its blocks (embedders, text projection, final layer) and two blocks in
  flight (`model.offload.BlockStreamer`), the VAE as in `model`.

Not counted: the optional `--guardrails` checker (a third-party package whose models load in their own
stages, between the others) and the CUDA context (outside the allocator; `mem_get_info` already excludes it).

A mode fits when its largest stage is at most HEADROOM of the memory available (what `mem_get_info` reports
free, plus what this process already holds, capped by `--memory-cap`): the caching allocator's
fragmentation needs the rest. `auto` takes the first plan that fits in the order of `PLANS` (fastest first);
exact levers (chunked MLP, offload) come before the tiled decode. The text encoder runs on the GPU when it
fits there and on the CPU otherwise. The budget and the choice of a plan are `runtime.memory_choice`'s.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import torch

from cosmos_t2.model.config import TEMPORAL_COMPRESSION, TransferConfig
from cosmos_t2.model.control import TransferNet
from cosmos_t2.model.vae import VAEConfig, WanVAE
from cosmos_t2.video import model_resolution, read_video

GIB = 2**30
OFFLOAD_MODES = ("auto", "none", "model", "blocks")
TEXT_ENCODER_PARAMS = 8_292_166_656  # Qwen2.5-VL-7B-Instruct, the architecture of Cosmos-Reason1-7B
TINY_TEXT_ENCODER_PARAMS = 62_560  # model.text.build_tiny_encoder
TEXT_TOKENS = 512
TEXT_HIDDEN_BYTES = 2 * 2 * TEXT_TOKENS * 29 * 3584 * 4  # two prompts, 29 hidden states, fp32, twice
ACT_UNITS = 18.9  # eager
ACT_UNITS_PER_EXTRA_CONTROL = 0.77
COMPILED_ACT_UNITS = 13.8
COMPILED_ACT_UNITS_PER_EXTRA_CONTROL = 0.47
STEP_ACT_UNITS = 13.3
MLP_HIDDEN_UNITS = 8.0  # the MLP's 4x-wide hidden activation and its GELU
MLP_CHUNKS = 4
ENCODE_BYTES_PER_PIXEL = 7_500
DECODE_BYTES_PER_PIXEL = 8_918
TILED_DECODE_FRACTION = 0.4
HEADROOM = 0.92


@dataclass(frozen=True)
class Plan:
    """How the job is laid out in memory: offload mode plus the activation levers."""

    offload: str  # none | model | blocks
    mlp_chunks: int | None = None  # None: the MLP runs on all tokens at once
    tiled_decode: bool = False

    def describe(self) -> str:
        extra = [f"MLP in {self.mlp_chunks} chunks"] if self.mlp_chunks else []
        extra += ["tiled VAE decode"] if self.tiled_decode else []
        return self.offload + (f" ({', '.join(extra)})" if extra else "")


# Fastest first: offloading the whole model costs a copy per chunk, streaming blocks a little per step.
PLANS = (
    Plan("none"),
    Plan("none", MLP_CHUNKS),
    Plan("model"),
    Plan("model", MLP_CHUNKS),
    Plan("blocks"),
    Plan("blocks", MLP_CHUNKS),
    Plan("blocks", MLP_CHUNKS, tiled_decode=True),
)


@dataclass(frozen=True)
class JobShape:
    """What memory depends on: the model-size frame, the chunk, the controls, the ranks, the dtype."""

    height: int
    width: int
    frames: int  # pixel frames per chunk
    controls: int
    gpus: int = 1
    tiny: bool = False
    dtype_bytes: int = 2
    text_encoder: bool = True  # False: embeddings come from a file
    guided: bool = True  # CFG: the pair runs as one batch of 2
    compiled: bool = False  # torch.compile'd blocks (infer's default on CUDA): fewer activations
    device: str = "cuda"  # "cpu": the same tensors live in host RAM, and the ranks are CPU processes

    @property
    def latent_grid(self) -> tuple[int, int, int]:
        return (1 + (self.frames - 1) // TEMPORAL_COMPRESSION, self.height // 8, self.width // 8)

    @property
    def tokens(self) -> int:
        t, h, w = self.latent_grid
        return t * (h // 2) * (w // 2)

    def describe(self) -> str:
        controls = f"{self.controls} control{'s' if self.controls != 1 else ''}"
        one, many = ("CPU process", "CPU processes") if self.device == "cpu" else ("GPU", "GPUs")
        gpus = f"{self.gpus} {one if self.gpus == 1 else many}"
        network = "compiled" if self.compiled else "eager"
        return f"{self.height}x{self.width}, {self.frames} frames a chunk, {controls}, {gpus}, {network}"


@dataclass(frozen=True)
class Weights:
    """Parameter counts of one job's models."""

    backbone_blocks: int
    control_blocks: int  # every control branch's blocks together
    outside_blocks: int  # embedders (control embedders too), projections, final layer
    largest_block: int
    vae: int
    text_encoder: int

    @property
    def net(self) -> int:
        return self.backbone_blocks + self.control_blocks + self.outside_blocks


@functools.cache
def weights(tiny: bool, controls: int) -> Weights:
    """Counted on the meta device: nothing is allocated."""
    config = TransferConfig.tiny() if tiny else TransferConfig.full_2b()
    with torch.device("meta"):
        net = TransferNet(config, num_control_branches=max(controls, 1))
        vae = WanVAE(VAEConfig.tiny() if tiny else VAEConfig.wan21())

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    control = [b for n in range(net.num_control_branches) for b in net.control_branch(n)[1]]
    backbone = sum(count(b) for b in net.blocks)
    in_control = sum(count(b) for b in control)
    return Weights(
        backbone_blocks=backbone,
        control_blocks=in_control,
        outside_blocks=count(net) - backbone - in_control,
        largest_block=max(count(b) for b in [*net.blocks, *control]),
        vae=count(vae),
        text_encoder=TINY_TEXT_ENCODER_PARAMS if tiny else TEXT_ENCODER_PARAMS,
    )


@dataclass
class Estimate:
    """Peak bytes per stage for one plan."""

    shape: JobShape
    plan: Plan
    stages: dict[str, int]
    text_on_gpu: bool = True

    @property
    def peak(self) -> int:
        return max(v for k, v in self.stages.items() if k != "text" or self.text_on_gpu)

    def line(self) -> str:
        parts = ", ".join(f"{k} {size(v)}" for k, v in self.stages.items())
        # On CPU the estimate counts the model's tensors in host RAM, which is not what the job's RSS will
        # be (torch, the interpreter and caches come on top): say so, so it is not read as a GPU figure.
        peak = "tensors in host RAM, estimated peak" if self.shape.device == "cpu" else "peak"
        return f"{self.plan.describe()}: {peak} {size(self.peak)} ({parts})"


def size(nbytes: float) -> str:
    """GiB with one decimal; MiB below 1 GiB (the tiny model's figures)."""
    return f"{nbytes / GIB:.1f} GiB" if nbytes >= GIB else f"{nbytes / 2**20:.1f} MiB"


def unit_bytes(shape: JobShape, config: TransferConfig) -> int:
    """U: one residual-stream tensor of the batch on one rank."""
    return (2 if shape.guided else 1) * shape.tokens * config.model_channels * shape.dtype_bytes // shape.gpus


def diffusion_activations(shape: JobShape, plan: Plan, *, step_only: bool = False) -> int:
    config = TransferConfig.tiny() if shape.tiny else TransferConfig.full_2b()
    extra = max(shape.controls - 1, 0)
    if step_only:
        units = STEP_ACT_UNITS + ACT_UNITS_PER_EXTRA_CONTROL * extra
    elif shape.compiled:
        units = COMPILED_ACT_UNITS + COMPILED_ACT_UNITS_PER_EXTRA_CONTROL * extra
    else:
        units = ACT_UNITS + ACT_UNITS_PER_EXTRA_CONTROL * extra
    if plan.mlp_chunks and not shape.compiled:
        units -= MLP_HIDDEN_UNITS * (1 - 1 / plan.mlp_chunks)
    return int(units * unit_bytes(shape, config))


def estimate(shape: JobShape, plan: Plan) -> Estimate:
    """Peak bytes of each stage of the job under `plan` (see the module docstring for the model)."""
    w = weights(shape.tiny, shape.controls)
    b = shape.dtype_bytes
    net, vae, outside = w.net * b, w.vae * b, w.outside_blocks * b
    pixels = shape.height * shape.width
    video = 3 * shape.frames * pixels  # elements of one chunk's video
    resident = {"none": net + vae, "model": 0, "blocks": outside}[plan.offload]
    stage_vae = 0 if plan.offload == "none" else vae  # the VAE's own weights where not already resident
    network = {"none": 0, "model": net, "blocks": 2 * w.largest_block * b}[plan.offload]
    text = 0
    if (
        shape.text_encoder
    ):  # weights; the full model also holds every layer's hidden states, normalised in fp32
        text = w.text_encoder * b + (0 if shape.tiny else TEXT_HIDDEN_BYTES)
    width = (VAEConfig.tiny() if shape.tiny else VAEConfig.wan21()).base_dim / VAEConfig.wan21().base_dim
    decode_work = int(DECODE_BYTES_PER_PIXEL * width * pixels * b / 2)
    encode_work = int(ENCODE_BYTES_PER_PIXEL * width * pixels * b / 2)
    if plan.tiled_decode:
        decode_work = int(decode_work * TILED_DECODE_FRACTION)
    stages = {
        "text": text,
        "vae_encode": resident + stage_vae + video * b + encode_work,
        "diffusion": resident + network + diffusion_activations(shape, plan),
        "vae_decode": resident
        + stage_vae
        + video * (b + 4)
        + decode_work,  # the decoded chunk and its fp32 copy
    }
    return Estimate(shape, plan, stages)


def input_size(video_path: Path) -> tuple[int, int]:
    """(height, width) of the input video from its header; where the header has none, from its first frame
    (so a file that is no video gets the video reader's own one-line error)."""
    try:
        with av.open(str(video_path)) as container:
            context = container.streams.video[0].codec_context
            height, width = context.height, context.width
    except (av.FFmpegError, IndexError):
        height = width = 0
    if height and width:
        return height, width
    frames = read_video(video_path, max_frames=1).frames
    return int(frames.shape[1]), int(frames.shape[2])


def job_shape(
    spec: Any,
    *,
    gpus: int = 1,
    dtype_bytes: int = 2,
    text_encoder: bool = True,
    tiny: bool = False,
    compiled: bool = False,
    device: str = "cuda",
) -> JobShape:
    """The shape of a (validated, effective) spec's job: model size from the input video's header."""
    height, width = model_resolution(spec.resolution, *input_size(spec.video_path))
    return JobShape(
        height=height, width=width, frames=spec.num_video_frames_per_chunk, controls=len(spec.controls),
        gpus=gpus, tiny=tiny, dtype_bytes=dtype_bytes, text_encoder=text_encoder, guided=spec.guidance != 0,
        compiled=compiled, device=device,
    )  # fmt: skip
