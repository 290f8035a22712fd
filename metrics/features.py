"""Backbone features of image and video folders, cached per folder contents/backbone/preprocessing.

The cache key hashes the backbone (name, weights sha256), what is extracted (head, crop, block,
clip length) and every input file (absolute path, size, mtime), so the real-set statistics are
computed once and any change to the inputs or the backbone recomputes them. Each entry's file
name also carries the hash of its bytes, so a damaged entry is recomputed instead of used.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from metrics.backbone import Backbone, Head, extract
from metrics.io import read_video
from nuwa.core.io import atomic_path, read_rgb

log = logging.getLogger(__name__)
ENTRY_HASH = 16  # hex digits of the SHA-256 of an entry's bytes in its file name
Transform = Callable[[torch.Tensor], list[torch.Tensor]]  # one image -> the pieces to score (crops, blocks)


def fingerprint(backbone: Backbone, files: list[Path], **what) -> str:
    stats = [(str(p.resolve()), *(lambda s: (s.st_size, s.st_mtime_ns))(p.stat())) for p in files]
    blob = json.dumps({"backbone": [backbone.name, backbone.sha256], "what": what, "files": stats}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached(cache_dir: Path | None, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()``, stored as ``{key}.{sha256 of the file's bytes}.npy``.

    An entry whose bytes do not match its name (truncated, damaged, half-copied) is deleted and
    recomputed, never used. Processes sharing the cache may compute the same entry at once: each
    writes a temporary file and renames it, so a reader only ever sees whole entries.
    """
    if cache_dir is None:
        return compute()
    cache_dir = Path(cache_dir)
    for path in sorted(cache_dir.glob(f"{key}.*.npy")):
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest()[:ENTRY_HASH] == path.name[len(key) + 1:-len(".npy")]:
            return np.load(io.BytesIO(data))
        log.warning("feature cache entry %s is damaged (its bytes do not match its hash); recomputing it", path)
        path.unlink(missing_ok=True)
    feats = compute()
    buf = io.BytesIO()
    np.save(buf, feats)
    data = buf.getvalue()
    with atomic_path(cache_dir / f"{key}.{hashlib.sha256(data).hexdigest()[:ENTRY_HASH]}.npy") as tmp:
        tmp.write_bytes(data)
    return feats


def image_features(backbone: Backbone, files: list[Path], *, head: Head = "features", pieces: Transform | None = None,
                   tag: str = "", batch_size: int = 32, cache_dir: Path | None = None, desc: str = "images") -> np.ndarray:
    """[N, D] features, or [N, P, D] when ``pieces`` cuts each image into P pieces (``tag`` names the cut)."""
    def samples() -> Iterator[torch.Tensor]:
        for f in files:
            image = read_rgb(f)
            yield from (pieces(image) if pieces else [image])

    def compute() -> np.ndarray:
        first = len(pieces(read_rgb(files[0]))) if pieces else 1
        feats = extract(backbone, samples(), len(files) * first, head=head, batch_size=batch_size, desc=desc)
        return feats.reshape(len(files), first, -1) if pieces else feats

    return cached(cache_dir, fingerprint(backbone, files, head=head, tag=tag), compute)


def video_features(backbone: Backbone, videos: list[Path], *, frames: int, batch_size: int = 8,
                   cache_dir: Path | None = None, desc: str = "videos") -> np.ndarray:
    def compute() -> np.ndarray:
        return extract(backbone, (read_video(v, frames) for v in videos), len(videos), batch_size=batch_size, desc=desc)

    files = [f for v in videos for f in (sorted(v.iterdir()) if v.is_dir() else [v])]
    return cached(cache_dir, fingerprint(backbone, files, frames=frames, videos=[str(v) for v in videos]), compute)
