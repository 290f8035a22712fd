"""`nuwa eval ...`: FID, Block-FID, IS, FVD and CLIP-SIM over folders; proxy backbone training, checks, throughput."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from metrics.backbones import Backbone, Kind, REFERENCE, default_spec, extract, load_backbone
from metrics.block_fid import REGIONS, block_fid, blocks, mask_box
from metrics.clip_sim import clip_sim, shuffled, similarities
from metrics.config import MetricsConfig, metrics_config
from metrics.features import image_features, video_features
from metrics.fid import fid, fid_from_features
from metrics.fvd import fvd
from metrics.inception_score import inception_score_ci
from metrics.io import captioned, list_images, list_videos, read_metric
from metrics.proxies import train_proxy
from metrics.stats import compare
from nuwa.cli import add_config_args, config_from_args
from nuwa.errors import UserError
from nuwa.io import write_json

log = logging.getLogger(__name__)
CHECK_MARGIN = 2.0  # check-proxies: FID of corrupted images must exceed this multiple of FID(test, train)


class Run:
    """What every eval command shares: the config section, seed, workdir, feature cache, backbone."""

    def __init__(self, args: argparse.Namespace):
        full = config_from_args(args)
        self.cfg: MetricsConfig = metrics_config(full)
        self.seed = args.seed if args.seed is not None else int(full.get("seed", 0))
        self.workdir = Path(full.get("workdir", "work"))
        self.cache = self.workdir / "features" if self.cfg.cache else None
        self.args = args

    def backbone(self, kind: Kind, spec: str | None = None) -> Backbone:
        spec = spec or getattr(self.args, "backbone", None) or default_spec(kind, self.cfg.backbone, self.workdir)
        return load_backbone(spec, kind, self.cfg)

    def stats(self) -> dict:
        return {"resamples": self.cfg.bootstrap, "seed": self.seed, "ci": self.cfg.ci}

    def images(self, bb: Backbone, folder: str | Path, desc: str, **kw) -> np.ndarray:
        return image_features(bb, list_images(folder), batch_size=self.cfg.batch_size, cache_dir=self.cache, desc=desc, **kw)

    def finish(self, result: dict, bb: Backbone, **inputs) -> int:
        result = {**result, **bb.describe(), **{k: str(v) for k, v in inputs.items()}}
        print(f"{result['metric']} {result['value']:.4f} [{result['ci_low']:.4f}, {result['ci_high']:.4f}] "
              f"n={result['n']} backbone={result['backbone']}")
        if self.args.json:
            write_json(self.args.json, result, checksum=True)  # read back by metrics.io.read_metric
        return 0


def cmd_fid(args: argparse.Namespace) -> int:
    run = Run(args)
    bb = run.backbone("image")
    real, fake = run.images(bb, args.real, "real"), run.images(bb, args.fake, "fake")
    return run.finish(fid(real, fake, **run.stats()), bb, real=args.real, fake=args.fake)


def cmd_block_fid(args: argparse.Namespace) -> int:
    run = Run(args)
    bb = run.backbone("image")
    block = args.block or run.cfg.block
    box = mask_box(args.masks) if args.masks else REGIONS[args.region]
    cut = dict(pieces=lambda image: blocks(image, box, block), tag=f"blocks{block}-{box}")
    real, fake = run.images(bb, args.real, "real", **cut), run.images(bb, args.fake, "fake", **cut)
    result = block_fid(real.reshape(-1, real.shape[-1]), fake, pooled=args.pooled or run.cfg.block_pooled, **run.stats())
    return run.finish({**result, "block": block, "region": str(args.masks or args.region)}, bb, real=args.real, fake=args.fake)


def cmd_is(args: argparse.Namespace) -> int:
    run = Run(args)
    bb = run.backbone("image")
    logits = run.images(bb, args.fake, "fake", head="logits")
    return run.finish(inception_score_ci(logits, splits=run.cfg.is_splits, **run.stats()), bb, fake=args.fake)


def cmd_fvd(args: argparse.Namespace) -> int:
    run = Run(args)
    bb = run.backbone("video")
    frames, limit = run.cfg.fvd_frames, run.cfg.fvd_samples or None
    real, fake = (video_features(bb, list_videos(d)[:limit], frames=frames, batch_size=run.cfg.batch_size,
                                 cache_dir=run.cache, desc=name) for d, name in ((args.real, "real"), (args.fake, "fake")))
    return run.finish(fvd(real, fake, frames=frames, **run.stats()), bb, real=args.real, fake=args.fake)


def cmd_clip_sim(args: argparse.Namespace) -> int:
    run = Run(args)
    bb = run.backbone("clip")
    pairs = captioned(args.fake, args.captions)
    sims = similarities(bb, [p for p, _ in pairs], [row.get("caption", "") for _, row in pairs], run.cfg.batch_size)
    return run.finish(clip_sim(sims, **run.stats()), bb, fake=args.fake)


def cmd_train_backbone(args: argparse.Namespace) -> int:
    run = Run(args)
    start = time.time()
    out = train_proxy(args.kind, args.data, args.out, run.cfg, seed=run.seed)
    print(f"proxy {args.kind} backbone -> {out} ({time.time() - start:.1f} s)")
    return 0


def corrupt(image: Image.Image, how: str, rng: np.random.Generator, grid: int = 4) -> Image.Image:
    """A blurred copy, or the image's grid x grid patches in a random order."""
    if how == "blurred":
        return image.filter(ImageFilter.GaussianBlur(radius=image.width / 16))
    arr = np.asarray(image)
    h, w = arr.shape[0] // grid, arr.shape[1] // grid
    tiles = [arr[r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(grid) for c in range(grid)]
    order = rng.permutation(len(tiles))
    rows = [np.concatenate([tiles[order[r * grid + c]] for c in range(grid)], axis=1) for r in range(grid)]
    return Image.fromarray(np.concatenate(rows, axis=0))


def cmd_check_proxies(args: argparse.Namespace) -> int:
    """FID(test, train) << FID(test, blurred/shuffled train) and matching-caption CLIP-SIM > shuffled."""
    import tempfile

    run = Run(args)
    data = Path(args.data)
    image_bb = run.backbone("image", args.image or None)
    clip_bb = run.backbone("clip", args.clip or None)
    test = image_features(image_bb, list_images(data / "test"), batch_size=run.cfg.batch_size, desc="test")
    train_files = list_images(data / "train")
    report: dict = {"image_backbone": image_bb.describe(), "clip_backbone": clip_bb.describe(),
                    "fid_test_train": fid_from_features(test, image_features(image_bb, train_files, batch_size=run.cfg.batch_size, desc="train"))}
    rng = np.random.default_rng(run.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for how in ("blurred", "shuffled"):
            for i, f in enumerate(train_files):
                corrupt(Image.open(f).convert("RGB"), how, rng).save(Path(tmp) / f"{how}_{i:06d}.png")
            files = sorted(Path(tmp).glob(f"{how}_*.png"))
            report[f"fid_test_{how}"] = fid_from_features(test, image_features(image_bb, files, batch_size=run.cfg.batch_size, desc=how))
    pairs = captioned(data / "test", data / "test" / "captions.jsonl")
    files, captions = [p for p, _ in pairs], [row.get("caption", "") for _, row in pairs]
    report["clip_sim_matching"] = float(similarities(clip_bb, files, captions, run.cfg.batch_size).mean())
    report["clip_sim_shuffled"] = float(similarities(clip_bb, files, shuffled(captions, run.seed), run.cfg.batch_size).mean())
    report["margin"] = CHECK_MARGIN
    report["fid_separates"] = min(report["fid_test_blurred"], report["fid_test_shuffled"]) > CHECK_MARGIN * report["fid_test_train"]
    report["clip_separates"] = report["clip_sim_matching"] > report["clip_sim_shuffled"]
    report["passed"] = report["fid_separates"] and report["clip_separates"]
    print(json.dumps(report, indent=2))
    if args.json:
        write_json(args.json, report)
    if not report["passed"]:
        raise UserError("proxy backbones do not separate real from corrupted data (see the report); train them longer (metrics.proxies.*.train.epochs)")
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    """Images (or clips) per second of each backbone on random inputs of the embedded size."""
    run = Run(args)
    specs = args.backbones or [default_spec(k, run.cfg.backbone, run.workdir) for k in ("image", "clip", "video")]
    gen = torch.Generator().manual_seed(run.seed)
    rows = []
    for spec in specs:
        kind: Kind = next((k for k, name in REFERENCE.items() if name == spec), None) or _proxy_kind(spec)
        bb = run.backbone(kind, spec)
        shape = (run.cfg.fvd_frames, 3, args.size, args.size) if kind == "video" else (3, args.size, args.size)
        samples = [torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen) for _ in range(args.n)]
        extract(bb, samples[: run.cfg.batch_size], batch_size=run.cfg.batch_size, desc="warm-up")
        start = time.perf_counter()
        extract(bb, samples, len(samples), batch_size=run.cfg.batch_size, desc="throughput")
        seconds = time.perf_counter() - start
        rows.append({**bb.describe(), "kind": kind, "n": args.n, "size": args.size, "seconds": seconds,
                     "per_second": args.n / seconds, "threads": torch.get_num_threads(),
                     "device": "cpu"})
        print(f"{bb.name}: {args.n / seconds:.1f} {'clips' if kind == 'video' else 'images'}/s ({torch.get_num_threads()} threads)")
    if args.json:
        write_json(args.json, rows)
    return 0


def _proxy_kind(spec: str) -> Kind:
    from nuwa import checkpoint

    kind = checkpoint.load(spec, ("proxy_image", "proxy_clip", "proxy_video"))["kind"]
    return kind.removeprefix("proxy_")  # type: ignore[return-value]


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = (read_metric(p) for p in (args.a, args.b))
    if a["metric"] != b["metric"]:
        raise UserError(f"{args.a} holds {a['metric']} but {args.b} holds {b['metric']}; pass two results of the same metric")
    result = compare(a, b, higher_is_better=args.higher_is_better, ci=args.ci)
    print(f"{result['verdict']}: advantage {result['advantage']:.4f} [{result['ci_low']:.4f}, {result['ci_high']:.4f}]")
    if args.json:
        write_json(args.json, result)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("eval", help="metrics: FID, Block-FID, IS, FVD, CLIP-SIM, proxy backbones")
    sub = group.add_subparsers(dest="eval_command", required=True, metavar="METRIC")

    def command(name: str, func, help: str, *, folders: tuple[str, ...] = ("real", "fake"), backbone: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        for f in folders:
            p.add_argument(f"--{f}", required=True, metavar="DIR", help=f"{f} samples (folder, read recursively)")
        if backbone:
            p.add_argument("--backbone", default=None, metavar="NAME|CKPT",
                           help="inception | clip | i3d | a proxy checkpoint (default: from metrics.backbone)")
        p.add_argument("--json", default=None, metavar="OUT", help="write the result as JSON")
        p.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: config seed)")
        add_config_args(p)
        p.set_defaults(func=func)
        return p

    command("fid", cmd_fid, "FID between two image folders")
    p = command("block-fid", cmd_block_fid, "Block-FID: FID per block position, averaged")
    p.add_argument("--block", type=int, default=None, metavar="PX", help="block side (default: metrics.block)")
    p.add_argument("--pooled", action="store_true", help="one FID over all blocks instead of the mean over positions")
    area = p.add_mutually_exclusive_group()
    area.add_argument("--region", choices=sorted(REGIONS), default="all", help="score only this part of each image")
    area.add_argument("--masks", default=None, metavar="MASKS.PT", help="score only the generated region of OUT/masks.pt")
    command("is", cmd_is, "Inception Score of an image folder", folders=("fake",))
    command("fvd", cmd_fvd, "FVD between two video folders")
    p = command("clip-sim", cmd_clip_sim, "CLIP similarity of images and their captions", folders=("fake",))
    p.add_argument("--captions", default=None, metavar="JSONL", help="file/caption rows (default: FAKE/samples.jsonl or captions.jsonl)")

    p = command("train-backbone", cmd_train_backbone, "train a proxy backbone", folders=(), backbone=False)
    p.add_argument("kind", choices=["image", "clip", "video"])
    p.add_argument("--data", required=True, metavar="DIR", help="dataset from `nuwa data render` (train/ and test/)")
    p.add_argument("--out", required=True, metavar="CKPT")
    p = command("check-proxies", cmd_check_proxies, "check the proxies separate real from corrupted data", folders=(), backbone=False)
    p.add_argument("--data", required=True, metavar="DIR", help="lhqc dataset (train/ and test/ with captions.jsonl)")
    p.add_argument("--image", default=None, metavar="NAME|CKPT", help="image backbone (default: from config)")
    p.add_argument("--clip", default=None, metavar="NAME|CKPT", help="clip backbone (default: from config)")
    p = command("throughput", cmd_throughput, "images/second of each backbone", folders=(), backbone=False)
    p.add_argument("--backbones", nargs="*", default=None, metavar="NAME|CKPT", help="default: the configured three")
    p.add_argument("--n", type=int, default=64, help="samples to time")
    p.add_argument("--size", type=int, default=64, help="input side in pixels")
    p = sub.add_parser("compare", help="paired bootstrap: is result A better than result B?")
    p.add_argument("a", metavar="A.json")
    p.add_argument("b", metavar="B.json")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--higher-is-better", dest="higher_is_better", action="store_true")
    way.add_argument("--lower-is-better", dest="higher_is_better", action="store_false")
    p.add_argument("--ci", type=float, default=0.95)
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=cmd_compare)
