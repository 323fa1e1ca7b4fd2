"""What a job leaves behind: the stitched mp4 (with side-by-side panels), or the latents file, and `render`.

Panels follow upstream's `generate_img2world`: per chunk, [control videos (masked where a mask applies),
input, output] side by side (controls only with show_control_condition, input only with show_input),
stitched like the output. With keep_input_resolution each panel goes back to the input's size.
The mp4 carries the model label as its title ("tiny random-weight model" for --tiny); the label is added
by remuxing the encoded stream (no re-encode; deterministic bytes).

The video (or latents) and its sidecar are one `atomic.OutputSet`: encoded and labelled under temp names,
then published with the sidecar last, so a finished sidecar always means a finished set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from cosmos_t2.atomic import OutputSet, atomic_outputs, atomic_path
from cosmos_t2.destination import check_free_space, estimate_video_bytes
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.chunking import Chunk, stitch
from cosmos_t2.job.inputs import JobInputs, to_uint8_frames
from cosmos_t2.job.record import LATENTS_SUFFIX, load_latents, read_json, save_latents, versions, write_json
from cosmos_t2.job.sidecar import JobRecord
from cosmos_t2.jobspec.job import Spec
from cosmos_t2.runtime.pool import ModelPool
from cosmos_t2.video import resize_back, write_video
from cosmos_t2.weights.locate import ModelFiles, _first_file


@dataclass(frozen=True)
class LatentPlan:
    """Everything `render` needs to turn the per-chunk latents into the job's video."""

    name: str
    label: str
    tiny: bool
    fps: float
    num_frames: int
    model_size: tuple[int, int]
    source_size: tuple[int, int]
    keep_input_resolution: bool
    chunks: list[dict[str, int]]

    @classmethod
    def of(cls, spec: Spec, inputs: JobInputs, chunks: list[Chunk], *, label: str, tiny: bool) -> LatentPlan:
        return cls(
            name=spec.name,
            label=label,
            tiny=tiny,
            fps=inputs.fps,
            num_frames=inputs.num_frames,
            model_size=inputs.size,
            source_size=inputs.source_size,
            keep_input_resolution=spec.keep_input_resolution,
            chunks=[dataclasses.asdict(c) for c in chunks],
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatentPlan:
        data = dict(data)
        data["model_size"], data["source_size"] = tuple(data["model_size"]), tuple(data["source_size"])
        return cls(**data)

    def chunk_plan(self) -> list[Chunk]:
        return [Chunk(**c) for c in self.chunks]


def panels_for_chunk(spec: Spec, inputs: JobInputs, chunk: Chunk, output: torch.Tensor) -> torch.Tensor:
    """(T, H, k*W, 3) uint8: the chunk's [controls..., input, output] panels, as upstream lays them out."""
    idx = list(chunk.frame_indices)
    parts = []
    if spec.show_control_condition:
        for modality, frames in inputs.controls.items():
            shown = frames[idx]
            mask = inputs.masks.get(modality)
            if mask is not None:  # upstream shows control * mask
                shown = shown * mask[idx][..., None].to(torch.uint8)
            parts.append(shown)
    if spec.show_input:
        parts.append(inputs.frames[idx])
    parts.append(output)
    return torch.cat(parts, dim=2)


def _resize_panels(video: torch.Tensor, model_width: int, size: tuple[int, int]) -> torch.Tensor:
    panels = video.split(model_width, dim=2)
    return torch.cat([resize_back(p.contiguous(), *size) for p in panels], dim=2)


def label_mp4(path: Path, title: str) -> Path:
    """Set the container title by remuxing (no re-encode), atomically; faststart, as `write_video` writes it."""
    faststart = {
        "movflags": "+faststart"
    }  # the index first: the report's <video> plays before it is all read
    with (
        atomic_path(path) as tmp,
        av.open(str(path)) as src,
        av.open(str(tmp), "w", format="mp4", options=faststart) as dst,
    ):
        dst.metadata["title"] = title
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for packet in src.demux(stream_in):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = stream_out
            dst.mux(packet)
    return path


def write_video_output(path: Path, frames: torch.Tensor, plan: LatentPlan) -> Path:
    """Encode and label the mp4 at `path`: a staged temp path of an OutputSet (each step is atomic on it)."""
    if plan.keep_input_resolution and tuple(plan.source_size) != tuple(plan.model_size):
        frames = _resize_panels(frames, plan.model_size[1], plan.source_size)
    write_video(path, frames, plan.fps)
    return label_mp4(path, plan.label)


def write_outputs(
    options: Any,
    spec: Spec,
    inputs: JobInputs,
    chunks: list[Chunk],
    plan: LatentPlan,
    latents: list[torch.Tensor],
    panels: list[torch.Tensor],
    outputs: OutputSet,
) -> dict[str, Path]:
    """Stage the job's video (or latents) in `outputs`; returns the final paths."""
    out_dir = Path(options.out_dir)
    if options.latents_only:
        final = out_dir / f"{spec.name}{LATENTS_SUFFIX}"
        save_latents(outputs.stage(final), latents, dataclasses.asdict(plan))
        return {"latents": final}
    video = stitch(panels, chunks, inputs.num_frames, dim=0)
    final = out_dir / f"{spec.name}.mp4"
    write_video_output(outputs.stage(final), video, plan)
    return {"video": final}


def output_names(spec: Spec, latents_only: bool) -> list[str]:
    """The files a job writes (rank 0), the sidecar last."""
    main = f"{spec.name}{LATENTS_SUFFIX}" if latents_only else f"{spec.name}.mp4"
    return [main, f"{spec.name}.json"]


def expected_output_bytes(spec: Spec, inputs: JobInputs, chunks: list[Chunk], latents_only: bool) -> int:
    """An upper estimate of the disk a job's outputs need while being written (see `check_destination`)."""
    height, width = inputs.size
    if latents_only:  # fp32, 16 channels, 4x temporal and 8x spatial compression
        latent_frames = sum(1 + (c.frames_per_chunk - 1) // 4 for c in chunks)
        return latent_frames * 16 * (height // 8) * (width // 8) * 4 + (1 << 20)
    if spec.keep_input_resolution:
        height, width = inputs.source_size
    panels = 1 + int(spec.show_input) + (len(inputs.controls) if spec.show_control_condition else 0)
    return 2 * estimate_video_bytes(inputs.num_frames, height, width * panels)  # encoded + labelled copy


def render_latents(
    latents_path: Path,
    out_path: Path,
    *,
    tiny: bool,
    model_dir: Path | None = None,
    device: str = "cpu",
    check_video: Callable[[np.ndarray], np.ndarray] | None = None,
    pool: ModelPool | None = None,
    recorded_as: str | None = None,
    gpu: AbstractContextManager[object] | None = None,
) -> dict[str, Any]:
    """Decode a `--latents-only` result into OUT.mp4 and write OUT.json (the job's sidecar, if found
    beside the latents, with a `render` section added). `check_video` (the guardrail) sees the (T, H, W, 3)
    uint8 frames first and returns those to write, or raises to write nothing. `pool`: where the VAE is
    kept (a server's, shared with its diffuse jobs; None: built for this render alone, the same way);
    `recorded_as`: the latents path as the sidecar records it (default `latents_path`; a server is given
    absolute paths, and records its client's); `gpu`: held around the work on the device (the VAE, the
    decode, the check) and released before the mp4 is written, which needs none (a server's GPU lock: its
    next job's steps run during the write)."""
    started = time.perf_counter()
    chunks_latent, meta = load_latents(Path(latents_path))
    plan = LatentPlan.from_dict(meta)
    out_path = Path(out_path)
    height, width = plan.source_size if plan.keep_input_resolution else plan.model_size
    check_free_space(out_path.parent, 2 * estimate_video_bytes(plan.num_frames, height, width))
    if plan.tiny != tiny:
        want = "with --tiny" if plan.tiny else "without --tiny"
        raise CosmosError(f"these latents come from the {plan.label}; render them {want}", file=latents_path)
    vae_file = None
    if model_dir is not None:
        vae_file = _first_file(Path(model_dir), ("tokenizer",))
        if vae_file is None:
            raise CosmosError("no VAE: expected tokenizer.pth or tokenizer.safetensors", file=model_dir)
    elif not tiny:
        raise CosmosError("rendering needs the VAE: pass --model-dir DIR (or --tiny for tiny latents)")
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    with gpu if gpu is not None else contextlib.nullcontext():
        vae = (pool or ModelPool()).vae(
            ModelFiles({}, vae_file, None, None, False), tiny=tiny, device=dev, dtype=dtype
        )
        frames = [to_uint8_frames(vae.decode(c.to(dev, dtype)).float().cpu()) for c in chunks_latent]
        video = stitch(frames, plan.chunk_plan(), plan.num_frames, dim=0)
        if check_video is not None:
            video = torch.from_numpy(check_video(video.numpy()))
    del frames  # stitched into `video`: not held through the write
    sidecar_in = Path(str(latents_path).removesuffix(LATENTS_SUFFIX) + ".json")
    job = (
        JobRecord.from_json(read_json(sidecar_in))
        if sidecar_in.is_file()
        else JobRecord(plan.name, label=plan.label)
    )
    render = {
        "latents": recorded_as or str(latents_path),
        "video": out_path.name,
        "seconds": round(time.perf_counter() - started, 4),
        "device": str(dev),
        "versions": versions(),
        "guardrail_video": None if check_video is None else "passed",
    }
    record = dataclasses.replace(job, render=render, outputs={**job.outputs, "video": out_path.name})
    with atomic_outputs() as outputs:
        write_video_output(outputs.stage(out_path), video, plan)
        write_json(outputs.stage(out_path.with_suffix(".json"), record=True), record.to_json())
    return record.to_json()
