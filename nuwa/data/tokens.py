"""Token shards: a dataset split encoded by a tokenizer, as one file.

A shard ``{workdir}/tokens/{world}/{split}.pt`` holds::

    tokens:    LongTensor [N, F, h, w]   (F = 1 for images)
    captions:  list[str] of length N     ("" where the world has no text)
    world, split, tokenizer (checkpoint path), n_embed, image_size (H, W)

``TokenDataset`` serves ``{"tokens": [F, h, w], "caption": str}`` items to every generator.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from nuwa.core.errors import UserError
from nuwa.core.io import torch_load, torch_save

REQUIRED = ("tokens", "captions", "world", "split", "n_embed")


def save_shard(path: str | Path, tokens: torch.Tensor, captions: list[str], **meta: Any) -> None:
    if tokens.dim() != 4:
        raise ValueError(f"tokens must be [N, F, h, w], got {tuple(tokens.shape)}")
    if len(captions) != tokens.shape[0]:
        raise ValueError("one caption per sample")
    torch_save({"tokens": tokens.to(torch.int32), "captions": list(captions), **meta}, path)


def load_shard(path: str | Path) -> dict[str, Any]:
    shard = torch_load(path, "token shard")
    missing = [k for k in REQUIRED if k not in shard]
    if missing:
        raise UserError(f"token shard {path} lacks {missing}; rerun `nuwa tokenizer encode`")
    shard["tokens"] = shard["tokens"].long()
    return shard


class TokenDataset(Dataset):
    def __init__(self, path: str | Path):
        self.shard = load_shard(path)
        self.tokens: torch.Tensor = self.shard["tokens"]
        self.captions: list[str] = self.shard["captions"]

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(self.tokens.shape[1:])  # type: ignore[return-value]

    @property
    def n_embed(self) -> int:
        return int(self.shard["n_embed"])

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"tokens": self.tokens[i], "caption": self.captions[i]}


def collate_tokens(items: list[dict[str, Any]], context_length: int = 77) -> dict[str, torch.Tensor]:
    """Batch TokenDataset items: {"tokens": Long[B, F, h, w], "text": Long[B, context_length]}."""
    from nuwa.core.text import tokenize

    return {"tokens": torch.stack([it["tokens"] for it in items]),
            "text": tokenize([it["caption"] for it in items], context_length)}
