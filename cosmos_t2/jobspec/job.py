"""The spec model: one sample of NVIDIA's `examples/inference.py` input, validated and resolved.

Keys, types, ranges and defaults follow `cosmos_transfer2/config.py` (`InferenceArguments` and the
control configs) of nvidia-cosmos/cosmos-transfer2.5. Where we differ, on purpose:
- `name` may be left out (the file's stem, or `<stem>_<line>` in a JSONL) and `output_dir` may sit in
  the file (the form of NVIDIA's inference guide); it is the default output folder.
- Unknown keys are errors inside control blocks too (upstream ignores them there).
- `resolution` also takes "tiny" (our CPU demo model) and accepts 720/480 as numbers.
- `sigma_max` takes a number or a numeric string (upstream: a string) and is checked against 0..200.
- `prompt` and `prompt_path` together are an error (upstream silently prefers `prompt`).
- Relative paths in `--set` overrides resolve against the working directory, those in the file
  against the file's folder.
- Guided generation: the mask must be a file (upstream's type admits a folder that its reader then
  rejects), the step threshold >= 0, and foreground labels need a .npz label mask and at least one label
  (upstream ignores them with a mask video, logging a warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmos_t2.controls.registry import MODALITIES
from cosmos_t2.jobspec.control import ControlSpec, control_block, jsonable
from cosmos_t2.jobspec.fields import Fields, Source, is_integer, show
from cosmos_t2.model.config import TEMPORAL_COMPRESSION, TransferConfig

RESOLUTIONS = ("720", "480", "tiny")
# A name becomes file names: the longest is `<name>.latents.safetensors` (+20 bytes), written through a
# temp file `.<name>.latents.<8 random>.safetensors` (+30); NAME_MAX is 255 bytes on every common file
# system. 200 leaves room for that and for a suffix added later.
MAX_NAME_BYTES = 200
# The schedule holds num_steps + 1 sigmas and the sampler a few latents per step of history: 10^9 steps
# asks for gigabytes before the first step. UniPC has converged long before 1000 steps (the released model
# runs 35, the distilled one 4); 1000 steps of the 2B model is already days per chunk.
MAX_STEPS = 1000
# The full model's step count, a spec's default (the distilled model's: sampling.distilled.DISTILLED_NUM_STEPS).
DEFAULT_NUM_STEPS = 35
# A chunk is 1 + 4k frames (the VAE packs 4 frames per latent frame) and at least 5 (two latent frames:
# one chunk must hold more than the <= 2 frames it is conditioned on), at most what the network's RoPE
# table covers (its max latent frames).
MIN_CHUNK_FRAMES = 1 + TEMPORAL_COMPRESSION
MAX_CHUNK_FRAMES = 1 + TEMPORAL_COMPRESSION * (TransferConfig().max_size[0] - 1)
DEFAULT_NEGATIVE_PROMPT = (
    "The video captures a game playing, with bad crappy graphics and cartoonish frames. It represents a "
    "recording of old outdated games. The lighting looks very fake. The textures are very raw and basic. The "
    "geometries are very primitive. The images are very pixelated and of poor CG quality. There are many "
    "subtitles in the footage. Overall, the video is unrealistic at all."
)


@dataclass(frozen=True)
class Spec:
    """One resolved sample: every key has its value (defaults filled); paths are absolute, and input
    files exist (checked when loaded).

    `prompt` holds the text (read from `prompt_path` when that was given). `prompt_path` is kept for
    the record only: it is left out of `to_dict()` and of equality, so a job spec written with the
    prompt text loads back to an equal Spec.
    """

    name: str
    prompt: str
    video_path: Path
    controls: dict[str, ControlSpec]  # in the registry's order (edge, vis, depth, seg); at least one
    prompt_path: Path | None = field(default=None, compare=False)
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    output_dir: Path | None = None
    seed: int = 2025
    guidance: int = 3
    num_steps: int = DEFAULT_NUM_STEPS
    resolution: str = "720"
    num_video_frames_per_chunk: int = 93
    num_conditional_frames: int = 1
    max_frames: int | None = None
    sigma_max: float | None = None
    keep_input_resolution: bool = True
    show_control_condition: bool = False
    show_input: bool = False
    image_context_path: Path | None = None
    context_frame_index: int | None = None
    guided_generation_mask: Path | None = None
    guided_generation_step_threshold: int = 25
    guided_generation_foreground_labels: tuple[int, ...] | None = None
    # Whether the spec set num_steps: a distilled model runs its own count only where it did not.
    num_steps_given: bool = field(default=False, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, absolute paths; `load_specs` on this data gives back an equal Spec, `num_steps_given`
        included: a num_steps the spec left at its default is left out, so that the job spec a sweep writes
        still lets a distilled model run its own count (written out, it would run 35 steps)."""
        out: dict[str, Any] = {}
        for key in _TOP_KEYS:
            if key == "num_steps" and not self.num_steps_given and self.num_steps == DEFAULT_NUM_STEPS:
                continue
            if key != "prompt_path":
                out[key] = jsonable(getattr(self, key))
        for modality in MODALITIES:
            if modality in self.controls:
                out[modality] = self.controls[modality].to_dict()
        return out


def normalized_control_weights(spec: Spec) -> dict[str, float]:
    """The weights the model applies where no mask is black, as upstream computes them.

    Upstream (`resize_control_weight` in `vid2vid_model_control_vace_rectified_flow.py`) normalises only when
    some control has a mask (`mask_path` or `mask_prompt`): then every control becomes a weight map
    (weight × mask, per latent position), and where the maps sum to more than 1 each is divided by the sum.
    Without masks the scalar weights are used as given, even if they sum to more than 1 (its config
    docstring says otherwise; the code is what runs). This returns the value at positions where every mask
    is white; `cosmos_t2.model.control.control_weights` applies the rule per position.
    """
    weights = {m: c.control_weight for m, c in spec.controls.items()}
    if not any(c.mask_path or c.mask_prompt for c in spec.controls.values()):
        return weights
    scale = 1.0 / max(sum(weights.values()), 1.0)
    return {m: w * scale for m, w in weights.items()}


# --- validation ------------------------------------------------------------------------------

_TOP_KEYS = (
    "name", "prompt", "prompt_path", "negative_prompt", "video_path", "output_dir", "seed", "guidance",
    "num_steps", "resolution", "num_video_frames_per_chunk", "num_conditional_frames", "max_frames",
    "sigma_max", "keep_input_resolution", "show_control_condition", "show_input", "image_context_path",
    "context_frame_index", "guided_generation_mask", "guided_generation_step_threshold",
    "guided_generation_foreground_labels",
)  # fmt: skip


def _known_keys() -> tuple[str, ...]:
    return _TOP_KEYS + tuple(MODALITIES)  # read now: a modality registered after import counts


def _prompt(f: Fields) -> tuple[str, Path | None]:
    if f.given("prompt") and f.given("prompt_path"):
        raise f.error("prompt", "give either 'prompt' or 'prompt_path', not both")
    if f.given("prompt"):
        return f.text("prompt"), None
    path = f.path("prompt_path")
    if path is None:
        raise f.error("prompt", "missing: give 'prompt' (the text) or 'prompt_path' (a .txt file)")
    try:
        return path.read_text(encoding="utf-8").strip(), path
    except (OSError, UnicodeDecodeError) as exc:
        raise f.error("prompt_path", f"cannot read {path}: {exc}") from None


def _resolution(f: Fields) -> str:
    value = f.data.get("resolution")
    if is_integer(value) and str(int(value)) in RESOLUTIONS:
        return str(int(value))  # `--set resolution=480` arrives as a number
    return f.choice("resolution", RESOLUTIONS, "720")


def _name(f: Fields, default: str) -> str:
    """A name becomes file names and, in the workflow, a path in Snakemake's logs: no separators or
    control characters (a newline would split a log line), and short enough in bytes for NAME_MAX."""
    name = f.text("name", default)
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        raise f.error(
            "name",
            f"expected a non-empty name without '/', '\\' or control characters (it names output files), "
            f"got {show(name)}",
        )
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise f.error(
            "name", f"is {size} bytes; at most {MAX_NAME_BYTES} (it names output files), got {show(name)}"
        )
    return name


def _chunk_frames(f: Fields) -> tuple[int, int]:
    """(num_video_frames_per_chunk, num_conditional_frames): the chunk rules `plan_chunks` relies on."""
    key = "num_video_frames_per_chunk"
    frames = f.integer(key, 93, lo=MIN_CHUNK_FRAMES, hi=MAX_CHUNK_FRAMES)
    if (frames - 1) % TEMPORAL_COMPRESSION:
        raise f.error(key, f"must be 1 + 4k frames (the VAE packs 4 frames per latent frame), got {frames}")
    return frames, f.integer("num_conditional_frames", 1, lo=0, hi=2)


def _guided_mask(f: Fields) -> Path | None:
    # Upstream's config type admits a folder, but its reader takes only a .mp4 or a .npz file and
    # fails on anything else at run time; refusing a folder here says so before any work is done.
    path = f.path("guided_generation_mask", allow_dir=True)
    if path is not None and path.is_dir():
        raise f.error(
            "guided_generation_mask",
            f"expected a mask video or a .npz label array, got a folder: {path}",
        )
    return path


def _check_foreground_labels(f: Fields, spec: Spec) -> None:
    """Labels select foreground in a .npz label array only; anywhere else upstream ignores them (and logs
    a warning), which is a key silently doing nothing, so it is an error here."""
    labels = spec.guided_generation_foreground_labels
    if labels is None:
        return
    name = "guided_generation_foreground_labels"
    if not labels:
        raise f.error(
            name, "expected at least one label (leave the key out: any non-zero label is foreground)"
        )
    mask = spec.guided_generation_mask
    if mask is None:
        raise f.error(name, "needs 'guided_generation_mask' (a .npz label array) to select labels from")
    if mask.suffix.lower() != ".npz":
        raise f.error(
            name, f"apply only to a .npz label array; {mask.name} is read as a mask video (white = guided)"
        )


def validate_sample(data: dict[str, Any], src: Source, default_name: str) -> Spec:
    """Check one sample's data and resolve it into a Spec; errors name src.where and the key path."""
    f = Fields(src, data)
    f.check_keys(_known_keys())
    prompt, prompt_path = _prompt(f)
    video_path = f.path("video_path")
    if video_path is None:
        raise f.error("video_path", "missing: the input video is required")
    # null blocks count as absent, as with upstream's Optional fields (so `--set vis=null` drops one)
    controls = {
        m.name: control_block(src, m, data[m.name], prompt) for m in MODALITIES.values() if f.given(m.name)
    }
    if not controls:
        raise src.error(
            None, f'no control block: give at least one of {", ".join(MODALITIES)} (e.g. "edge": {{}})'
        )
    chunk_frames, cond_frames = _chunk_frames(f)
    spec = Spec(
        name=_name(f, default_name),
        prompt=prompt,
        prompt_path=prompt_path,
        video_path=video_path,
        controls=controls,
        negative_prompt=f.text("negative_prompt", DEFAULT_NEGATIVE_PROMPT),
        output_dir=f.path("output_dir", must_exist=False),
        seed=f.integer("seed", 2025),
        guidance=f.integer("guidance", 3, lo=0, hi=7),
        num_steps=f.integer("num_steps", DEFAULT_NUM_STEPS, lo=1, hi=MAX_STEPS),
        num_steps_given=f.given("num_steps"),
        resolution=_resolution(f),
        num_video_frames_per_chunk=chunk_frames,
        num_conditional_frames=cond_frames,
        max_frames=f.integer("max_frames", None, lo=1),
        sigma_max=f.number("sigma_max", None, 0.0, 200.0, from_text=True),
        keep_input_resolution=f.boolean("keep_input_resolution", True),
        show_control_condition=f.boolean("show_control_condition", False),
        show_input=f.boolean("show_input", False),
        image_context_path=f.path("image_context_path"),
        context_frame_index=f.integer("context_frame_index", None, lo=1),
        guided_generation_mask=_guided_mask(f),
        guided_generation_step_threshold=f.integer(
            "guided_generation_step_threshold", 25, lo=0, hi=MAX_STEPS
        ),
        guided_generation_foreground_labels=f.integers("guided_generation_foreground_labels"),
    )
    _check_foreground_labels(f, spec)
    for name in spec.controls:
        if MODALITIES[name].transfers_style and spec.image_context_path is not None:
            raise f.error(
                "image_context_path",
                f"conflicts with the '{name}' control: both transfer style, so give only one (as upstream "
                "requires)",
            )
    return spec
