"""Prompt -> text embeddings as Cosmos-Transfer2.5 computes them with Cosmos-Reason1-7B, and their cache.

Upstream (`cosmos_transfer2/_src/predict2/text_encoders/text_encoder.py`, `compute_text_embeddings_online`
with the FULL_CONCAT strategy of the transfer experiments): the prompt goes into the Qwen2.5-VL chat
template as the user turn after a fixed system turn (no generation prompt), is tokenised without
padding, then right-padded with the pad token or truncated to 512 tokens; the model runs without an
attention mask; every hidden state but the input embeddings (28 layers x 3584 for the 7B model) is
normalised over channels, (h - mean) / (std + 1e-8), and the layers are concatenated: (B, 512, 100352).

The "tiny random text encoder" is a seeded random Qwen2.5-VL of the same class (2 layers x 32 channels
-> 64 channels per token) with a byte-level tokenizer built offline: the demo and the tests need no
download. Its embeddings mean nothing; only their shapes and the code path are real.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from cosmos_t2 import stable_safetensors
from cosmos_t2.errors import CosmosError

SYSTEM_PROMPT = "You are a helpful assistant who will provide prompts to an image generator."
MAX_LENGTH = 512
TINY_LABEL = "tiny random text encoder"
TINY_SEED = 0
CACHE_FORMAT = 1

# Qwen's chat format for text-only turns (what Qwen2.5-VL's template renders for them).
_TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_HASH_EDGE = 1 << 20  # bytes hashed at each end of a weight file


def chat_messages(prompt: str) -> list[dict[str, Any]]:
    """The conversation upstream encodes: the fixed system turn, then the prompt as the user turn."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "text", "text": prompt}]},
    ]


class PromptEncoder:
    """A Qwen2.5-VL model + tokenizer that turns prompts into (B, max_length, layers * hidden) embeddings.

    `identity` names the weights and tokenizer exactly (it keys the cache); `label` is for people.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        identity: str,
        label: str,
        max_length: int = MAX_LENGTH,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.identity = identity
        self.label = label
        self.max_length = max_length
        text_config = getattr(model.config, "text_config", model.config)
        self.dim = text_config.num_hidden_layers * text_config.hidden_size

    @classmethod
    def from_dir(
        cls, path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> PromptEncoder:
        """Load Cosmos-Reason1-7B (or any Qwen2.5-VL) and its tokenizer from a local directory."""
        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        path = Path(path)
        if not (path / "config.json").is_file():
            raise CosmosError("not a text encoder directory (no config.json)", file=path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = _processor_chat_template(path)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device)
        return cls(model, tokenizer, identity=directory_identity(path), label=str(path))

    @classmethod
    def tiny(cls, device: str | torch.device = "cpu") -> PromptEncoder:
        """The tiny random text encoder: same class as the real one, 64 output channels, seeded."""
        model, tokenizer = build_tiny_encoder()
        config = json.dumps(model.config.to_dict(), sort_keys=True, default=str)
        digest = hashlib.sha256(f"{config}\n{_TINY_CHAT_TEMPLATE}\n{TINY_SEED}".encode()).hexdigest()
        return cls(model.to(device), tokenizer, identity=f"tiny:{digest}", label=TINY_LABEL)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def token_ids(self, prompts: Sequence[str]) -> Tensor:
        """(B, max_length) token ids: chat template, then right-padded with the pad token or truncated."""
        pad = self.tokenizer.pad_token_id
        rows = []
        for prompt in prompts:
            text = self.tokenizer.apply_chat_template(
                chat_messages(prompt), tokenize=False, add_generation_prompt=False, add_vision_id=False
            )
            ids = self.tokenizer(text)["input_ids"][: self.max_length]
            rows.append(ids + [pad] * (self.max_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> Tensor:
        """(B, max_length, layers * hidden) in the model's dtype; normalised in fp32."""
        ids = self.token_ids(prompts).to(self.device)
        # The inner Qwen2_5_VLModel gives the same hidden states without the 150k-token LM head.
        hidden = self.model.model(input_ids=ids, output_hidden_states=True).hidden_states
        layers = []
        for h in hidden[1:]:
            h = h.float()
            layers.append((h - h.mean(dim=-1, keepdim=True)) / (h.std(dim=-1, keepdim=True) + 1e-8))
        dtype = next(self.model.parameters()).dtype
        return torch.cat(layers, dim=-1).to(dtype)


def _processor_chat_template(path: Path) -> str:
    """The chat template Qwen2.5-VL folders keep beside the processor (upstream renders with the processor)."""
    for name in ("chat_template.jinja", "chat_template.json"):
        file = path / name
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    raise CosmosError("the tokenizer has no chat template, and there is no chat_template.json", file=path)


def build_tiny_encoder() -> tuple[torch.nn.Module, Any]:
    """A seeded random Qwen2.5-VL (text: 2 layers x 32, vision: 1 block) and a byte-level tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="right",
        chat_template=_TINY_CHAT_TEMPLATE,
    )
    vocab = len(alphabet) + len(specials)  # 259; ids above it are the (unused) vision tokens
    ids = {"pad_token_id": vocab - 3, "eos_token_id": vocab - 1, "bos_token_id": None}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "vocab_size": vocab + 4,
            "max_position_embeddings": 2 * MAX_LENGTH,
            "rope_theta": 1_000_000.0,
            "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"},
            **ids,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 32,
        },
        vocab_size=vocab + 4,
        image_token_id=vocab,
        video_token_id=vocab + 1,
        vision_start_token_id=vocab + 2,
        vision_end_token_id=vocab + 3,
        **ids,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    return model, tokenizer


def directory_identity(path: Path) -> str:
    """A digest of a model directory: small files by content, weight files by name, size and the
    first and last MiB (hashing 16 GB on every run would cost more than encoding)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.startswith("."):
            continue
        digest.update(rel.encode() + b"\0")
        if file.suffix in _WEIGHT_SUFFIXES:
            size = file.stat().st_size
            digest.update(str(size).encode())
            with file.open("rb") as f:
                digest.update(f.read(_HASH_EDGE))
                f.seek(max(0, size - _HASH_EDGE))
                digest.update(f.read(_HASH_EDGE))
        else:
            digest.update(file.read_bytes())
    return f"dir:{digest.hexdigest()}"


def _save_atomic(tensors: dict[str, Tensor], metadata: dict[str, str], path: Path) -> None:
    # the metadata keys in sorted order: the same prompt gives the same file in every process
    stable_safetensors.save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, path, metadata)


class TextEncoder(Protocol):
    """What the cache and the embeddings file need of an encoder: its identity (the cache key), a label for
    people, the token length, the channels and, only for prompts the cache misses, `encode`."""

    identity: str
    label: str
    max_length: int
    dim: int

    def encode(self, prompts: Sequence[str]) -> Tensor: ...


@dataclass(frozen=True)
class EmbeddingCache:
    """Embeddings on disk, one .safetensors a prompt, keyed by the encoder identity, prompt and length."""

    directory: Path

    def path(self, encoder: TextEncoder, prompt: str) -> Path:
        key = json.dumps(
            {
                "format": CACHE_FORMAT,
                "encoder": encoder.identity,
                "max_length": encoder.max_length,
                "prompt": prompt,
            },
            sort_keys=True,
        )
        return Path(self.directory) / f"{hashlib.sha256(key.encode()).hexdigest()}.safetensors"

    def get(self, encoder: TextEncoder, prompt: str) -> Tensor | None:
        from safetensors import safe_open

        path = self.path(encoder, prompt)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("prompt") != prompt or meta.get("encoder") != encoder.identity:
                    return None
                return f.get_tensor("embedding")
        except Exception:  # a damaged entry (safetensors raises its own error type) is a miss, not a failure
            return None

    def encode(self, encoder: TextEncoder, prompts: Sequence[str]) -> list[Tensor]:
        """(max_length, dim) per prompt; those not on disk are encoded in one batch and stored."""
        found = {p: self.get(encoder, p) for p in dict.fromkeys(prompts)}
        missing = [p for p, emb in found.items() if emb is None]
        if missing:
            for prompt, emb in zip(missing, encoder.encode(missing), strict=True):
                self._store(encoder, prompt, emb)
                found[prompt] = emb.cpu()
        return [found[p] for p in prompts]

    def put(self, encoder: TextEncoder, prompt: str, emb: Tensor, *, label: str | None = None) -> Path:
        """Write `prompt`'s entry (atomically); `label` replaces the encoder's (an entry not made by it)."""
        path = self.path(encoder, prompt)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"prompt": prompt, "encoder": encoder.identity, "label": label or encoder.label}
        _save_atomic({"embedding": emb}, meta, path)
        return path

    def _store(self, encoder: TextEncoder, prompt: str, emb: Tensor) -> None:
        """Best effort: a cache that cannot be written (full disk, read-only folder) costs a re-encode next
        time, never the job, whose own output may well have room. One warning says so."""
        path = self.path(encoder, prompt)
        try:
            self.put(encoder, prompt, emb)
        except Exception as exc:  # OSError, or safetensors' own error type for a failed write
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            )
            warnings.warn(f"{path.parent}: the embedding cache was not written ({reason}); the job goes on",
                          CacheWriteWarning, stacklevel=3)  # fmt: skip


class CacheWriteWarning(UserWarning):
    """A cache entry could not be written; the job that wanted it is not affected."""


def encode_prompts(
    encoder: TextEncoder, prompts: Sequence[str], cache: EmbeddingCache | None = None
) -> list[Tensor]:
    """(max_length, dim) embeddings per prompt, through the cache when there is one."""
    if cache is not None:
        return cache.encode(encoder, prompts)
    return list(encoder.encode(prompts).cpu())


def write_prompt_embeddings(
    path: str | Path,
    encoder: TextEncoder,
    prompt: str,
    negative_prompt: str,
    cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Encode a job's prompt and negative prompt into one .safetensors (keys `prompt`,
    `negative_prompt`, each (1, max_length, dim)); returns the metadata written beside them."""
    emb, neg = encode_prompts(encoder, [prompt, negative_prompt], cache)
    meta = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "encoder": encoder.identity,
        "encoder_label": encoder.label,
        "max_length": str(encoder.max_length),
        "dim": str(encoder.dim),
        "dtype": str(emb.dtype).removeprefix("torch."),
    }
    _save_atomic({"prompt": emb[None], "negative_prompt": neg[None]}, meta, Path(path))
    return meta


def read_prompt_embeddings(path: str | Path) -> tuple[Tensor, Tensor, dict[str, str]]:
    """(prompt (1, L, D), negative prompt (1, L, D), metadata) from a file write_prompt_embeddings made."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CosmosError("prompt embeddings file not found", file=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if not {"prompt", "negative_prompt"} <= keys:
                raise CosmosError(
                    f"expected tensors 'prompt' and 'negative_prompt', found {sorted(keys)[:8]}", file=path
                )
            pos, neg, meta = f.get_tensor("prompt"), f.get_tensor("negative_prompt"), dict(f.metadata() or {})
    except CosmosError:
        raise
    except Exception as exc:  # safetensors' own error types, OSError
        raise CosmosError(f"not a prompt embeddings .safetensors file ({exc})", file=path) from None
    for key, tensor in (("prompt", pos), ("negative_prompt", neg)):
        if tensor.dim() != 3 or tensor.shape[0] != 1 or 0 in tensor.shape:
            raise CosmosError(
                f"expected a (1, tokens, channels) tensor, got shape {tuple(tensor.shape)}",
                file=path,
                key=key,
            )
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise CosmosError("expected finite floating-point values", file=path, key=key)
    if pos.shape != neg.shape:
        raise CosmosError(
            f"'prompt' {tuple(pos.shape)} and 'negative_prompt' {tuple(neg.shape)} differ in shape", file=path
        )
    return pos, neg, meta


def cache_root() -> Path:
    """The project's cache folder: $COSMOS_T2_CACHE_DIR, else ~/.cache/cosmos-t2."""
    root = os.environ.get("COSMOS_T2_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "cosmos-t2"


def default_cache_dir() -> Path:
    """$COSMOS_T2_CACHE_DIR/text-embeddings, else ~/.cache/cosmos-t2/text-embeddings."""
    return cache_root() / "text-embeddings"


def encoder_for(
    *, tiny: bool, text_encoder_dir: str | Path | None, device: str | None = None
) -> PromptEncoder:
    """The encoder a command asked for; on CUDA the 7B model runs in bf16 (as upstream), else fp32."""
    device, dtype = encoder_placement(device)
    if tiny:
        return PromptEncoder.tiny(device)
    if text_encoder_dir is None:
        raise CosmosError("no text encoder: pass --text-encoder-dir DIR (Cosmos-Reason1-7B) or --tiny")
    return PromptEncoder.from_dir(text_encoder_dir, device=device, dtype=dtype)


def encoder_placement(device: str | None) -> tuple[str, torch.dtype]:
    """The text encoder's device (default: cuda if present) and dtype: bf16 on CUDA (as upstream), else fp32."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device, torch.bfloat16 if str(device).startswith("cuda") else torch.float32
