"""The sample folder every generator writes (docs/contracts.md, "Samples").

```
OUT/images/000000.png         images, or
OUT/videos/000000/00.png ...  videos as frame folders, plus OUT/videos/000000.gif (or .mp4)
OUT/tokens.pt                 {"tokens": Long[N, F, h, w]}
OUT/samples.jsonl             {"file", "caption", "seed", "task", "model", "width", "height", "frames", "seconds"}
OUT/run.json                  command, checkpoint, sampling settings, total seconds
OUT/masks.pt                  outpainting only: Bool[N, h, w], True where tokens were generated
```
:class:`SampleWriter` fills a temporary folder; ``nuwa.io.atomic_path(OUT, is_dir=True)`` renames
it into place only when every sample is written, so a failed run leaves nothing behind.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from nuwa.errors import UserError

VideoFormat = Literal["gif", "mp4"]


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
        (self.root / "samples.jsonl").write_text(lines)
        (self.root / "run.json").write_text(json.dumps(run, indent=2, sort_keys=True, default=str) + "\n")
