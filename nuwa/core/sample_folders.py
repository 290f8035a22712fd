"""The sample folder every generator writes (docs/contracts.md, "Samples").

```
OUT/images/000000.png         images, or
OUT/videos/000000/00.png ...  videos as frame folders, plus OUT/videos/000000.gif (or .mp4)
OUT/tokens.pt                 {"tokens": Long[N, F, h, w]}
OUT/samples.jsonl             {"file", "caption", "seed", "task", "model", "width", "height", "frames", "seconds"}
OUT/run.json                  command, checkpoint, sampling settings, total seconds, n, index_sha256
OUT/masks.pt                  outpainting only: Bool[N, h, w], True where tokens were generated
```
:class:`SampleWriter` fills a temporary folder; ``nuwa.core.io.atomic_path(OUT, is_dir=True)`` renames
it into place only when every sample is written, so a failed run leaves nothing behind.
:func:`read_index` is how every consumer reads a sample folder: run.json holds the sample count and
the SHA-256 of samples.jsonl, so an index changed after the fact is refused with one line.

A sample set can be generated in pieces: ``nuwa generate ... --shard I/N`` writes shard I (its
run.json says ``shard: {index, of, samples}``) and :func:`merge` (`nuwa samples merge`) joins the N
shard folders into the folder one process writes: the same bytes in every file but the wall-clock
fields (``seconds`` per sample and per run, the run's command line, hence ``index_sha256``).
:func:`read_index` refuses a lone shard.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

import torch

from nuwa.core.errors import UserError
from nuwa.core.io import atomic_path, read_json, read_text, torch_load

VideoFormat = Literal["gif", "mp4"]
INDEX, RUN = "samples.jsonl", "run.json"
RECORD_KEYS = ("file", "caption", "seed", "task", "model", "width", "height", "frames", "seconds")
WALL_CLOCK = ("command", "seconds", "seconds_per_sample")  # run.json keys that differ between shards of one set


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
        write_index(self.root, self.records, tokens, run, masks)


def write_index(root: Path, records: list[dict[str, Any]], tokens: torch.Tensor, run: dict[str, Any],
                masks: torch.Tensor | None = None) -> None:
    """tokens.pt, masks.pt (outpainting), samples.jsonl and run.json of a sample folder."""
    torch.save({"tokens": tokens.long().cpu()}, root / "tokens.pt")
    if masks is not None:
        torch.save(masks.bool().cpu(), root / "masks.pt")
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    (root / INDEX).write_text(lines)
    run = {**run, "n": len(records), "index_sha256": text_hash(lines)}
    (root / RUN).write_text(json.dumps(run, indent=2, sort_keys=True, default=str) + "\n")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_index(folder: str | Path, shard: bool = False) -> list[dict[str, Any]]:
    """The records of a sample folder, checked against its run.json (index hash, sample count) and its files.

    An index that was changed, truncated or copied from another run after ``nuwa generate`` wrote
    it is one line, never a silently shorter or foreign list of samples; so is a lone shard of a
    sharded set (unless ``shard``).
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
    if "shard" in run and not shard:
        part = run["shard"]
        raise UserError(f"{root} is shard {part['index']}/{part['of']} of a sample set; join the shards with "
                        f"`nuwa samples merge --out DIR SHARD...` and pass DIR")
    return rows


def read_shard(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """run.json and records of one shard folder (`nuwa generate --shard I/N`)."""
    rows = read_index(folder, shard=True)
    run = read_json(folder / RUN, "sample run record")
    if "shard" not in run:
        raise UserError(f"{folder} is a whole sample set, not a shard (no 'shard' in {folder / RUN}); "
                        "pass the folders written with --shard I/N")
    return run, rows


def same_set(runs: list[dict[str, Any]], folders: list[Path]) -> None:
    """The shards are 0..N-1 of one N and agree on every setting (one line naming the first difference)."""
    of = runs[0]["shard"]["of"]
    if sorted(r["shard"]["index"] for r in runs) != list(range(of)) or any(r["shard"]["of"] != of for r in runs):
        got = ", ".join(f"{r['shard']['index']}/{r['shard']['of']}" for r in runs)
        raise UserError(f"shards {got} are not shards 0..{of - 1} of {of}, each once; pass every shard folder")
    settings = [{k: v for k, v in r.items() if k not in (*WALL_CLOCK, "n", "index_sha256")}
                | {"shard": {**r["shard"], "index": None}} for r in runs]
    for run, folder in zip(settings[1:], folders[1:]):
        key = next((k for k in sorted(set(run) | set(settings[0])) if run.get(k) != settings[0].get(k)), None)
        if key is not None:
            raise UserError(f"shard {folder} was generated with other settings than {folders[0]} ({key}: "
                            f"{run.get(key)!r} vs {settings[0].get(key)!r}); regenerate it with the same command")


def merge(folders: list[Path], out: Path, command: list[str] | None = None) -> Path:
    """Join shard folders into ``out``, the folder one `nuwa generate` process writes for the same settings."""
    parts = sorted(((*read_shard(Path(f)), Path(f)) for f in folders), key=lambda part: part[0]["shard"]["index"])
    runs, rows, paths = [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]
    same_set(runs, paths)
    records = [r for part in rows for r in part]  # shards 0..N-1 of the same settings: every batch once
    total = runs[0]["shard"]["samples"]
    seconds = sum(r["seconds"] for r in runs)
    run = {k: v for k, v in runs[0].items() if k != "shard"} | {
        "command": shlex.join(command or sys.argv), "seconds": round(seconds, 3),
        "seconds_per_sample": round(seconds / total, 4)}
    tokens = torch.cat([torch_load(p / "tokens.pt", "sample tokens")["tokens"] for p in paths])
    masks = (torch.cat([torch_load(p / "masks.pt", "outpainting mask") for p in paths])
             if (paths[0] / "masks.pt").exists() else None)
    with atomic_path(out, is_dir=True) as tmp:
        for part in paths:
            for sub in ("images", "videos"):
                if (part / sub).is_dir():
                    shutil.copytree(part / sub, tmp / sub, dirs_exist_ok=True)
        write_index(tmp, records, tokens, run, masks)
    return out

