"""The sample folder every generator writes (docs/contracts.md, "Samples").

```
OUT/images/000000.png         images, or
OUT/videos/000000/00.png ...  videos as frame folders, plus OUT/videos/000000.gif (or .mp4)
OUT/tokens.pt                 {"tokens": Long[N, F, h, w]}
OUT/samples.jsonl             {"file", "caption", "seed", "task", "model", "width", "height", "frames", "seconds"}
OUT/run.json                  command, checkpoint, sampling settings, total seconds, n, index_sha256
OUT/masks.pt                  outpainting only: Bool[N, h, w], True where tokens were generated
```
:class:`SampleWriter` fills a temporary folder; ``nuwa.io.atomic_path(OUT, is_dir=True)`` renames
it into place only when every sample is written, so a failed run leaves nothing behind.
:func:`read_index` is how every consumer reads a sample folder: run.json holds the sample count and
the SHA-256 of samples.jsonl, so an index changed after the fact is refused with one line.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import torch

from nuwa.errors import UserError
from nuwa.io import read_json, read_text

VideoFormat = Literal["gif", "mp4"]
INDEX, RUN = "samples.jsonl", "run.json"
RECORD_KEYS = ("file", "caption", "seed", "task", "model", "width", "height", "frames", "seconds")


def check_video_format(fmt: str) -> None:
    if fmt == "mp4":
        try:
            import imageio_ffmpeg  # noqa: F401  (imageio's MP4 writer)
        except ImportError as exc:
            raise UserError("--video-format mp4 needs imageio-ffmpeg; run `pip install imageio-ffmpeg` "
                            "or use --video-format gif") from exc
    elif fmt != "gif":
        raise UserError(f"unknown video format {fmt!r}; choose gif or mp4")


class SampleWriter:
    """Writes samples into ``root`` (the temporary folder) and the run's index files at the end."""

    def __init__(self, root: Path, *, task: str, model: str, video_format: VideoFormat = "gif", fps: int = 8):
        check_video_format(video_format)
        self.root, self.task, self.model = Path(root), task, model
        self.video_format, self.fps = video_format, fps
        self.records: list[dict[str, Any]] = []

    def image_path(self, index: int) -> Path:
        path = self.root / "images" / f"{index:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def video_dir(self, index: int) -> Path:
        """The frame folder of video ``index`` (written by the decoder)."""
        path = self.root / "videos" / f"{index:06d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_video(self, index: int) -> Path:
        """Add the GIF/MP4 next to the (already written) frame folder."""
        import imageio.v2 as imageio

        frames = [imageio.imread(p) for p in sorted(self.video_dir(index).glob("*.png"))]
        path = self.root / "videos" / f"{index:06d}.{self.video_format}"
        if self.video_format == "gif":
            imageio.mimsave(path, frames, duration=1000 / self.fps, loop=0)
        else:
            imageio.mimsave(path, frames, fps=self.fps)
        return path

    def record(self, file: Path, *, caption: str, seed: int, width: int, height: int, frames: int,
               seconds: float, **extra: Any) -> None:
        self.records.append({"file": file.relative_to(self.root).as_posix(), "caption": caption, "seed": seed,
                             "task": self.task, "model": self.model, "width": width, "height": height,
                             "frames": frames, "seconds": round(seconds, 4), **extra})

    def finish(self, tokens: torch.Tensor, run: dict[str, Any], masks: torch.Tensor | None = None) -> None:
        """tokens.pt, masks.pt (outpainting), samples.jsonl and run.json."""
        torch.save({"tokens": tokens.long().cpu()}, self.root / "tokens.pt")
        if masks is not None:
            torch.save(masks.bool().cpu(), self.root / "masks.pt")
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        (self.root / INDEX).write_text(lines)
        run = {**run, "n": len(self.records), "index_sha256": text_hash(lines)}
        (self.root / RUN).write_text(json.dumps(run, indent=2, sort_keys=True, default=str) + "\n")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_index(folder: str | Path) -> list[dict[str, Any]]:
    """The records of a sample folder, checked against its run.json (index hash, sample count) and its files.

    An index that was changed, truncated or copied from another run after ``nuwa generate`` wrote
    it is one line, never a silently shorter or foreign list of samples.
    """
    root = Path(folder)
    fix = f"rerun `nuwa generate ... --out {root}`"
    text = read_text(root / INDEX, "samples index", fix)
    run = read_json(root / RUN, "sample run record", fix)
    if not isinstance(run, dict) or run.get("index_sha256") != text_hash(text):
        raise UserError(f"samples index {root / INDEX} does not match {root / RUN} (changed, truncated or "
                        f"copied from another run after it was written); {fix}")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if len(rows) != run.get("n") or any(not isinstance(r, dict) or not set(RECORD_KEYS) <= set(r) for r in rows):
        raise UserError(f"samples index {root / INDEX} does not hold {run.get('n')} complete records; {fix}")
    missing = next((r["file"] for r in rows if not (root / r["file"]).exists()), None)
    if missing is not None:
        raise UserError(f"sample {root / missing} listed in {root / INDEX} is missing; {fix}")
    return rows
