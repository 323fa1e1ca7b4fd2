"""`cosmos-t2 models fetch|check` against a local hub cache laid out like the Hub (tests/_fake_hub.py):
no network, the official repository ids, revisions and file names."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _cli import OPTION, command_options, named_command, run_cli
from _fake_hub import EVERYTHING, build_fake_hub

from cosmos_t2.controls.models import FETCHED_FOLDERS, ModelPaths, load_depth_model
from cosmos_t2.errors import CosmosError
from cosmos_t2.job.run import JobResult, RunOptions
from cosmos_t2.weights.hub import MANIFEST
from cosmos_t2.weights.locate import checkpoint_identity, locate_models
from cosmos_t2.weights.official import OfficialFile, official_files

REPO = Path(__file__).resolve().parents[2]

ALL = ["--distilled", "--image-encoder"]


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COSMOS_T2_CACHE_DIR", str(tmp_path / "cosmos-cache"))


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    cache = tmp_path / "hub"
    build_fake_hub(cache)
    return cache


def fetch(folder: Path, hub: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_cli(["models", "fetch", str(folder), "--cache-dir", str(hub), *extra], capsys)


def test_fetch_lays_out_the_folder_infer_expects_and_check_passes(
    tmp_path: Path, hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    code, out, err = fetch(folder, hub, *ALL, capsys=capsys)
    assert code == 0, err
    names = {"edge.pt", "edge_distilled.pt", "vis.pt", "depth.pt", "seg.pt", "tokenizer.pth"}
    folders = {"text_encoder", "image_encoder", "depth_anything", "grounding_dino", "sam2"}
    assert {p.name for p in folder.iterdir()} == names | folders | {MANIFEST}
    assert "nvidia/Cosmos-Transfer2.5-2B/general/blur/ba2f44f2" in out and "NVIDIA Open Model License" in out
    # Links into the cache keep the official UUID names, so each checkpoint's modality is known.
    assert (folder / "vis.pt").is_symlink()
    assert [checkpoint_identity(folder / f"{m}.pt")[0] for m in ("edge", "vis", "depth", "seg")] == [
        "edge", "vis", "depth", "seg"
    ]  # fmt: skip
    assert checkpoint_identity(folder / "edge_distilled.pt") == ("edge", True)
    files = locate_models(folder, ["depth"], tiny=False, need_text_encoder=True, need_image_encoder=True)
    assert files.checkpoints["depth"] == folder / "depth.pt" and files.text_encoder == folder / "text_encoder"

    manifest = json.loads((folder / MANIFEST).read_text())["slots"]
    assert manifest["tokenizer.pth"]["repo"] == "nvidia/Cosmos-Predict2.5-2B"
    assert len(manifest["edge.pt"]["sha256"]) == 64  # known from the LFS blob's name

    code, out, err = run_cli(["models", "check", str(folder), *ALL], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 12 and all(line.startswith("ok") for line in lines)
    assert "sha256 matches" in lines[0] and "accepts this folder" in lines[-1]


def test_check_names_missing_wrong_and_altered_files(
    tmp_path: Path, hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    code, _, err = fetch(folder, hub, "--modalities", "edge,depth", "--copy", capsys=capsys)
    assert code == 0, err
    assert not (folder / "edge.pt").is_symlink() and not (folder / "text_encoder").is_symlink()
    assert not (folder / "text_encoder" / "pytorch_model.bin").exists()  # only what transformers loads

    (folder / "edge.pt").write_bytes((folder / "edge.pt").read_bytes() + b"!")  # one byte more
    (folder / "tokenizer.pth").unlink()
    code, out, err = run_cli(["models", "check", str(folder), "--modalities", "edge,depth"], capsys)
    assert code == 2
    assert "FAIL edge.pt" in out and "differs from the fetched" in out
    assert "FAIL tokenizer.pth" in out and "missing" in out
    assert err.count("\n") == 1 and "edge.pt, tokenizer.pth" in err and str(folder) in err

    # A seg checkpoint put in the depth slot is refused by its UUID name, as infer refuses it.
    (folder / "depth.pt").unlink()
    seg = next(hub.glob("models--nvidia--Cosmos-Transfer2.5-2B/snapshots/*/general/seg/*.pt"))
    (folder / "depth.pt").symlink_to(seg)
    code, out, _ = run_cli(["models", "check", str(folder), "--modalities", "depth", "--no-hash"], capsys)
    assert code == 2 and "this is the seg checkpoint, not depth" in out
    assert "sits in the depth slot" in out  # the (infer) line: locate_models says the same


def test_fetch_offline_without_the_file_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = fetch(tmp_path / "models", tmp_path / "empty-cache", "--modalities", "vis", capsys=capsys)
    assert code == 2 and err.count("\n") == 1
    assert "general/blur/ba2f44f2-c726-4fe7-949f-597069d9b91c_ema_bf16.pt" in err and "offline" in err


def test_fetch_again_replaces_links_and_refuses_to_overwrite_a_real_folder(
    tmp_path: Path, hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    for _ in range(2):  # a second fetch replaces the links in place
        code, _, err = fetch(folder, hub, "--modalities", "edge", "--no-text-encoder", capsys=capsys)
        assert code == 0, err
    assert os.readlink(folder / "edge.pt").endswith("61f5694b-0ad5-4ecd-8ad7-c8545627d125_ema_bf16.pt")
    (folder / "text_encoder").mkdir()
    code, _, err = fetch(folder, hub, "--modalities", "edge", capsys=capsys)
    assert code == 2 and "text_encoder" in err and "already a folder" in err


def test_unknown_modality_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["models", "check", str(tmp_path), "--modalities", "edge,normals"], capsys)
    assert code == 2 and "normals" in err and "--modalities" in err


def test_fetch_hands_the_mirror_and_offline_choice_to_huggingface_hub(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub

    seen: list[dict[str, object]] = []
    real_file, real_snapshot = huggingface_hub.hf_hub_download, huggingface_hub.snapshot_download

    def file(*args: object, **kwargs: object) -> str:
        seen.append(dict(kwargs))
        return real_file(*args, **{**kwargs, "endpoint": None})  # type: ignore[arg-type]

    def snapshot(*args: object, **kwargs: object) -> str:
        seen.append(dict(kwargs))
        return real_snapshot(*args, **{**kwargs, "endpoint": None})  # type: ignore[arg-type]

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", file)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    args = ["--modalities", "edge", "--mirror", "https://hub.example.internal", "--offline"]
    code, _, err = fetch(tmp_path / "models", hub, *args, capsys=capsys)
    assert code == 0, err
    assert len(seen) == 3  # edge.pt, tokenizer.pth, text_encoder/
    assert all(k["endpoint"] == "https://hub.example.internal" and k["local_files_only"] for k in seen)
    assert all(k["cache_dir"] == str(hub) for k in seen)
    assert seen[0]["revision"] == "b67b64abda3801a9aceddbff2bdb86126c06db74"  # pinned as upstream


def test_check_opens_each_file_and_fails_one_that_is_not_what_its_name_says(
    tmp_path: Path, hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    code, _, err = fetch(folder, hub, "--modalities", "edge", "--copy", capsys=capsys)
    assert code == 0, err
    (folder / "edge.pt").write_bytes(b"hello\n")  # a 6-byte text file
    (folder / "tokenizer.pth").write_bytes(b"<html><body>rate limited</body></html>")  # an error page
    weights = next((folder / "text_encoder").rglob("*.safetensors"))
    weights.write_bytes(b"{}")  # too short for a header
    code, out, err = run_cli(["models", "check", str(folder), "--modalities", "edge", "--no-hash"], capsys)
    assert code == 2
    lines = {line.split()[1]: line for line in out.splitlines()}
    assert lines["edge.pt"].startswith("FAIL") and "not a PyTorch checkpoint" in lines["edge.pt"]
    assert lines["tokenizer.pth"].startswith("FAIL") and "not a PyTorch checkpoint" in lines["tokenizer.pth"]
    assert lines["text_encoder"].startswith("FAIL") and "not a safetensors file" in lines["text_encoder"]
    assert "accepts this folder" not in out
    assert "edge.pt" in err and "tokenizer.pth" in err and err.count("\n") == 1


def _found_by_infer(folder: Path, item: OfficialFile) -> Path | None:
    """Where infer's own lookups (`locate_models`, and `ModelPaths` as `job.run` builds it from
    --model-dir alone) find the model `models fetch` put at `item.slot`."""
    if item.modality is not None:  # the distilled checkpoint as `infer --distilled` asks for it
        files = locate_models(folder, [item.modality], tiny=False, need_text_encoder=False,
                              need_image_encoder=False, prefer_distilled=item.distilled)  # fmt: skip
        assert files.distilled == item.distilled
        return files.checkpoints[item.modality]
    files = locate_models(folder, ["edge"], tiny=False, need_text_encoder=True, need_image_encoder=True)
    by_slot = {
        "tokenizer.pth": files.vae,
        "text_encoder": files.text_encoder,
        "image_encoder": files.image_encoder,
    }
    if item.slot in by_slot:
        return by_slot[item.slot]
    paths = ModelPaths.from_env(model_dir=folder, environ={}, has_options=False)
    field = next(f for f, fetched in FETCHED_FOLDERS.items() if fetched == item.slot)
    return paths.require(field)


def test_infer_model_dir_finds_every_model_fetch_fetched(
    tmp_path: Path, hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    code, _, err = fetch(folder, hub, *ALL, capsys=capsys)
    assert code == 0, err
    fetched = official_files(EVERYTHING)
    assert {item.slot for item in fetched} == {p.name for p in folder.iterdir()} - {MANIFEST}
    for item in fetched:
        # the distilled edge checkpoint is what infer --distilled reads; without it, the full one
        assert _found_by_infer(folder, item) == folder / item.slot, item.slot
    distilled = [item for item in fetched if item.distilled]
    assert [item.slot for item in distilled] == ["edge_distilled.pt"]
    full = locate_models(folder, ["edge"], tiny=False, need_text_encoder=True, need_image_encoder=False)
    assert full.checkpoints["edge"] == folder / "edge.pt" and not full.distilled
    # and `infer --distilled` hands the job exactly that choice
    assert infer_args(["--model-dir", str(folder), "--distilled"]).prefer_distilled
    assert not infer_args(["--model-dir", str(folder)]).prefer_distilled


def infer_args(extra: list[str]) -> RunOptions:
    """The RunOptions `cosmos-t2 infer` builds for the bundled edge example with `extra` options."""
    import cosmos_t2.service.infer as infer_module

    seen: list[RunOptions] = []

    def fake_run(spec: object, options: RunOptions) -> JobResult:
        seen.append(options)
        return JobResult(None, None, None, 0, 0.0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(infer_module, "run_on_ranks", fake_run)
        code, _, err = run_cli(["infer", str(REPO / "examples/robot/edge.json"), "-o", "unused", *extra])
    assert code == 0 and len(seen) == 1, err
    return seen[0]


def _infer_path_messages(empty: Path) -> list[str]:
    """Every error infer's model lookups can raise for a folder without the file, as text."""
    messages = []
    attempts: list[Callable[[], object]] = [
        lambda: locate_models(None, ["edge"], tiny=False, need_text_encoder=True, need_image_encoder=False),
        lambda: locate_models(
            empty / "absent", ["edge"], tiny=False, need_text_encoder=True, need_image_encoder=False
        ),
        lambda: locate_models(empty, ["edge"], tiny=False, need_text_encoder=True, need_image_encoder=False),
        lambda: ModelPaths.from_env(model_dir=empty, environ={}, has_options=False).require_all(
            *FETCHED_FOLDERS
        ),
        lambda: ModelPaths(depth_model_dir=empty / "absent", has_options=False).require("depth_model_dir"),
        lambda: load_depth_model(empty, torch.device("cpu")),
    ]
    for attempt in attempts:
        with pytest.raises(CosmosError) as info:
            attempt()
        messages.append(str(info.value))
    (empty / "edge.pt").write_bytes(b"")
    for need_text, need_image in ((False, False), (True, False), (False, True)):
        with pytest.raises(CosmosError) as info:
            if need_text or need_image:
                (empty / "tokenizer.pth").write_bytes(b"")
            locate_models(
                empty, ["edge"], tiny=False, need_text_encoder=need_text, need_image_encoder=need_image
            )
        messages.append(str(info.value))
    return messages


def test_messages_of_infer_model_lookups_name_only_options_infer_has(tmp_path: Path) -> None:
    """An option a message names belongs to `infer` (which prints it), or to the command the text names
    right before it (`cosmos-t2 models fetch`)."""
    messages = _infer_path_messages(tmp_path)
    assert len(set(messages)) == len(messages)  # each attempt reached its own message
    named = {(match.group(), named_command(text, match.start()) or "infer", text) for text in messages
             for match in OPTION.finditer(text)}  # fmt: skip
    assert {"--model-dir", "--tiny", "--prompt-embeddings"} <= {option for option, _, _ in named}
    wrong = [(option, text) for option, command, text in named if option not in command_options()[command]]
    assert not wrong


def test_infer_distilled_is_refused_without_a_distilled_checkpoint_or_with_other_controls(
    tmp_path: Path, hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    code, _, err = fetch(folder, hub, capsys=capsys)  # the full models only
    assert code == 0, err
    with pytest.raises(CosmosError, match=r"--distilled: no distilled checkpoint: expected edge_distilled"):
        locate_models(folder, ["edge"], tiny=False, need_text_encoder=False, need_image_encoder=False,
                      prefer_distilled=True)  # fmt: skip
    with pytest.raises(
        CosmosError, match=r"--distilled: the distilled model runs only with the edge control"
    ):
        locate_models(folder, ["edge", "depth"], tiny=False, need_text_encoder=False, need_image_encoder=False,
                      prefer_distilled=True)  # fmt: skip
