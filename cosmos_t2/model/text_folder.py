"""The text encoder of a folder, loaded only when a prompt misses the embedding cache.

What keys a cache entry (the folder's identity, the token length) and what the embeddings file records (the
label, the channels: layers x hidden size from config.json) are known without the 7B model's 16 GB of weights,
so `encode-prompt` on prompts that are all cached (every rerun of a sweep, `bench --sweep`) never loads them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from cosmos_t2.errors import CosmosError
from cosmos_t2.model.text import MAX_LENGTH, PromptEncoder, directory_identity, encoder_for, encoder_placement


class FolderEncoder:
    """Cosmos-Reason1 (any Qwen2.5-VL) in `path`, built on the first `encode`; a `TextEncoder`."""

    def __init__(self, path: str | Path, *, device: str | torch.device, dtype: torch.dtype) -> None:
        self.path = Path(path)
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise CosmosError("not a text encoder directory (no config.json)", file=self.path)
        try:
            config = json.loads(config_file.read_text())
            text = config.get("text_config") or config  # newer transformers nest the language model's
            layers = int(text.get("num_hidden_layers", config.get("num_hidden_layers")))
            hidden = int(text.get("hidden_size", config.get("hidden_size")))
        except (ValueError, TypeError, AttributeError) as exc:
            raise CosmosError(f"no num_hidden_layers and hidden_size ({exc})", file=config_file) from None
        self.identity = directory_identity(self.path)
        self.label = str(self.path)
        self.max_length = MAX_LENGTH
        self.dim = layers * hidden
        self._device = device
        self._dtype = dtype
        self._loaded: PromptEncoder | None = None

    def encode(self, prompts: Sequence[str]) -> Tensor:
        if self._loaded is None:
            self._loaded = PromptEncoder.from_dir(self.path, device=self._device, dtype=self._dtype)
        return self._loaded.encode(prompts)


def deferred_encoder_for(
    *, tiny: bool, text_encoder_dir: str | Path | None, device: str | None = None
) -> PromptEncoder | FolderEncoder:
    """As `encoder_for`, but a folder's model is loaded only if a prompt must be encoded (the tiny one is
    built at once: it is small)."""
    if tiny or text_encoder_dir is None:
        return encoder_for(tiny=tiny, text_encoder_dir=text_encoder_dir, device=device)
    device, dtype = encoder_placement(device)
    return FolderEncoder(text_encoder_dir, device=device, dtype=dtype)
