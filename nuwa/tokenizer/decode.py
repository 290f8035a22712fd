"""Streamed decoding: token grids -> pixels, column strip by column strip, frame by frame.

Each strip of ``strip`` token columns is decoded together with ``margin`` extra columns on both
sides (context for the convolutions, GroupNorm statistics and attention), the margins are cut
off and the strip is written into a ``numpy`` memmap on disk. A very wide image therefore never
sits in decoder activations at once. Video frames are decoded in order; with a PG-VQGAN each
frame is guided by the previous decoded frame (the first frame: plain VQGAN, or a given frame).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap
from PIL import Image
from tqdm.auto import tqdm

from nuwa.core.errors import UserError
from nuwa.core.io import atomic_path
from nuwa.tokenizer.vqgan import VQGAN


def quantize_pixels(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] -> uint8 of the same shape (what PNGs and every metric backbone take)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> uint8 [H, W, 3]."""
    return quantize_pixels(x).permute(1, 2, 0).numpy()


def from_uint8(a: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> [1, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 127.5 - 1


def allocated_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A uint8 .npy memmap whose disk blocks are allocated up front: a full disk is an OSError here
    (one line, via nuwa.core.io.atomic_path), not a SIGBUS when a page of the sparse file is first written."""
    canvas = open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    with open(path, "rb+") as fh:
        os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
    return canvas


def strip_bounds(width: int, strip: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(c0, c1, a, b): kept token columns [c0, c1) decoded from the context window [a, b)."""
    return [(c0, min(width, c0 + strip), max(0, c0 - margin), min(width, c0 + strip + margin))
            for c0 in range(0, width, strip)]


@torch.no_grad()
def decode_strips(tokenizer: VQGAN, idx: torch.Tensor, out: np.ndarray, *, prev: np.ndarray | None = None,
                  strip: int = 16, margin: int = 8) -> None:
    """Decode ``idx`` Long[h, w] into ``out`` uint8 [h*f, w*f, 3] (a memmap), strip by strip."""
    f = tokenizer.factor
    if strip < 1 or margin < 0:
        raise UserError("decode strip must be >= 1 token column and margin >= 0")
    for c0, c1, a, b in strip_bounds(idx.shape[1], strip, margin):
        guide = from_uint8(prev[:, a * f:b * f]) if prev is not None else None
        pix = tokenizer.decode_indices(idx[None, :, a:b], prev=guide)[0]
        out[:, c0 * f:c1 * f] = to_uint8(pix[:, :, (c0 - a) * f:(c1 - a) * f])


def decode_image(tokenizer: VQGAN, idx: torch.Tensor, png: str | Path, *, strip: int = 16, margin: int = 8) -> None:
    """Token grid Long[h, w] -> PNG, through a memmap next to the output."""
    f, (h, w) = tokenizer.factor, idx.shape
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(png) as tmp, tempfile.TemporaryDirectory(prefix=".decode.", dir=Path(png).parent) as scratch:
        canvas = allocated_memmap(Path(scratch) / "canvas.npy", (h * f, w * f, 3))
        decode_strips(tokenizer, idx, canvas, strip=strip, margin=margin)
        Image.fromarray(np.asarray(canvas)).save(tmp, format="PNG")
        del canvas


def decode_video(tokenizer: VQGAN, idx: torch.Tensor, out_dir: str | Path, *, first: torch.Tensor | None = None,
                 strip: int = 16, margin: int = 8) -> None:
    """Token grids Long[F, h, w] -> ``out_dir/00.png ...``, frame by frame.

    A PG-VQGAN guides frame n by decoded frame n-1; ``first`` ([3, H, W] in [-1, 1]) replaces the
    decoded first frame (image animation starts from a given picture). A plain VQGAN decodes
    frames independently.
    """
    f, (frames, h, w) = tokenizer.factor, idx.shape
    guided = hasattr(tokenizer, "pixel_encoder")
    with atomic_path(out_dir, is_dir=True) as tmp:
        video = allocated_memmap(tmp / "frames.npy", (frames, h * f, w * f, 3))
        for t in range(frames):
            if t == 0 and first is not None:
                if tuple(first.shape) != (3, h * f, w * f):
                    raise UserError(f"first frame must be 3x{h * f}x{w * f} to match the tokens, got {tuple(first.shape)}")
                video[0] = to_uint8(first)
            else:
                prev = video[t - 1] if guided and t > 0 else None
                decode_strips(tokenizer, idx[t], video[t], prev=prev, strip=strip, margin=margin)
            Image.fromarray(np.asarray(video[t])).save(tmp / f"{t:02d}.png")
        del video
        (tmp / "frames.npy").unlink()


def decode_tokens(tokenizer: VQGAN, tokens: torch.Tensor, out_dir: str | Path, *, strip: int = 16, margin: int = 8) -> None:
    """Tokens Long[N, F, h, w] -> ``out_dir/000000.png`` (F = 1) or ``out_dir/000000/00.png ...``."""
    out_dir = Path(out_dir)
    if tokens.dim() != 4:
        raise UserError(f"tokens must be [N, F, h, w], got {tuple(tokens.shape)}; pass a token shard or tokens.pt")
    for i in tqdm(range(tokens.shape[0]), desc="decode"):
        if tokens.shape[1] == 1:
            decode_image(tokenizer, tokens[i, 0], out_dir / f"{i:06d}.png", strip=strip, margin=margin)
        else:
            decode_video(tokenizer, tokens[i], out_dir / f"{i:06d}", strip=strip, margin=margin)
