"""Text embeddings: the tiny random Qwen2.5-VL encoder, parity with diffusers' _get_prompt_embeds, the
cache, loading from a directory, and `cosmos-t2 encode-prompt`."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest
import torch
from _cli import run_cli

from cosmos_t2.errors import CosmosError
from cosmos_t2.jobspec.job import DEFAULT_NEGATIVE_PROMPT
from cosmos_t2.model.text import (
    MAX_LENGTH,
    SYSTEM_PROMPT,
    TINY_LABEL,
    CacheWriteWarning,
    EmbeddingCache,
    PromptEncoder,
    encoder_for,
    read_prompt_embeddings,
)

PROMPTS = ["A robot arm folds a blue cloth on a yellow cushion.", "ünïcødé and a long one " * 60]


@pytest.fixture(scope="module")
def tiny() -> PromptEncoder:
    return PromptEncoder.tiny()


class _Counting:
    """Counts forward passes of an encoder's model (a forward hook, removed by `close`)."""

    def __init__(self, encoder: PromptEncoder) -> None:
        self.calls = 0
        self._handle = encoder.model.model.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1

    def close(self) -> None:
        self._handle.remove()


def test_tiny_encoder_shape_template_and_normalisation(tiny: PromptEncoder) -> None:
    assert tiny.dim == 64 and tiny.label == TINY_LABEL
    ids = tiny.token_ids(PROMPTS)
    assert ids.shape == (2, MAX_LENGTH)
    text = tiny.tokenizer.decode(ids[0])
    assert text.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{PROMPTS[0]}")
    assert text.count("<|im_end|>") == 2 and text.endswith("<|endoftext|>")  # right-padded
    assert (ids[1] != tiny.tokenizer.pad_token_id).all()  # the long prompt is truncated to 512
    emb = tiny.encode(PROMPTS)
    assert emb.shape == (2, MAX_LENGTH, 64) and emb.dtype == torch.float32
    for layer in emb.split(32, dim=-1):  # each layer normalised over its channels
        assert torch.allclose(layer.mean(-1), torch.zeros(()), atol=1e-4)
        assert torch.allclose(layer.std(-1), torch.ones(()), atol=1e-4)
    assert torch.equal(PromptEncoder.tiny().encode(PROMPTS[:1]), emb[:1])  # seeded: same weights every time


def test_matches_diffusers_get_prompt_embeds(tiny: PromptEncoder) -> None:
    diffusers = pytest.importorskip("diffusers")
    pipe = types.SimpleNamespace(tokenizer=tiny.tokenizer, text_encoder=tiny.model)
    with torch.no_grad():
        ref = diffusers.Cosmos2_5_TransferPipeline._get_prompt_embeds(
            pipe, prompt=PROMPTS, max_sequence_length=MAX_LENGTH, device="cpu", dtype=torch.float32
        )
    assert torch.allclose(tiny.encode(PROMPTS), ref, atol=1e-5)


def test_cache_encodes_each_prompt_once(tiny: PromptEncoder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    counter = _Counting(tiny)
    try:
        first = cache.encode(tiny, [PROMPTS[0], DEFAULT_NEGATIVE_PROMPT, PROMPTS[0]])
        assert counter.calls == 1  # one batch for the two distinct prompts
        again = cache.encode(tiny, [DEFAULT_NEGATIVE_PROMPT, PROMPTS[0]])
        assert counter.calls == 1  # all from disk
    finally:
        counter.close()
    assert torch.equal(first[0], again[1]) and torch.equal(first[1], again[0])
    assert torch.equal(first[0], tiny.encode(PROMPTS[:1])[0])
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.endswith(".safetensors") for f in files)  # no temp files left
    other = PromptEncoder(tiny.model, tiny.tokenizer, identity="another", label="x")
    assert cache.path(other, PROMPTS[0]) != cache.path(tiny, PROMPTS[0])
    assert cache.path(tiny, PROMPTS[0] + " ") != cache.path(tiny, PROMPTS[0])


def test_loads_from_a_directory(tiny: PromptEncoder, tmp_path: Path) -> None:
    folder = tmp_path / "reason1"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    loaded = PromptEncoder.from_dir(folder)
    assert loaded.identity.startswith("dir:") and loaded.identity == PromptEncoder.from_dir(folder).identity
    assert torch.allclose(loaded.encode(PROMPTS[:1]), tiny.encode(PROMPTS[:1]), atol=1e-6)
    # Qwen2.5-VL folders may keep the chat template only beside the processor.
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": tiny.tokenizer.chat_template}))
    assert torch.equal(PromptEncoder.from_dir(folder).token_ids(PROMPTS), tiny.token_ids(PROMPTS))
    with pytest.raises(CosmosError):
        PromptEncoder.from_dir(tmp_path)
    with pytest.raises(CosmosError, match="--tiny"):
        encoder_for(tiny=False, text_encoder_dir=None, device="cpu")


def test_encode_prompt_command(
    tiny: PromptEncoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.mp4").write_bytes(b"")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"prompt": PROMPTS[0], "video_path": "in.mp4", "edge": {}}))
    out = tmp_path / "emb" / "job.safetensors"
    args = ["encode-prompt", str(job), "-o", str(out), "--tiny", "--cache-dir", str(tmp_path / "cache")]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert TINY_LABEL in stdout
    prompt, negative, meta = read_prompt_embeddings(out)
    assert prompt.shape == negative.shape == (1, MAX_LENGTH, 64)
    assert meta["prompt"] == PROMPTS[0] and meta["negative_prompt"] == DEFAULT_NEGATIVE_PROMPT
    assert meta["encoder"] == tiny.identity and meta["encoder_label"] == TINY_LABEL
    assert torch.equal(prompt[0], tiny.encode(PROMPTS[:1])[0])
    assert len(list((tmp_path / "cache").iterdir())) == 2
    code, _, err = run_cli(["encode-prompt", str(job), "-o", str(out)], capsys)
    assert code == 2 and "--text-encoder-dir" in err


def test_a_cache_that_cannot_be_written_warns_and_the_job_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from cosmos_t2 import stable_safetensors

    (tmp_path / "in.mp4").write_bytes(b"")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"prompt": PROMPTS[0], "video_path": "in.mp4", "edge": {}}))
    cache = tmp_path / "cache"
    real = stable_safetensors.write_bytes_atomic

    def full_disk(path: Path, data: bytes) -> Path:
        if Path(path).parent == cache:  # the cache's file system is full; the output's has room
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(stable_safetensors, "write_bytes_atomic", full_disk)
    out = tmp_path / "job.safetensors"
    with pytest.warns(CacheWriteWarning) as held:  # shown after the command ends (main holds warnings)
        code, _, err = run_cli(
            ["encode-prompt", str(job), "-o", str(out), "--tiny", "--cache-dir", str(cache)], capsys
        )
    assert code == 0, err
    assert out.is_file() and read_prompt_embeddings(out)[0].shape == (1, MAX_LENGTH, 64)
    lines = {str(w.message) for w in held if w.category is CacheWriteWarning}
    assert len(lines) == 1  # one line, not one per prompt's traceback
    assert "No space left on device" in lines.pop() and "Traceback" not in err
    assert not any(p.suffix == ".safetensors" for p in cache.iterdir())  # no half-written entry
