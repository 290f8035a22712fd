"""Encode a dataset split to a token shard (``nuwa.data.tokens``): tokens [N, F, h, w] + captions."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nuwa.data.tokens import save_shard
from nuwa.tokenizer.train import open_split
from nuwa.tokenizer.vqgan import VQGAN

log = logging.getLogger(__name__)


def world_name(data_dir: str | Path) -> str:
    meta = Path(data_dir) / "meta.json"
    if meta.is_file():
        return str(json.loads(meta.read_text()).get("world", Path(data_dir).name))
    return Path(data_dir).name


@torch.no_grad()
def encode_split(tokenizer: VQGAN, data_dir: str | Path, split: str, out: str | Path, *,
                 tokenizer_path: str = "", batch_size: int = 32) -> torch.Tensor:
    """Write ``out`` (a token shard) for ``data_dir/split`` and return its tokens [N, F, h, w].

    Videos are encoded frame by frame (the tokenizer sees single frames); images have F = 1.
    """
    data, videos = open_split(data_dir, split)
    key = "video" if videos else "image"
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    grids, captions = [], []
    for batch in tqdm(loader, desc=f"encode {split}"):
        x = batch[key] if videos else batch[key][:, None]
        n, f = x.shape[:2]
        idx = tokenizer.encode_to_indices(x.flatten(0, 1))
        grids.append(idx.view(n, f, *idx.shape[1:]))
        captions += list(batch["caption"])
    tokens = torch.cat(grids)
    save_shard(out, tokens, captions, world=world_name(data_dir), split=split, tokenizer=str(tokenizer_path),
               n_embed=tokenizer.n_embed, image_size=tuple(x.shape[-2:]))
    log.info("wrote %s: tokens %s", out, tuple(tokens.shape))
    return tokens
