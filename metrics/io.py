"""Reading what the metrics score: image folders (recursively), videos (files or frame folders), captions,
and precomputed features (.npz files holding an array ``feats``).

Images come back as uint8 tensors [3, H, W]; videos as uint8 tensors [T, 3, H, W]; features as
float64 arrays. Every unreadable, missing or malformed input is a one-line UserError.
"""
from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch

from nuwa.core.errors import UserError
from nuwa.core.io import read_rgb, read_text

log = logging.getLogger(__name__)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_EXTS = (".gif", ".mp4", ".avi", ".mov", ".webm")


def list_images(folder: str | Path) -> list[Path]:
    """All images under ``folder`` (recursively), sorted by relative path."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root} (pass a folder of images, e.g. OUT/images of `nuwa generate`)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_EXTS)}) found under {root}")
    return files


def list_videos(folder: str | Path) -> list[Path]:
    """Videos under ``folder``: video files, or leaf folders of frame images (one clip each), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"video folder not found: {root} (pass OUT/videos of `nuwa generate` or DATA/split/clips)")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
    frame_dirs = {p.parent for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS}
    # a generated sample has both OUT/videos/000000/ (frames) and OUT/videos/000000.gif: keep the frames
    files = [f for f in files if f.with_suffix("") not in frame_dirs]
    videos = sorted(files + list(frame_dirs))
    if not videos:
        raise UserError(f"no videos (files {', '.join(VIDEO_EXTS)} or folders of frames) found under {root}")
    return videos


def read_video(path: str | Path, frames: int | None = None) -> torch.Tensor:
    """uint8 [T, 3, H, W]; ``frames`` keeps the first ``frames`` frames (fewer is an error)."""
    p = Path(path)
    if p.is_dir():
        names = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        video = torch.stack([read_rgb(f) for f in names[:frames]]) if names else None
    else:
        import imageio.v3 as iio
        try:
            arr = iio.imread(p, index=None)
        except Exception as exc:
            raise UserError(f"corrupt or unreadable video {p} ({type(exc).__name__}); re-create or delete it") from exc
        arr = arr[..., :3] if arr.ndim == 4 else np.repeat(arr[..., None], 3, axis=-1)
        video = torch.from_numpy(np.ascontiguousarray(arr[:frames])).permute(0, 3, 1, 2)
    if video is None or (frames is not None and video.shape[0] < frames):
        have = 0 if video is None else video.shape[0]
        raise UserError(f"video {p} has {have} frames, {frames} needed (lower metrics.fvd_frames or render longer clips)")
    return video


def read_records(path: str | Path) -> list[dict]:
    """Rows of a JSONL file (captions.jsonl of a dataset split or samples.jsonl of `nuwa generate`)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"caption file not found: {p} (expected captions.jsonl or samples.jsonl with 'file' and 'caption')")
    rows = []
    for i, line in enumerate(read_text(p, "caption file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{i} is not valid JSON ({exc.msg}); fix or re-create the file") from exc
        if not isinstance(row, dict) or "file" not in row:
            raise UserError(f"{p}:{i} has no 'file' field; each line must be an object with 'file' and 'caption'")
        rows.append(row)
    if not rows:
        raise UserError(f"{p} holds no rows")
    return rows


def resolve(root: Path, name: str, listed_in: Path, subdirs: tuple[str, ...] = ("", "images", "clips", "videos")) -> Path:
    """The sample ``name`` of records file ``listed_in``, relative to ``root`` or one of its sample folders."""
    for sub in subdirs:
        p = root / sub / name
        if p.exists():
            return p
    raise UserError(f"sample {name!r} listed in {listed_in} is not in {root} (nor under "
                    f"{', '.join(s for s in subdirs if s)}/); remove its row or add the file")


def captioned(folder: str | Path, captions: str | Path | None = None) -> list[tuple[Path, dict]]:
    """(sample path, record) pairs from ``captions`` or the folder's samples.jsonl / captions.jsonl.

    A generated folder's samples.jsonl is checked against its run.json (``nuwa.core.sample_folders.read_index``);
    every image under an image folder must have exactly one caption row.
    """
    from nuwa.core.sample_folders import INDEX, read_index

    root = Path(folder)
    if captions is None:
        found = [root / n for n in (INDEX, "captions.jsonl") if (root / n).is_file()]
        if not found:
            raise UserError(f"no samples.jsonl or captions.jsonl in {root}; pass --captions FILE")
        captions = found[0]
    rows = read_index(root) if Path(captions) == root / INDEX else read_records(captions)
    pairs = [(resolve(root, row["file"], Path(captions)), row) for row in rows]
    check_one_row_per_image(root, [p for p, _ in pairs], Path(captions))
    return pairs


def check_one_row_per_image(root: Path, listed: list[Path], captions: Path) -> None:
    """Images of ``root`` without a caption row, or rows listing one image twice, are one line."""
    if not all(p.is_file() and p.suffix.lower() in IMAGE_EXTS for p in listed):
        return  # videos (files or frame folders): every listed clip was resolved
    seen = {p.resolve() for p in listed}
    if len(seen) < len(listed):
        raise UserError(f"{captions} lists an image twice ({len(listed) - len(seen)} duplicate rows); one row per image")
    unlisted = [p for p in list_images(root) if p.resolve() not in seen]
    if unlisted:
        raise UserError(f"{captions} has no row for {len(unlisted)} image(s) under {root}, e.g. {unlisted[0]}; "
                        "add their rows or remove the images")


def conditioning_items(fake: str | Path) -> set[Path]:
    """The dataset items a generated folder was conditioned on (``conditioned_on`` in its samples.jsonl),
    resolved; empty for a folder that `nuwa generate --data` did not write."""
    from nuwa.core.sample_folders import INDEX, read_index

    root = Path(fake)
    if not (root / INDEX).is_file():
        return set()
    used = {Path(row["conditioned_on"]).resolve() for row in read_index(root) if row.get("conditioned_on")}
    if used and not any(p.exists() for p in used):
        log.warning("%s was conditioned on dataset items that do not exist from here (e.g. %s): they cannot be left "
                    "out of the real set; run `nuwa eval` from the directory `nuwa generate` ran in", root, min(used))
    return used


def leave_out_conditioning(real: np.ndarray, items: list[Path], fake: str | Path, least: int) -> tuple[np.ndarray, int]:
    """Real features (row i = ``items[i]``) without the items the generated set was conditioned on, and their count.

    A sample made from a test item (its caption, its known half, its first frame) is correlated with
    that item, and the distance estimators and their intervals assume independent real and generated
    sets (docs/metrics.md): scoring against the disjoint rest keeps them valid.
    """
    used = conditioning_items(fake)
    if not used:
        return real, 0
    keep = np.array([p.resolve() not in used for p in items], dtype=bool)
    left_out = int((~keep).sum())
    if keep.sum() < least:
        raise UserError(f"only {int(keep.sum())} real items remain after leaving out the {left_out} that {fake} was "
                        f"conditioned on (at least {least} needed); render more test items or generate fewer samples")
    return real[keep], left_out


def is_features(path: str | Path) -> bool:
    """Is ``path`` a precomputed-features file (``.npz``) rather than a folder of samples?"""
    return Path(path).suffix.lower() == ".npz"


def read_features(path: str | Path, *, layout: str, ndims: tuple[int, ...], min_samples: int) -> np.ndarray:
    """The array ``feats`` of an .npz file as float64, checked: ndim, floating dtype, finite, enough samples.

    ``layout`` names the expected shape in messages (e.g. "[N, D]").
    """
    p = Path(path)
    how = f"an .npz file holding an array 'feats' {layout}, e.g. np.savez(path, feats=features)"
    if not p.is_file():
        raise UserError(f"features file not found: {p} (pass {how})")
    try:
        with np.load(p, allow_pickle=False) as data:
            if "feats" not in data.files:
                raise UserError(f"{p} has no array 'feats' (it holds: {', '.join(data.files) or 'nothing'}); pass {how}")
            feats = data["feats"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{p} is not a readable .npz of numbers ({exc}); pass {how}") from exc
    if feats.ndim not in ndims:
        raise UserError(f"{p}: 'feats' has shape {list(feats.shape)}, expected {layout}; pass {how}")
    if not np.issubdtype(feats.dtype, np.floating):
        raise UserError(f"{p}: 'feats' has dtype {feats.dtype}, expected floating point (float32 or float64); save the features as floats")
    bad = ~np.isfinite(feats)
    if bad.any():
        raise UserError(f"{p}: 'feats' holds {int(bad.sum())} NaN/inf values (first in sample {int(np.argwhere(bad)[0][0])}); recompute those features")
    if feats.shape[0] < min_samples:
        raise UserError(f"{p}: 'feats' holds {feats.shape[0]} samples, at least {min_samples} are needed; score more samples")
    return feats.astype(np.float64)


def same_width(real: np.ndarray, real_path: str | Path, fake: np.ndarray, fake_path: str | Path) -> None:
    """Real and generated features must have the same feature size D (last axis)."""
    if real.shape[-1] != fake.shape[-1]:
        raise UserError(f"{real_path} has {real.shape[-1]}-d features but {fake_path} has {fake.shape[-1]}-d; "
                        "compute both with the same backbone")


def read_metric(path: str | Path, metric: str = "") -> dict:
    """A metric JSON of `nuwa eval METRIC --json` (content hash, numbers and, if given, the metric name checked)."""
    from nuwa.core.io import read_json

    hint = "rerun the metric (`nuwa eval ... --json`)"
    fix = f"delete it and {hint}"
    result = read_json(path, "metric result", hint)
    name = metric.replace("-", "_")
    if not isinstance(result, dict) or "metric" not in result:
        raise UserError(f"metric result {path} is not the output of `nuwa eval` (no 'metric' entry); {fix}")
    if not str(result["metric"]).replace("-", "_").startswith(name):
        raise UserError(f"metric result {path} holds {result['metric']!r}, not {name!r}; {fix}")
    bad = [k for k in ("value", "ci_low", "ci_high", "n") if not _finite_number(result.get(k))]
    if bad or result["n"] < 1:
        raise UserError(f"metric result {path} has no finite {bad[0] if bad else 'n >= 1'}; {fix}")
    return result


def _finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)
