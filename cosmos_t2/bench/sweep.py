"""`cosmos-t2 bench --sweep`: the real Snakemake workflow as a benchmark, at full size on random weights.

It writes into a work folder what a user's sweep starts from: synthetic input clips and one spec file each
(edge control; the clips differ, so every spec has its own decode and controls), a model folder of random
weights in the official layout (`bench.e2e.write_random_models`), a text-encoder folder holding only
Cosmos-Reason1's config.json, and an embedding cache pre-filled with random embeddings of the official shape
under the keys the prompt rule computes (no text-encoder weights exist here; `encode-prompt` loads none when
every prompt is cached). Then it runs `snakemake --profile profiles/local-gpu` (CUDA: the real rules and the
per-GPU diffusion server) or `profiles/local` (CPU, tiny model) on workflow/Snakefile in that folder, and
times it. What each job cost is read back from the run: the rules' `benchmark:` TSVs (seconds, and the file's
time less them: when the rule started), the mp4's time and the diffuse sidecar's seconds in the steps
(`bench.sweep_rows`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cosmos_t2.atomic import write_json_atomic, write_text_atomic
from cosmos_t2.bench.e2e import FPS, PROMPT, SOURCE_SIZE, synthetic_frames, write_random_models
from cosmos_t2.bench.step import PRESETS
from cosmos_t2.bench.sweep_rows import collect_result
from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.load import load_job
from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.text import EmbeddingCache, PromptEncoder, TextEncoder
from cosmos_t2.model.text_folder import FolderEncoder
from cosmos_t2.video import write_video

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"
DEFAULT_WEIGHTS = (0.25, 0.5, 0.75, 1.0)
# Cosmos-Reason1-7B's language model: 28 layers x 3584 channels, concatenated per token (model.text).
REASON1_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "num_hidden_layers": 28,
    "hidden_size": 3584,
    "note": "written by cosmos-t2 bench --sweep: a config only, no weights (every prompt is cached)",
}
PROMPTS = (PROMPT, "A robot arm lifts a box off a checkered floor in front of a brick wall, dusk.")


@dataclass
class SweepOptions:
    preset: str | None = None  # None: 720p93 on CUDA, tiny on CPU
    specs: int = 2  # synthetic spec files, one clip each
    control_weights: tuple[float, ...] = DEFAULT_WEIGHTS
    steps: int | None = None  # None: the spec's (35), or the distilled model's 4
    distilled: bool = False
    device: str = "cuda"
    work_dir: Path | None = None  # keep the inputs, models and results here (default: a temporary folder)

    @property
    def chosen_preset(self) -> str:
        return self.preset or ("tiny" if self.device == "cpu" else "720p93")

    @property
    def profile(self) -> Path:
        return REPO / "profiles" / ("local" if self.device == "cpu" else "local-gpu")


def check_options(opts: SweepOptions) -> None:
    """Every refusal before anything is written or run."""
    if opts.chosen_preset not in SOURCE_SIZE:
        raise CosmosError(
            f"unknown preset {opts.chosen_preset!r}; choose from {', '.join(SOURCE_SIZE)}", key="--preset"
        )
    if opts.device not in ("cuda", "cpu"):
        raise CosmosError(f"--device is cuda or cpu, got {opts.device!r}", key="--device")
    if opts.device == "cpu" and opts.chosen_preset != "tiny":
        raise CosmosError("a full-size sweep on CPU takes hours: use --preset tiny on CPU", key="--preset")
    if opts.specs < 1:
        raise CosmosError(f"--specs must be at least 1, got {opts.specs}", key="--specs")
    if not opts.control_weights:
        raise CosmosError("give at least one control weight", key="--control-weights")
    if any(not 0 <= w <= 1 for w in opts.control_weights):
        raise CosmosError(
            f"control weights lie in [0, 1], got {list(opts.control_weights)}", key="--control-weights"
        )
    if len(set(opts.control_weights)) != len(opts.control_weights):
        raise CosmosError("a control weight is given twice (one job each)", key="--control-weights")
    if opts.steps is not None and opts.steps < 1:
        raise CosmosError(f"--steps must be at least 1, got {opts.steps}", key="--steps")
    if opts.distilled and opts.chosen_preset == "tiny":
        raise CosmosError(
            "the distilled model is full size: drop --distilled or use --preset 720p93", key="--distilled"
        )
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise CosmosError("no CUDA device is available; use --device cpu (tiny model)", key="--device")
    if not SNAKEFILE.is_file():
        raise CosmosError("the workflow is not beside this cosmos_t2 (an installed copy?)", file=SNAKEFILE)


def parse_weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise CosmosError(
            f"expected comma-separated numbers, got {text!r}", key="--control-weights"
        ) from None


def write_specs(folder: Path, opts: SweepOptions) -> list[Path]:
    """One clip and one spec file per spec; the second clip runs the other way (its own decode and controls)."""
    preset = PRESETS[opts.chosen_preset]
    height, width = SOURCE_SIZE[opts.chosen_preset]
    video = synthetic_frames(preset.frames, height, width)
    resolution = "480" if opts.chosen_preset == "480p93" else "720"  # tiny: --tiny's own resolution wins
    paths = []
    for i in range(opts.specs):
        clip = video if i % 2 == 0 else video[:, :, ::-1]
        write_video(folder / f"clip_{i}.mp4", clip, FPS)
        spec = {"name": f"sweep_{i}", "prompt": PROMPTS[i % 2] + (f" Take {i}." if i > 1 else ""),
                "video_path": f"clip_{i}.mp4", "resolution": resolution, "seed": 2025 + i, "edge": {}}  # fmt: skip
        path = folder / f"sweep_{i}.json"
        path.write_text(json.dumps(spec, indent=1) + "\n")
        paths.append(path)
    return paths


def prompt_encoder(folder: Path, tiny: bool) -> TextEncoder:
    """The encoder the prompt rule builds (its identity keys the cache): the tiny one, or a Reason1 folder
    holding only its config.json, written here."""
    if tiny:
        return PromptEncoder.tiny()
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "config.json", json.dumps(REASON1_CONFIG, indent=1) + "\n")
    encoder = FolderEncoder(folder, device="cpu", dtype=torch.bfloat16)
    assert encoder.dim == TransferConfig.full_2b().crossattn_proj_in_channels
    return encoder


def prefill_cache(cache: EmbeddingCache, encoder: TextEncoder, prompts: list[str], dtype: torch.dtype) -> int:
    """Random (512, channels) embeddings under each prompt's cache key; returns how many were written."""
    gen = torch.Generator().manual_seed(1)
    for prompt in dict.fromkeys(prompts):
        emb = torch.randn(encoder.max_length, encoder.dim, generator=gen).to(dtype)
        cache.put(encoder, prompt, emb, label=f"{encoder.label} (random, bench --sweep)")
    return len(dict.fromkeys(prompts))


def sweep_config(
    opts: SweepOptions, specs: list[Path], models: Path | None, text_encoder: Path | None
) -> dict[str, Any]:
    grid: dict[str, Any] = {"control_weight": list(opts.control_weights)}
    if opts.steps is not None:
        grid["num_steps"] = [opts.steps]
    return {
        "specs": [p.name for p in specs], "grid": grid, "tiny": models is None, "device": opts.device,
        "model_dir": str(models or ""), "text_encoder_dir": str(text_encoder or ""), "results": "results",
    }  # fmt: skip


def prepare(work: Path, opts: SweepOptions) -> tuple[Path, float]:
    """The inputs, models, cache and config in `work`; returns (config file, seconds)."""
    started = time.perf_counter()
    tiny = PRESETS[opts.chosen_preset].tiny
    specs = write_specs(work, opts)
    models = text_dir = None
    if not tiny:
        device = torch.device(opts.device)
        models = write_random_models(work / "models", ["edge"], tiny=False, distilled=opts.distilled,
                                     device=device, dtype=torch.bfloat16)  # fmt: skip
        text_dir = models / "text_encoder"
        if device.type == "cuda":  # the random-weight scratch is not part of the sweep
            torch.cuda.empty_cache()
    encoder = prompt_encoder(text_dir or work / "text_encoder", tiny)
    loaded = [load_job(spec) for spec in specs]  # the prompts the prompt rule encodes
    prompts = [p for spec in loaded for p in (spec.prompt, spec.negative_prompt)]
    dtype = torch.float32 if tiny else torch.bfloat16
    prefill_cache(EmbeddingCache(work / "cache" / "text-embeddings"), encoder, prompts, dtype)
    config = work / "sweep.yaml"  # JSON is YAML
    write_text_atomic(config, json.dumps(sweep_config(opts, specs, models, text_dir), indent=1) + "\n")
    return config, time.perf_counter() - started


def snakemake_command(opts: SweepOptions, work: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--profile", str(opts.profile),
            "--directory", str(work), "--configfile", str(config)]  # fmt: skip


def run_sweep(opts: SweepOptions) -> dict[str, Any]:
    """Prepare the work folder, run the workflow on it, return the per-job rows and the sweep's wall."""
    check_options(opts)
    with tempfile.TemporaryDirectory(prefix="cosmos-t2-sweep-") as tmp:
        work = Path(opts.work_dir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work / "results", ignore_errors=True)  # a kept folder: run every job again
        config, prepared = prepare(work, opts)
        command = snakemake_command(opts, work, config)
        # the rules' encode-prompt reads the pre-filled cache; the compile cache stays in the work folder
        env = {**os.environ, "COSMOS_T2_CACHE_DIR": str(work / "cache")}
        log = work / "snakemake.log"
        started_at = time.time()
        t0 = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.run(
                command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
            )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            kept = f"; the run is kept in {work}" if opts.work_dir else ""
            raise CosmosError(f"the sweep failed (snakemake exit {proc.returncode}){kept}:\n{tail}")
        result = collect_result(work / "results", started_at=started_at, wall_s=wall)
    device = torch.cuda.get_device_name() if opts.device == "cuda" else "cpu"
    options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()}
    return {"options": options | {"preset": opts.chosen_preset}, "device": device, "torch": torch.__version__,
            "command": command, "prepare_s": round(prepared, 3),
            "work_dir": str(opts.work_dir) if opts.work_dir else None, **result}  # fmt: skip


def write_result(result: dict[str, Any], path: Path) -> Path:
    return write_json_atomic(path, result, default=str)
