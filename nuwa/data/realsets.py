"""The manifests of config/real.yaml: hand-written regions and captions -> one manifest line per sample.

``config/real/lhqc_regions.yaml`` names nature photos of an installed package, regions of each (in
eighths of the photo) and the caption and attributes true of any crop inside a region; this module
draws ``crops_per_region`` random square crops per region (seeded) and writes
``config/real/lhqc.jsonl`` (file, box, caption, attrs). ``config/real/lhqv_regions.yaml`` names
videos, square views and start times; it becomes ``config/real/lhqv.jsonl`` (file, box, start,
split, caption, attrs). Both outputs are committed: the folder adapters read them, and a test checks
they are what this module writes. Regenerate with ``python -m nuwa.data.realsets``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from nuwa.config import REPO_ROOT
from nuwa.io import write_text

REAL = REPO_ROOT / "config" / "real"


def lhqc_lines(spec: dict) -> list[dict]:
    rng = np.random.default_rng(spec["seed"])
    lines = []
    for file, photo in spec["photos"].items():
        w, h = photo["size"]
        for region in photo["regions"]:
            x0, y0, x1, y1 = (round(v * s / 8) for v, s in zip(region["box"], (w, h, w, h)))
            short = min(x1 - x0, y1 - y0)
            lo, hi = region.get("side", spec["side"])
            for _ in range(spec["crops_per_region"]):
                side = int(rng.uniform(lo, hi) * short)
                left = int(rng.integers(x0, x1 - side + 1))
                top = int(rng.integers(y0, y1 - side + 1))
                lines.append({"file": file, "box": [left, top, left + side, top + side], "caption": region["caption"],
                              "attrs": {"subject": region["subject"], "colour": region["colour"],
                                        "photo": Path(file).stem}})
    return lines


def lhqv_lines(spec: dict) -> list[dict]:
    lines = []
    for file, video in spec["videos"].items():
        starts = np.arange(0.0, video["until"] + 1e-9, video["every"])
        for view in video["views"]:
            for start in starts:
                lines.append({"file": file, "box": view["box"], "start": round(float(start), 3),
                              "split": "test" if start >= video["test_from"] else "train",
                              "caption": view["caption"], "attrs": {"video": Path(file).stem, "view": view["view"]}})
    return lines


def render(lines: list[dict]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def manifests(folder: Path = REAL) -> dict[Path, str]:
    """Manifest path -> the text this module writes for it."""
    out = {}
    for name, make in (("lhqc", lhqc_lines), ("lhqv", lhqv_lines)):
        spec = yaml.safe_load((folder / f"{name}_regions.yaml").read_text())
        out[folder / f"{name}.jsonl"] = render(make(spec))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(REAL), help="folder of the *_regions.yaml files (default: config/real)")
    args = parser.parse_args(argv)
    for path, text in manifests(Path(args.folder)).items():
        write_text(path, text)
        print(f"{path}: {text.count(chr(10))} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
