"""The fault catalog: hostile inputs to every command, each one clean failure.

Every case asserts what a user is promised (README, "What happens when things go wrong"): exit code 2,
one line on stderr that starts with "error:" and names the file or the key at fault, no traceback,
and nothing new on disk (no final-named output, no temp file left behind). Cases run in-process
(`tests/_cli.run_cli`) on the tiny model with 9-frame inputs; most stop before any model is built.
Filesystem faults (read-only folders, full disks) are in test_faults_outputs.py.
"""

from __future__ import annotations

import ast
import json
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _cli import run_cli, without_progress
from _snakemake import snakemake_command
from safetensors import safe_open
from safetensors.torch import save, save_file

from cosmos_t2.model.config import TransferConfig
from cosmos_t2.model.control import TransferNet
from cosmos_t2.video import write_video

FRAMES, HEIGHT, WIDTH, FPS = 9, 64, 96, 8.0
RUN = ["--tiny", "--device", "cpu", "--quiet"]


@dataclass(frozen=True)
class Kit:
    """Good files made once: the cases break copies of them."""

    root: Path
    video: Path
    spec: dict[str, Any]  # a valid sample (absolute paths)
    latents: Path
    embeddings: Path

    def latents_parts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        with safe_open(str(self.latents), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
            meta = json.loads((f.metadata() or {})["cosmos_t2"])
        return tensors, meta


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    root = tmp_path_factory.mktemp("kit")
    frames = np.random.RandomState(0).randint(0, 255, (FRAMES, HEIGHT, WIDTH, 3)).astype(np.uint8)
    write_video(root / "input.mp4", frames, FPS)
    spec = {
        "name": "job",
        "prompt": "a robot arm",
        "video_path": str(root / "input.mp4"),
        "num_steps": 1,
        "num_video_frames_per_chunk": 5,
        "edge": {},
    }
    (root / "job.json").write_text(json.dumps(spec))
    code, _, _ = run_cli(["infer", str(root / "job.json"), "-o", str(root / "made"), "--latents-only", *RUN])
    assert code == 0
    emb = root / "made" / "prompt.safetensors"
    code, _, _ = run_cli(["encode-prompt", str(root / "job.json"), "-o", str(emb), "--tiny", "--no-cache"])
    assert code == 0
    return Kit(root, root / "input.mp4", spec, root / "made" / "job.latents.safetensors", emb)


Case = Callable[[Path, Kit], tuple[list[str], str]]  # (tmp, kit) -> (cosmos-t2 args, text the line names)
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(make: Case) -> Case:
        assert name not in CASES, name
        CASES[name] = make
        return make

    return register


def write_spec(tmp: Path, kit: Kit, changes: dict[str, Any], name: str = "spec.json") -> Path:
    """The kit's spec with `changes` (None removes a key) written to tmp/name."""
    data = {k: v for k, v in (kit.spec | changes).items() if v is not None}
    path = tmp / name
    path.write_text(json.dumps(data))
    return path


def infer(spec: Path, tmp: Path, *extra: str) -> list[str]:
    return ["infer", str(spec), "-o", str(tmp / "out"), *RUN, *extra]


# --- specs: each bad value is refused by `validate` and by `infer` alike ---------------------------------

SPEC_FAULTS: list[tuple[str, dict[str, Any], str]] = [
    # id, changes to the kit's spec, the key the error names
    ("unknown key", {"sede": 1}, "sede"),
    ("unknown control key", {"edge": {"wieght": 1}}, "edge.wieght"),
    ("name with slash", {"name": "a/b"}, "name"),
    ("name with newline", {"name": "a\nb"}, "name"),
    ("name too long in bytes", {"name": "é" * 120}, "name"),
    ("name not a string", {"name": 12}, "name"),
    ("num_steps zero", {"num_steps": 0}, "num_steps"),
    ("num_steps 10^9", {"num_steps": 10**9}, "num_steps"),
    ("num_steps text", {"num_steps": "35"}, "num_steps"),
    ("guidance too high", {"guidance": 8}, "guidance"),
    ("guidance NaN", {"guidance": float("nan")}, "guidance"),
    ("chunk not 1+4k", {"num_video_frames_per_chunk": 10}, "num_video_frames_per_chunk"),
    ("chunk of one frame", {"num_video_frames_per_chunk": 1}, "num_video_frames_per_chunk"),
    ("chunk too long", {"num_video_frames_per_chunk": 1 + 4 * 1000}, "num_video_frames_per_chunk"),
    ("conditional frames", {"num_conditional_frames": 3}, "num_conditional_frames"),
    ("max_frames zero", {"max_frames": 0}, "max_frames"),
    ("sigma_max text", {"sigma_max": "high"}, "sigma_max"),
    ("sigma_max inf", {"sigma_max": float("inf")}, "sigma_max"),
    ("weight too high", {"edge": {"control_weight": 2}}, "edge.control_weight"),
    ("weight NaN", {"edge": {"control_weight": float("nan")}}, "edge.control_weight"),
    ("control block not an object", {"edge": 1}, "edge"),
    ("no control block", {"edge": None}, "spec.json"),
    ("both prompts", {"prompt_path": "p.txt"}, "prompt"),
    ("no prompt", {"prompt": None}, "prompt"),
    ("missing video file", {"video_path": "nope.mp4"}, "video_path"),
    ("resolution", {"resolution": "1080"}, "resolution"),
    ("boolean as text", {"show_input": "yes"}, "show_input"),
    ("context frame zero", {"context_frame_index": 0}, "context_frame_index"),
    ("step threshold", {"guided_generation_step_threshold": 10**9}, "guided_generation_step_threshold"),
    ("labels without mask", {"guided_generation_foreground_labels": [1]}, "guided_generation_foreground_labels"),
    ("preset", {"edge": {"preset_edge_threshold": "max"}}, "edge.preset_edge_threshold"),
    ("blank mask prompt", {"edge": {"mask_prompt": " "}}, "edge.mask_prompt"),
    ("missing control file", {"edge": {"control_path": "edge.mp4"}}, "edge.control_path"),
]  # fmt: skip


def _spec_case(changes: dict[str, Any], key: str, command: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        spec = write_spec(tmp, kit, changes)
        args = ["validate", str(spec)] if command == "validate" else infer(spec, tmp)
        return args, key if key.endswith(".json") else f"key '{key}'"

    return make


for _id, _changes, _key in SPEC_FAULTS:
    for _command in ("validate", "infer"):
        case(f"spec/{_command}/{_id}")(_spec_case(_changes, _key, _command))


@case("spec/deeply nested JSON")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "deep.json").write_text('{"name": "x", "edge": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return ["validate", str(tmp / "deep.json")], "deep.json"


@case("spec/nested JSON under the parser's limit")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "deep.json").write_text(
        json.dumps(kit.spec | {"edge": {"control_path": [[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]}})
    )
    return infer(tmp / "deep.json", tmp), "edge.control_path"


@case("spec/deeply nested --set")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return ["validate", str(write_spec(tmp, kit, {})), "--set", "seed=" + "[" * 5000 + "]" * 5000], "--set"


@case("spec/invalid JSON")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "bad.json").write_text('{"name": "x",,}')
    return infer(tmp / "bad.json", tmp), "bad.json"


@case("spec/duplicate key")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "dup.json").write_text('{"name": "x", "name": "y"}')
    return ["validate", str(tmp / "dup.json")], "key 'name'"


@case("spec/top-level array")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "list.json").write_text("[]")
    return infer(tmp / "list.json", tmp), "list.json"


@case("spec/not UTF-8")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "latin.json").write_bytes(b'{"name": "caf\xe9"}')
    return ["validate", str(tmp / "latin.json")], "latin.json"


@case("spec/unsupported extension")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "spec.yaml").write_text("name: x")
    return infer(tmp / "spec.yaml", tmp), "spec.yaml"


@case("spec/file not found")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return infer(tmp / "missing.json", tmp), "missing.json"


@case("spec/empty JSONL line")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "batch.jsonl").write_text(json.dumps(kit.spec) + "\n\n")
    return ["validate", str(tmp / "batch.jsonl")], "batch.jsonl"


@case("spec/duplicate names in a JSONL")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "batch.jsonl").write_text(json.dumps(kit.spec) + "\n" + json.dumps(kit.spec) + "\n")
    return ["validate", str(tmp / "batch.jsonl")], "key 'name'"


@case("spec/--name not in the file")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return infer(write_spec(tmp, kit, {}), tmp, "--name", "other"), "key 'name'"


@case("spec/--set without =")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return infer(write_spec(tmp, kit, {}), tmp, "--set", "seed"), "--set"


@case("spec/--set into a number")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return infer(write_spec(tmp, kit, {}), tmp, "--set", "seed.x=1"), "key 'seed'"


@case("spec/--set out of range")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return infer(write_spec(tmp, kit, {}), tmp, "--set", "num_steps=100000"), "key 'num_steps'"


@case("spec/prompt file not UTF-8")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "prompt.txt").write_bytes(b"\xff\xfe\x00garbage")
    return infer(
        write_spec(tmp, kit, {"prompt": None, "prompt_path": str(tmp / "prompt.txt")}), tmp
    ), "prompt_path"


@case("spec/--json-out with two samples")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    lines = [json.dumps(kit.spec | {"name": n}) for n in ("a", "b")]
    (tmp / "batch.jsonl").write_text("\n".join(lines) + "\n")
    return ["validate", str(tmp / "batch.jsonl"), "--json-out", str(tmp / "job.json")], "batch.jsonl"


# --- media: videos, controls, masks, references ----------------------------------------------------------


def _bad_file(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


MEDIA_FAULTS: list[tuple[str, str, Callable[[Path, Kit], bytes]]] = [
    # id, file name, its bytes (the file replaces the input video)
    ("empty video", "empty.mp4", lambda tmp, kit: b""),
    ("text as video", "notes.mp4", lambda tmp, kit: b"just some text, not a video\n" * 20),
    ("truncated video", "cut.mp4", lambda tmp, kit: kit.video.read_bytes()[: kit.video.stat().st_size // 3]),
    ("video header only", "head.mp4", lambda tmp, kit: kit.video.read_bytes()[:64]),
    ("image named mp4", "still.mp4", lambda tmp, kit: b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
]


def _media_case(name: str, content: Callable[[Path, Kit], bytes], command: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        video = _bad_file(tmp, name, content(tmp, kit))
        spec = write_spec(tmp, kit, {"video_path": str(video)})
        if command == "infer":
            return infer(spec, tmp), name
        return [command, str(spec), "-o", str(tmp / "out"), "--tiny"], name

    return make


for _id, _name, _content in MEDIA_FAULTS:
    for _command in ("infer", "decode", "controls"):
        case(f"media/{_command}/{_id}")(_media_case(_name, _content, _command))


def _short_video(tmp: Path, name: str, frames: int) -> Path:
    write_video(tmp / name, np.zeros((frames, HEIGHT, WIDTH, 3), np.uint8), FPS)
    return tmp / name


@case("media/control with the wrong frame count")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    control = _short_video(tmp, "edge.mp4", 4)
    return infer(write_spec(tmp, kit, {"edge": {"control_path": str(control)}}), tmp), "edge.mp4"


@case("media/control not a video")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    control = _bad_file(tmp, "edge.mp4", b"nope")
    return infer(write_spec(tmp, kit, {"edge": {"control_path": str(control)}}), tmp), "edge.mp4"


@case("media/mask with the wrong frame count")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    mask = _short_video(tmp, "mask.mp4", 3)
    return infer(write_spec(tmp, kit, {"edge": {"mask_path": str(mask)}}), tmp), "mask.mp4"


@case("media/mask not a video")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    mask = _bad_file(tmp, "mask.mp4", b"\x00" * 300)
    return infer(write_spec(tmp, kit, {"edge": {"mask_path": str(mask)}}), tmp), "mask.mp4"


@case("media/style image not an image")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    image = _bad_file(tmp, "style.jpg", b"not a jpeg")
    return infer(write_spec(tmp, kit, {"image_context_path": str(image)}), tmp), "style.jpg"


@case("media/guided mask npz garbage")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    mask = _bad_file(tmp, "gg.npz", b"PK\x03\x04 broken zip")
    return infer(write_spec(tmp, kit, {"guided_generation_mask": str(mask)}), tmp), "gg.npz"


@case("media/guided mask video with the wrong frame count")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    mask = _short_video(tmp, "gg.mp4", 2)
    return infer(write_spec(tmp, kit, {"guided_generation_mask": str(mask)}), tmp), "gg.mp4"


@case("media/--controls-dir control with the wrong frame count")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "controls").mkdir()
    write_video(tmp / "controls" / "edge.mkv", np.zeros((3, 64, 80, 3), np.uint8), FPS, lossless=True)
    return infer(write_spec(tmp, kit, {}), tmp, "--controls-dir", str(tmp / "controls")), "edge.mkv"


@case("media/--controls-dir control of another size")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "controls").mkdir()
    write_video(tmp / "controls" / "edge.mkv", np.zeros((FRAMES, 32, 32, 3), np.uint8), FPS, lossless=True)
    return infer(write_spec(tmp, kit, {}), tmp, "--controls-dir", str(tmp / "controls")), "edge.mkv"


# --- masks: shapes JSON ----------------------------------------------------------------------------------

SHAPES_FAULTS: list[tuple[str, str, str]] = [
    # id, the shapes file's text, what the error names
    ("NaN coordinate", '{"shapes": [{"box": [NaN, 0, 10, 10]}]}', "shapes[0].box"),
    ("infinite coordinate", '{"shapes": [{"box": [0, 0, Infinity, 10]}]}', "shapes[0].box"),
    ("outside the frame", '{"shapes": [{"box": [5000, 5000, 6000, 6000]}]}', "shapes[0]"),
    ("pixels under normalized", '{"normalized": true, "shapes": [{"box": [2, 2, 9, 9]}]}', "shapes[0]"),
    ("box as text", '{"shapes": [{"box": "left half"}]}', "shapes[0].box"),
    ("box of booleans", '{"shapes": [{"box": [true, false, true, true]}]}', "shapes[0].box"),
    ("polygon of two points", '{"shapes": [{"polygon": [[0, 0], [5, 5]]}]}', "shapes[0].polygon"),
    ("frame out of range", '{"shapes": [{"box": [0, 0, 9, 9], "frames": [0, 99]}]}', "shapes[0].frames[1]"),
    ("frame as text", '{"shapes": [{"keyframes": [{"frame": "0", "box": [0, 0, 9, 9]}]}]}', "frame"),
    ("NaN width", '{"width": NaN, "shapes": [{"box": [0, 0, 9, 9]}]}', "key 'width'"),
    ("shapes not a list", '{"shapes": {"box": [0, 0, 9, 9]}}', "shapes.json"),
    ("deeply nested", '{"shapes": ' + "[" * 50_000 + "]" * 50_000 + "}", "shapes.json"),
    ("not JSON", "{shapes: box}", "shapes.json"),
]


def _shapes_case(text: str, names: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        (tmp / "shapes.json").write_text(text)
        spec = write_spec(tmp, kit, {"edge": {"mask_path": str(tmp / "shapes.json")}})
        return ["masks", str(spec), "-o", str(tmp / "out"), "--tiny", "--device", "cpu"], names

    return make


for _id, _text, _names in SHAPES_FAULTS:
    case(f"masks/{_id}")(_shapes_case(_text, _names))


@case("masks/infer with NaN shapes")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "shapes.json").write_text('{"shapes": [{"polygon": [[0, 0], [NaN, 5], [5, 5]]}]}')
    return infer(write_spec(tmp, kit, {"edge": {"mask_path": str(tmp / "shapes.json")}}), tmp), "shapes.json"


# --- models: checkpoints in a --model-dir ----------------------------------------------------------------


def _model_dir(tmp: Path, files: dict[str, bytes]) -> Path:
    folder = tmp / "models"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def _tensors(**tensors: torch.Tensor) -> bytes:
    return save(tensors)


def _tiny_net_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in TransferNet(TransferConfig.tiny()).state_dict().items()}


MODEL_FAULTS: list[tuple[str, dict[str, Callable[[], bytes]], str]] = [
    # id, files of the model folder, what the error names
    ("empty folder", {}, "models"),
    ("garbage safetensors", {"edge.safetensors": lambda: b"\x00" * 64}, "edge.safetensors"),
    ("truncated safetensors", {"edge.safetensors": lambda: save(_tiny_net_state())[:4096]}, "edge.safetensors"),
    ("wrong keys", {"edge.safetensors": lambda: _tensors(foo=torch.zeros(2)), "tokenizer.pth": lambda: b"x"}, "edge.safetensors"),
    ("garbage .pt", {"edge.pt": lambda: b"not a pickle", "tokenizer.pth": lambda: b"x"}, "edge.pt"),
    ("no VAE", {"edge.safetensors": lambda: save(_tiny_net_state())}, "models"),
    ("garbage VAE", {"edge.safetensors": lambda: save(_tiny_net_state()), "tokenizer.pth": lambda: b"junk"}, "tokenizer.pth"),
    ("VAE of wrong keys", {"edge.safetensors": lambda: save(_tiny_net_state()), "tokenizer.safetensors": lambda: _tensors(w=torch.zeros(1))}, "tokenizer.safetensors"),
]  # fmt: skip


def _model_case(files: dict[str, Callable[[], bytes]], names: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        folder = _model_dir(tmp, {name: content() for name, content in files.items()})
        return infer(write_spec(tmp, kit, {}), tmp, "--model-dir", str(folder)), names

    return make


for _id, _files, _names in MODEL_FAULTS:
    case(f"models/{_id}")(_model_case(_files, _names))


@case("models/--model-dir not found")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return infer(write_spec(tmp, kit, {}), tmp, "--model-dir", str(tmp / "nowhere")), "nowhere"


@case("models/full size without --model-dir")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    spec = write_spec(tmp, kit, {})
    return ["infer", str(spec), "-o", str(tmp / "out"), "--device", "cpu", "--quiet"], "--model-dir"


CONVERT_FAULTS: list[tuple[str, str, Callable[[], bytes], str]] = [
    ("missing", "ckpt.safetensors", lambda: b"", "missing"),
    ("garbage safetensors", "ckpt.safetensors", lambda: b"\xff" * 100, "ckpt.safetensors"),
    ("garbage .pt", "ckpt.pt", lambda: b"PK not a zip", "ckpt.pt"),
    ("wrong keys", "ckpt.safetensors", lambda: _tensors(a=torch.zeros(3)), "ckpt.safetensors"),
]


def _convert_case(name: str, content: Callable[[], bytes], names: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        src = tmp / (name if names != "missing" else "missing.safetensors")
        if names != "missing":
            src.write_bytes(content())
        return ["convert-checkpoint", str(src), str(tmp / "out.safetensors"), "--tiny"], src.name

    return make


for _id, _name, _content, _names in CONVERT_FAULTS:
    case(f"models/convert-checkpoint {_id}")(_convert_case(_name, _content, _names))


@case("models/convert-checkpoint bad dtype")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    save_file(_tiny_net_state(), str(tmp / "ok.safetensors"))
    return [
        "convert-checkpoint",
        str(tmp / "ok.safetensors"),
        str(tmp / "o.safetensors"),
        "--dtype",
        "fp8",
    ], "fp8"


# --- CLI: options and secondary inputs -------------------------------------------------------------------


@case("cli/infer unknown device")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return [
        "infer",
        str(write_spec(tmp, kit, {})),
        "-o",
        str(tmp / "out"),
        "--tiny",
        "--device",
        "tpu",
    ], "--device"


@case("cli/infer device of a bad index")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return [
        "infer",
        str(write_spec(tmp, kit, {})),
        "-o",
        str(tmp / "o"),
        "--tiny",
        "--device",
        "cuda:x",
    ], "--device"


@case("cli/infer cuda without a GPU")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    return [
        "infer",
        str(write_spec(tmp, kit, {})),
        "-o",
        str(tmp / "o"),
        "--tiny",
        "--device",
        "cuda",
    ], "--device"


@case("cli/render unknown device")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return ["render", str(kit.latents), "-o", str(tmp / "v.mp4"), "--tiny", "--device", "npu"], "--device"


@case("cli/encode-prompt unknown device")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    spec = write_spec(tmp, kit, {})
    return [
        "encode-prompt",
        str(spec),
        "-o",
        str(tmp / "e.safetensors"),
        "--tiny",
        "--device",
        "gpu",
    ], "--device"


@case("cli/report unknown device")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return ["report", str(tmp), "-o", str(tmp / "r.html"), "--device", "metal"], "--device"


@case("cli/encode-prompt without an encoder")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    spec = write_spec(tmp, kit, {})
    return ["encode-prompt", str(spec), "-o", str(tmp / "e.safetensors"), "--no-cache"], "--text-encoder-dir"


def _embeddings_case(content: Callable[[Kit], bytes], names: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        emb = _bad_file(tmp, "emb.safetensors", content(kit))
        return infer(write_spec(tmp, kit, {}), tmp, "--prompt-embeddings", str(emb)), names

    return make


def _kit_embeddings(kit: Kit, **changes: torch.Tensor) -> bytes:
    with safe_open(str(kit.embeddings), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        meta = dict(f.metadata() or {})
    return save({k: v for k, v in (tensors | changes).items() if v.numel() or v.dim()}, metadata=meta)


EMBEDDING_FAULTS: list[tuple[str, Callable[[Kit], bytes], str]] = [
    ("garbage", lambda kit: b"\x13\x00\x00\x00\x00\x00\x00\x00{garbage", "emb.safetensors"),
    ("empty", lambda kit: b"", "emb.safetensors"),
    ("truncated", lambda kit: kit.embeddings.read_bytes()[:-100], "emb.safetensors"),
    ("wrong keys", lambda kit: _tensors(text=torch.zeros(1, 4, 8)), "emb.safetensors"),
    ("1-D tensor", lambda kit: _kit_embeddings(kit, prompt=torch.zeros(8)), "key 'prompt'"),
    ("scalar tensor", lambda kit: _kit_embeddings(kit, negative_prompt=torch.tensor(1.0)), "key 'negative_prompt'"),
    ("NaN values", lambda kit: _kit_embeddings(kit, prompt=torch.full((1, 4, 1024), float("nan"))), "key 'prompt'"),
    ("integer values", lambda kit: _kit_embeddings(kit, prompt=torch.zeros(1, 4, 1024, dtype=torch.int32)), "key 'prompt'"),
    ("wrong channels", lambda kit: _kit_embeddings(kit, prompt=torch.zeros(1, 4, 7), negative_prompt=torch.zeros(1, 4, 7)), "emb.safetensors"),
]  # fmt: skip

for _id, _content, _names in EMBEDDING_FAULTS:
    case(f"cli/--prompt-embeddings {_id}")(_embeddings_case(_content, _names))


@case("cli/--prompt-embeddings of another prompt")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    spec = write_spec(tmp, kit, {"prompt": "a different prompt"})
    return infer(spec, tmp, "--prompt-embeddings", str(kit.embeddings)), "key 'prompt'"


@case("cli/--prompt-embeddings not found")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return infer(write_spec(tmp, kit, {}), tmp, "--prompt-embeddings", str(tmp / "none.safetensors")), "none"


# --- render: latents files -------------------------------------------------------------------------------


def _latents(kit: Kit, tensors: dict[str, torch.Tensor] | None = None, **meta_changes: Any) -> bytes:
    good_tensors, meta = kit.latents_parts()
    meta = {k: v for k, v in (meta | meta_changes).items() if v is not None}
    return save(good_tensors if tensors is None else tensors, metadata={"cosmos_t2": json.dumps(meta)})


def _chunks(kit: Kit, **changes: torch.Tensor) -> dict[str, torch.Tensor]:
    return kit.latents_parts()[0] | changes


LATENTS_FAULTS: list[tuple[str, Callable[[Kit], bytes], str]] = [
    ("garbage", lambda kit: b"garbage" * 10, "lat.latents.safetensors"),
    ("empty", lambda kit: b"", "lat.latents.safetensors"),
    ("truncated", lambda kit: kit.latents.read_bytes()[:-64], "lat.latents.safetensors"),
    ("no metadata", lambda kit: save(kit.latents_parts()[0]), "lat.latents.safetensors"),
    ("metadata not JSON", lambda kit: save(kit.latents_parts()[0], metadata={"cosmos_t2": "{"}), "lat.latents.safetensors"),
    ("metadata a list", lambda kit: save(kit.latents_parts()[0], metadata={"cosmos_t2": "[1]"}), "lat.latents.safetensors"),
    ("plan without fps", lambda kit: _latents(kit, fps=None), "key 'fps'"),
    ("plan with zero fps", lambda kit: _latents(kit, fps=0), "key 'fps'"),
    ("plan with an unknown key", lambda kit: _latents(kit, extra=1), "key 'extra'"),
    ("plan with huge size", lambda kit: _latents(kit, source_size=[10**6, 10**6]), "key 'source_size'"),
    ("plan with text frames", lambda kit: _latents(kit, num_frames="9"), "key 'num_frames'"),
    ("plan with too many frames", lambda kit: _latents(kit, num_frames=10**6), "key 'num_frames'"),
    ("plan with no chunks", lambda kit: _latents(kit, chunks=[]), "key 'chunks'"),
    ("plan with a broken chunk", lambda kit: _latents(kit, chunks=[{"index": 0}]), "key 'chunks[0]'"),
    ("one chunk tensor missing", lambda kit: _latents(kit, {"chunk_0": _chunks(kit)["chunk_0"]}), "key 'chunks'"),
    ("wrong tensor shape", lambda kit: _latents(kit, _chunks(kit, chunk_1=torch.zeros(3))), "key 'chunk_1'"),
    ("wrong channels", lambda kit: _latents(kit, _chunks(kit, chunk_0=torch.zeros(1, 3, 2, 8, 10))), "key 'chunk_0'"),
    ("NaN latents", lambda kit: _latents(kit, _chunks(kit, chunk_0=torch.full((1, 16, 2, 8, 10), float("nan")))), "key 'chunk_0'"),
]  # fmt: skip


def _latents_case(content: Callable[[Kit], bytes], names: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        latents = _bad_file(tmp, "lat.latents.safetensors", content(kit))
        return ["render", str(latents), "-o", str(tmp / "out.mp4"), "--tiny", "--device", "cpu"], names

    return make


for _id, _content, _names in LATENTS_FAULTS:
    case(f"render/{_id}")(_latents_case(_content, _names))


@case("render/not found")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return ["render", str(tmp / "gone.latents.safetensors"), "-o", str(tmp / "o.mp4"), "--tiny"], "gone"


@case("render/tiny latents without --tiny")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    shutil.copy(kit.latents, tmp / "lat.latents.safetensors")
    return [
        "render",
        str(tmp / "lat.latents.safetensors"),
        "-o",
        str(tmp / "o.mp4"),
        "--device",
        "cpu",
    ], "lat"


@case("render/garbage VAE in --model-dir")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    shutil.copy(kit.latents, tmp / "lat.latents.safetensors")
    folder = _model_dir(tmp, {"tokenizer.pth": b"\x80\x02junk"})
    args = ["render", str(tmp / "lat.latents.safetensors"), "-o", str(tmp / "o.mp4"), "--tiny"]
    return [*args, "--device", "cpu", "--model-dir", str(folder)], "tokenizer.pth"


# --- report: manifests -----------------------------------------------------------------------------------


def _good_manifest() -> dict[str, Any]:
    paths = {k: f"{k}/x" for k in ("spec", "prompt", "latents", "diffuse_sidecar", "video")}
    return {"version": 1, "hardware": {"label": "cpu"}, "bench": [], "jobs": [
        {"key": "0123456789abcdef", "name": "j", "spec_file": "j.json", "paths": paths},
    ]}  # fmt: skip


def _without(data: dict[str, Any], *path: str) -> dict[str, Any]:
    node = data
    for part in path[:-1]:
        node = node[part] if not part.isdigit() else node[int(part)]
    del node[path[-1]]
    return data


def _with(data: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    node = data
    for part in path[:-1]:
        node = node[part] if not part.isdigit() else node[int(part)]
    node[path[-1]] = value
    return data


MANIFEST_FAULTS: list[tuple[str, Callable[[], str], str]] = [
    ("not JSON", lambda: "{", "manifest.json"),
    ("a list", lambda: "[]", "manifest.json"),
    ("no jobs", lambda: json.dumps(_without(_good_manifest(), "jobs")), "key 'jobs'"),
    ("job not an object", lambda: json.dumps(_with(_good_manifest(), ["x"], "jobs")), "key 'jobs[0]'"),
    ("job without paths", lambda: json.dumps(_without(_good_manifest(), "jobs", "0", "paths")), "jobs[0].paths"),
    ("job without a sidecar path", lambda: json.dumps(_without(_good_manifest(), "jobs", "0", "paths", "diffuse_sidecar")), "jobs[0].paths.diffuse_sidecar"),
    ("job without a name", lambda: json.dumps(_without(_good_manifest(), "jobs", "0", "name")), "jobs[0].name"),
    ("path outside the run", lambda: json.dumps(_with(_good_manifest(), "../../etc/passwd", "jobs", "0", "paths", "video")), "jobs[0].paths.video"),
    ("settings a list", lambda: json.dumps(_with(_good_manifest(), [1], "jobs", "0", "settings")), "jobs[0].settings"),
    ("hardware a string", lambda: json.dumps(_with(_good_manifest(), "gpu", "hardware")), "key 'hardware'"),
    ("bench paths absolute", lambda: json.dumps(_with(_good_manifest(), ["/etc/passwd"], "bench")), "key 'bench'"),
    ("deeply nested", lambda: '{"jobs": ' + "[" * 100_000 + "]" * 100_000 + "}", "manifest.json"),
    ("not UTF-8", lambda: '{"jobs": [], "hardware": {"label": "caf\udce9"}}', "manifest.json"),
]  # fmt: skip


def _manifest_case(text: Callable[[], str], names: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        (tmp / "results" / "cpu").mkdir(parents=True)
        (tmp / "results" / "cpu" / "manifest.json").write_bytes(text().encode("utf-8", "surrogateescape"))
        return ["report", str(tmp / "results"), "-o", str(tmp / "report.html"), "--no-metrics"], names

    return make


for _id, _text, _names in MANIFEST_FAULTS:
    case(f"report/manifest {_id}")(_manifest_case(_text, _names))


@case("report/results folder not found")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return ["report", str(tmp / "results"), "-o", str(tmp / "report.html")], "results"


@case("report/no run in the folder")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "results").mkdir()
    return ["report", str(tmp / "results"), "-o", str(tmp / "report.html")], "results"


# --- issue 32: the server's folders and key, numeric options, files that are not what their name says -------


def _serve_socket(tmp: Path, mode: int, key_mode: int | None = None) -> list[str]:
    folder = tmp / "run"
    folder.mkdir(mode=0o700)
    if key_mode is not None:
        (folder / "authkey").write_bytes(b"k" * 32)  # planted: its contents known to whoever wrote it
        (folder / "authkey").chmod(key_mode)
    folder.chmod(mode)
    return ["serve", "--socket", str(folder / "s.sock"), "--idle-timeout", "5"]


@case("serve/--socket in a world-writable folder")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return _serve_socket(tmp, 0o1777), "run: the server folder"


@case("serve/--socket in a group-writable folder")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return _serve_socket(tmp, 0o770), "run: the server folder"


@case("serve/a planted key readable by others")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    return _serve_socket(tmp, 0o700, key_mode=0o644), "authkey"


NUMERIC_FAULTS: list[tuple[str, list[str], str]] = [
    # id, the command's arguments ({spec}: a good spec), the option the line names
    ("infer --memory-cap nan", ["infer", "{spec}", *RUN, "--memory-cap", "nan"], "--memory-cap"),
    ("infer --memory-cap 1e400", ["infer", "{spec}", *RUN, "--memory-cap", "1e400"], "--memory-cap"),
    ("validate --gpus 0", ["validate", "{spec}", "--estimate", "--gpus", "0"], "--gpus"),
    ("validate --gpus -2", ["validate", "{spec}", "--estimate", "--gpus", "-2"], "--gpus"),
    ("infer --server-idle nan", ["infer", "{spec}", *RUN, "--server", "--server-idle", "nan"], "--server-idle"),
    ("serve --idle-timeout 0", ["serve", "--idle-timeout", "0"], "--idle-timeout"),
    ("bench --iters 0", ["bench", "--iters", "0"], "--iters"),
]  # fmt: skip


def _numeric_case(args: list[str], option: str) -> Case:
    def make(tmp: Path, kit: Kit) -> tuple[list[str], str]:
        spec = str(write_spec(tmp, kit, {}))
        return [a.format(spec=spec) for a in args], option

    return make


for _id, _args, _option in NUMERIC_FAULTS:
    case(f"cli/{_id}")(_numeric_case(_args, _option))


@case("models/check a text file named edge.pt")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    folder = _model_dir(
        tmp, {"edge.pt": b"hello\n", "tokenizer.pth": b"<html><body>rate limited</body></html>"}
    )
    return ["models", "check", str(folder), "--modalities", "edge", "--no-hash"], "edge.pt"


@case("spec/a bad line in a JSONL")
def _(tmp: Path, kit: Kit) -> tuple[list[str], str]:
    (tmp / "jobs.jsonl").write_text(json.dumps(kit.spec) + '\n{"name": "broken", "prompt": \n')
    return ["validate", str(tmp / "jobs.jsonl")], "line 2"


# Faults whose promise is a recovery, not a one-line refusal (the job goes on, is redone, or another client
# is served): each is the test named here, which the catalog only points at.
RECOVERIES: list[tuple[str, str]] = [
    ("a connection that never sends is dropped; the next client is served",
     "service/test_serve.py::test_a_silent_connection_is_dropped_and_never_blocks_the_next_client"),
    ("silent connections do not keep a server past its idle timeout",
     "service/test_serve.py::test_the_idle_timeout_ends_a_server_held_by_silent_connections"),
    ("a server failing after binding: its client gets the error within seconds",
     "service/test_serve.py::test_a_client_gets_the_error_of_a_server_that_fails_after_binding_within_seconds"),
    ("the key file deleted or replaced under a live server",
     "service/test_serve.py::test_a_key_file_deleted_or_replaced_under_a_live_server_is_recovered_from"),
    ("serve --stop when the key is refused", "service/test_serve.py::test_serve_stop_works_from_the_pid_file_when_the_key_is_refused"),
    ("the socket is 0600 whatever the umask", "service/test_serve.py::test_the_socket_is_private_whatever_the_umask"),
    ("a bad JSONL line fails alone; the other lines run",
     "service/test_batch_bookkeeping.py::test_a_bad_jsonl_line_fails_alone_and_the_other_lines_run"),
    ("a job named 'batch' in a batch", "service/test_batch_bookkeeping.py::test_a_job_named_batch_cannot_clobber_the_batch_record"),
    ("a truncated mp4 beside its sidecar is redone",
     "service/test_batch_bookkeeping.py::test_a_truncated_video_beside_its_sidecar_is_redone"),
    ("models check: files that are not what their names say (fake hub)",
     "weights/test_models_hub.py::test_check_opens_each_file_and_fails_one_that_is_not_what_its_name_says"),
    ("a cache folder that cannot be written", "model/test_text.py::test_a_cache_that_cannot_be_written_warns_and_the_job_goes_on"),
    ("a sidecar field of another type in the report",
     "report/test_report.py::test_a_sidecar_field_of_another_type_is_shown_as_missing_with_one_warning"),
    ("8 clients, clients and the server killed under load", "service/test_serve_soak.py::test_soak_short"),
    ("messages name only options their command has",
     "cli/test_error_options.py::test_every_option_a_message_names_exists_on_a_command_that_prints_it"),
]  # fmt: skip


@pytest.mark.parametrize("pointer", [p for _, p in RECOVERIES], ids=[i for i, _ in RECOVERIES])
def test_each_recovery_points_at_a_test(pointer: str) -> None:
    """A renamed or deleted test must not leave its fault uncovered while the catalog still lists it."""
    file, name = pointer.split("::")
    tree = ast.parse((Path(__file__).resolve().parents[1] / file).read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body), pointer


# --- workflow: bad sweep configs stop `snakemake` when the DAG is built -----------------------------------

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FAULTS: list[tuple[str, dict[str, Any], str, str]] = [
    # id, spec changes, config lines, what the one line names
    ("periodic name", {"name": "run_" + "0" * 24}, "", "key 'name'"),
    ("name too long", {"name": "".join(chr(97 + i % 26) for i in range(240))}, "", "key 'name'"),
    ("grid weight beyond a spec's range", {}, "grid: {set: {edge.control_weight: [1.5]}}", "key 'edge.control_weight'"),
    ("grid steps beyond the bound", {}, "grid: {num_steps: [5000]}", "num_steps"),
    ("unknown config key", {}, "colour: blue", "colour"),
    ("spec file missing", {}, "specs: [nope.json]", "nope.json"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "config", "names"), [c[1:] for c in WORKFLOW_FAULTS], ids=[c[0] for c in WORKFLOW_FAULTS]
)
def test_bad_sweep_stops_the_dag_with_one_line(
    changes: dict[str, Any], config: str, names: str, kit: Kit, tmp_path: Path
) -> None:
    write_spec(tmp_path, kit, changes, "sample.json")
    lines = ["specs: [sample.json]", "tiny: true", "device: cpu", "results: results"]
    if config:
        lines = [ln for ln in lines if not ln.startswith(config.split(":")[0] + ":")] + [config]
    (tmp_path / "config.yaml").write_text("\n".join(lines) + "\n")
    cmd = [*snakemake_command(profile=None), "--cores", "1", "--dry-run", "--quiet"]
    cmd += ["--configfile", "config.yaml"]  # this sweep, not the default config/config.yaml
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert "Traceback" not in text and "cosmos_t2/" not in text, text[-3000:]  # no frame from our code
    assert any(names in line for line in text.splitlines()), text[-3000:]
    assert not (tmp_path / "results").exists()


# --- the harness -----------------------------------------------------------------------------------------


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def test_the_catalog_is_large_enough() -> None:
    assert len(CASES) >= 80, len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fault_is_one_line_naming_it_and_leaves_nothing(
    name: str, kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, names = CASES[name](tmp_path, kit)
    before = _files(tmp_path)
    capsys.readouterr()
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        code, out, err = run_cli(args, capsys)
    finally:  # `serve` sets its own handler before it checks its folder
        signal.signal(signal.SIGTERM, sigterm)
    lines = without_progress(err)  # the error is the one line left
    assert code == 2, (code, out[-2000:], err[-2000:])
    assert "Traceback" not in out + err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    assert names in lines[0], lines[0]
    assert _files(tmp_path) == before, sorted(_files(tmp_path) - before)
