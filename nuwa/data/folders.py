"""The on-disk dataset layout (docs/contracts.md, "Datasets on disk"): writer and readers.

Procedural worlds and real-data adapters both describe a dataset as a :class:`Plan` (per split, a
count and a generator of :class:`Sample`; plus extra whole files such as the RQF scroll). One writer
turns any plan into the layout, rendering into a temporary directory that is renamed into place
only when every file is written::

    DIR/{split}/captions.jsonl          {"file", "caption", "attrs"} per line
    DIR/{split}/images/000000.png       image worlds
    DIR/{split}/clips/000000/00.png     video worlds (one folder of frames per clip)
    DIR/scroll.png                      extras (RQF)
    DIR/meta.json                       world, source, width, height, frames, fps, seed, counts
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from nuwa.core.errors import UserError
from nuwa.core.io import atomic_path, write_json

log = logging.getLogger(__name__)


@dataclass
class Sample:
    pixels: np.ndarray      # uint8 [H, W, 3] (image) or [F, H, W, 3] (video)
    caption: str
    attrs: dict


@dataclass
class Plan:
    """What a world or an adapter will write: per split, (count, generator of samples)."""
    world: str
    source: Literal["procedural", "folder"]
    kind: Literal["image", "video"]
    width: int
    height: int
    frames: int
    fps: float
    seed: int
    splits: dict[str, tuple[int, Callable[[], Iterator[Sample]]]]
    extras: dict[str, Callable[[], np.ndarray]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def save_png(path: Path, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(path, compress_level=1)


def save_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)


def write_sample(split_dir: Path, index: int, sample: Sample, kind: str) -> str:
    """Write one sample's pixels below ``split_dir``; return its path relative to the split."""
    if kind == "image":
        rel = f"images/{index:06d}.png"
        save_png(split_dir / rel, sample.pixels)
        return rel
    rel = f"clips/{index:06d}"
    (split_dir / rel).mkdir(parents=True)
    for f, frame in enumerate(sample.pixels):
        save_png(split_dir / rel / f"{f:02d}.png", frame)
    return rel


def write_dataset(plan: Plan, out: str | Path) -> dict[str, int]:
    """Write ``plan`` to ``out`` atomically (all or nothing); return the sample count per split."""
    counts: dict[str, int] = {}
    with atomic_path(out, is_dir=True) as tmp:
        for split, (n, make) in plan.splits.items():
            split_dir = tmp / split
            (split_dir / ("images" if plan.kind == "image" else "clips")).mkdir(parents=True)
            lines = []
            for i, sample in enumerate(tqdm(make(), total=n, desc=f"{plan.world} {split}", unit=plan.kind)):
                rel = write_sample(split_dir, i, sample, plan.kind)
                lines.append(json.dumps({"file": rel, "caption": sample.caption, "attrs": sample.attrs}))
            (split_dir / "captions.jsonl").write_text("".join(line + "\n" for line in lines))
            counts[split] = len(lines)
        for name, make_extra in plan.extras.items():
            save_png(tmp / name, make_extra())
        write_json(tmp / "meta.json", {
            "world": plan.world, "source": plan.source, "kind": plan.kind, "width": plan.width,
            "height": plan.height, "frames": plan.frames, "fps": plan.fps, "seed": plan.seed,
            "counts": counts, **plan.info})
    log.info("wrote %s: %s", out, ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


def write_preview(plan: Plan, out: str | Path, n: int) -> list[str]:
    """Write the first ``n`` samples of every held-out split (PNG/GIF), the extras and captions.txt."""
    names, lines = [], []
    with atomic_path(out, is_dir=True) as tmp:
        for split, (_, make) in plan.splits.items():
            if split == "train":
                continue
            for i, sample in zip(range(n), make()):
                name = f"{plan.world}_{split}_{i:02d}." + ("png" if plan.kind == "image" else "gif")
                if plan.kind == "image":
                    save_png(tmp / name, sample.pixels)
                else:
                    save_gif(tmp / name, sample.pixels, plan.fps)
                names.append(name)
                lines.append(f"{name}\t{sample.caption or '(no text)'}\t{json.dumps(sample.attrs, sort_keys=True)}")
        for name, make_extra in plan.extras.items():
            save_png(tmp / name, make_extra())
        (tmp / "captions.txt").write_text("".join(line + "\n" for line in lines))
    return names


def read_records(root: str | Path, split: str) -> list[dict]:
    path = Path(root) / split / "captions.jsonl"
    if not path.is_file():
        raise UserError(f"no {split!r} split in {root} ({path} missing); run `nuwa data render WORLD --out {root}`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_png(path: Path) -> torch.Tensor:
    """A PNG as float [3, H, W] in [-1, 1]."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable image {path} ({exc}); re-render the dataset") from exc
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


class SplitFolder(Dataset):
    """One split of a rendered dataset: ``root/split`` and its records (captions.jsonl)."""

    def __init__(self, root: str | Path, split: str):
        self.root = Path(root) / split
        self.records = read_records(root, split)

    def __len__(self) -> int:
        return len(self.records)


class ImageFolder(SplitFolder):
    """``{"image": float[3, H, W] in [-1, 1], "caption": str}`` per sample; attributes in ``records``."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        return {"image": load_png(self.root / rec["file"]), "caption": rec["caption"]}


class VideoFolder(SplitFolder):
    """``{"video": float[F, 3, H, W] in [-1, 1], "caption": str}`` per clip; attributes in ``records``."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        frames = sorted((self.root / rec["file"]).glob("*.png"))
        if not frames:
            raise UserError(f"clip {self.root / rec['file']} has no frames; re-render the dataset")
        return {"video": torch.stack([load_png(f) for f in frames]), "caption": rec["caption"]}
