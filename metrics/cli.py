"""`nuwa eval ...`: FID, Block-FID, IS, FVD and CLIP-SIM over folders or precomputed features; proxy backbone training, checks, throughput."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter

from metrics.backbone import Backbone, Kind, extract
from metrics.backbones import REFERENCE, default_spec, load_backbone
from metrics.block_fid import REGIONS, block_fid, blocks, mask_box
from metrics.clip_sim import clip_sim, cosine, shuffled, similarities
from metrics.config import MetricsConfig, metrics_config
from metrics.features import image_features, video_features
from metrics.fid import MIN_SAMPLES, RELIABLE, fid, fid_from_features
from metrics.fvd import fvd
from metrics.inception_score import inception_score_ci
from metrics.io import (
    captioned,
    is_features,
    leave_out_conditioning,
    list_images,
    list_videos,
    read_features,
    read_metric,
    same_width,
)
from metrics.proxies import train_proxy
from metrics.stats import compare
from nuwa.core.config import add_config_args, config_from_args
from nuwa.core.errors import UserError
from nuwa.core.io import write_json

log = logging.getLogger(__name__)
CHECK_MARGIN = 2.0  # check-proxies: FID of corrupted images must exceed this multiple of FID(test, train)
PRECOMPUTED = {"backbone": "precomputed features (.npz)", "backbone_sha256": ""}
FEATURES = "[N, D]"
Layout = tuple[str, tuple[int, ...], int]  # an .npz input: shape in words, allowed ndims, fewest samples
PAIRED: Layout = (FEATURES, (2,), MIN_SAMPLES)


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
        """Settings of the bootstrap metrics (IS, CLIP-SIM)."""
        return {"resamples": self.cfg.bootstrap, "seed": self.seed, "ci": self.cfg.ci}

    def jackknife(self) -> dict:
        """Settings of the Fréchet-distance metrics (FID, Block-FID, FVD) and their KID."""
        return {"seed": self.seed, "ci": self.cfg.ci, "groups": self.cfg.jackknife_groups,
                "kid_subsets": self.cfg.kid_subsets, "kid_subset_size": self.cfg.kid_subset_size}

    def precomputed(self, *paths: str, options: tuple[str, ...] = ()) -> bool:
        """Are the inputs .npz features (all of them) rather than folders (all of them)?"""
        npz = {is_features(p) for p in paths}
        if len(npz) > 1:
            raise UserError(f"pass {' and '.join(paths)} all as .npz features or all as folders, not a mix")
        used = [o for o in ("backbone", *options) if getattr(self.args, o, None) not in (None, False, "all")]
        if npz == {True} and used:
            raise UserError(f"--{used[0]} applies to folders of samples, not to precomputed features ({paths[-1]}); drop it")
        return npz == {True}

    def inputs(self, kind: Kind, features: Callable[[Backbone, str, str], np.ndarray], layouts: dict[str, Layout],
               options: tuple[str, ...] = (), items: Callable[[str], list[Path]] = list_images) -> tuple[list[np.ndarray], dict]:
        """Features of each input named in ``layouts`` (``--real``, ``--fake``) and where they came from:
        read from .npz files, or extracted from folders by the backbone of ``kind`` (``items``: a folder's
        samples in the order of its feature rows). Real items the generated samples were conditioned on
        are left out (:func:`metrics.io.leave_out_conditioning`)."""
        paths = [getattr(self.args, name) for name in layouts]
        if self.precomputed(*paths, options=options):
            feats = [read_features(p, layout=layout, ndims=ndims, min_samples=least)
                     for p, (layout, ndims, least) in zip(paths, layouts.values())]
            source = PRECOMPUTED
        else:
            bb = self.backbone(kind)
            feats, source = [features(bb, p, name) for p, name in zip(paths, layouts)], bb.describe()
            if len(feats) == 2:
                feats[0], left_out = leave_out_conditioning(feats[0], items(paths[0]), paths[1], layouts["real"][2])
                source = {**source, "real_left_out": left_out}
                if left_out:
                    log.info("left %d real items out of %s: %s was conditioned on them", left_out, paths[0], paths[1])
        if len(feats) == 2:
            same_width(feats[0], paths[0], feats[1], paths[1])
        return feats, source

    def images(self, bb: Backbone, folder: str | Path, desc: str, **kw) -> np.ndarray:
        return image_features(bb, list_images(folder), batch_size=self.cfg.batch_size, cache_dir=self.cache, desc=desc, **kw)

    def finish(self, result: dict, source: dict, **inputs) -> int:
        result = {**result, **source, **{k: str(v) for k, v in inputs.items()}}
        line = f"{result['metric']} {result['value']:.4f} [{result['ci_low']:.4f}, {result['ci_high']:.4f}]"
        if "plugin" in result:
            kid = result["kid"]
            line += f" (plug-in {result['plugin']:.4f}; KID {kid['value']:.5f} [{kid['ci_low']:.5f}, {kid['ci_high']:.5f}])"
        print(f"{line} n={result['n']} backbone={result['backbone']}")
        if not result.get("reliable", True):
            log.warning("%s: too few samples for the bias correction (n=%s, n_real=%s, %.1f effective dimensions; "
                        "%.0f per set trusted): the interval spans the plug-in and mean-term bounds", result["metric"],
                        result["n"], result["n_real"], result["effective_dims"], RELIABLE * result["effective_dims"])
        if self.args.json:
            write_json(self.args.json, result, checksum=True)  # read back by metrics.io.read_metric
        return 0


def cmd_fid(args: argparse.Namespace) -> int:
    run = Run(args)
    (real, fake), source = run.inputs("image", run.images, {"real": PAIRED, "fake": PAIRED})
    return run.finish(fid(real, fake, **run.jackknife()), source, real=args.real, fake=args.fake)


def cmd_block_fid(args: argparse.Namespace) -> int:
    run = Run(args)
    block = args.block or run.cfg.block

    def block_features(bb: Backbone, folder: str, desc: str) -> np.ndarray:
        box = mask_box(args.masks) if args.masks else REGIONS[args.region]
        return run.images(bb, folder, desc, pieces=lambda image: blocks(image, box, block), tag=f"blocks{block}-{box}")

    layouts = {"real": ("[M, D] or [M, P, D]", (2, 3), MIN_SAMPLES), "fake": ("[N, P, D] (P block positions)", (3,), MIN_SAMPLES)}
    (real, fake), source = run.inputs("image", block_features, layouts, options=("block", "masks", "region"))
    result = block_fid(real.reshape(-1, real.shape[-1]), fake, pooled=args.pooled or run.cfg.block_pooled, **run.jackknife())
    where = {} if source is PRECOMPUTED else {"block": block, "region": str(args.masks or args.region)}
    return run.finish({**result, **where}, source, real=args.real, fake=args.fake)


def cmd_is(args: argparse.Namespace) -> int:
    run = Run(args)
    splits = run.cfg.is_splits
    (logits,), source = run.inputs("image", lambda bb, folder, desc: run.images(bb, folder, desc, head="logits"),
                                   {"fake": ("[N, C] (class logits)", (2,), splits)})
    return run.finish(inception_score_ci(logits, splits=splits, **run.stats()), source, fake=args.fake)


def cmd_fvd(args: argparse.Namespace) -> int:
    run = Run(args)
    frames, limit = run.cfg.fvd_frames, run.cfg.fvd_samples or None

    def clips(folder: str) -> list[Path]:
        return list_videos(folder)[:limit]

    def clip_features(bb: Backbone, folder: str, desc: str) -> np.ndarray:
        return video_features(bb, clips(folder), frames=frames, batch_size=run.cfg.batch_size, cache_dir=run.cache, desc=desc)

    (real, fake), source = run.inputs("video", clip_features, {"real": PAIRED, "fake": PAIRED}, items=clips)
    return run.finish(fvd(real, fake, frames=frames, **run.jackknife()), source, real=args.real, fake=args.fake)


def cmd_clip_sim(args: argparse.Namespace) -> int:
    run = Run(args)
    if run.precomputed(args.fake, options=("captions",)):
        layout = "[N, 2, D] (image embedding, caption embedding)"
        pairs = read_features(args.fake, layout=layout, ndims=(3,), min_samples=2)
        if pairs.shape[1] != 2:
            raise UserError(f"{args.fake}: 'feats' has shape {list(pairs.shape)}, expected {layout}")
        sims, source = cosine(pairs[:, 0], pairs[:, 1]), PRECOMPUTED
    else:
        bb = run.backbone("clip")
        rows = captioned(args.fake, args.captions)
        sims = similarities(bb, [p for p, _ in rows], [row.get("caption", "") for _, row in rows], run.cfg.batch_size)
        source = bb.describe()
    return run.finish(clip_sim(sims, **run.stats()), source, fake=args.fake)


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
    from nuwa.core import checkpoint

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

    def command(name: str, func, help: str, *, folders: tuple[str, ...] = ("real", "fake"), backbone: bool = True,
                features: str = FEATURES) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        for f in folders:
            p.add_argument(f"--{f}", required=True, metavar="DIR|NPZ",
                           help=f"{f} samples: a folder (read recursively) or an .npz of precomputed features 'feats' {features}")
        if backbone:
            p.add_argument("--backbone", default=None, metavar="NAME|CKPT",
                           help="inception | clip | i3d | a proxy checkpoint (default: from metrics.backbone)")
        p.add_argument("--json", default=None, metavar="OUT", help="write the result as JSON")
        p.add_argument("--seed", type=int, default=None,
                       help="sampling seed of the scored set: pairs sets by index, seeds the bootstrap and KID subsets (default: config seed)")
        add_config_args(p)
        p.set_defaults(func=func)
        return p

    command("fid", cmd_fid, "FID (bias-corrected) and KID between two image folders or feature files")
    p = command("block-fid", cmd_block_fid, "Block-FID: FID per block position, averaged",
                features="(fake [N, P, D]; real [M, D] or [M, P, D])")
    p.add_argument("--block", type=int, default=None, metavar="PX", help="block side (default: metrics.block)")
    p.add_argument("--pooled", action="store_true", help="one FID over all blocks instead of the mean over positions")
    area = p.add_mutually_exclusive_group()
    area.add_argument("--region", choices=sorted(REGIONS), default="all", help="score only this part of each image")
    area.add_argument("--masks", default=None, metavar="MASKS.PT", help="score only the generated region of OUT/masks.pt")
    command("is", cmd_is, "Inception Score of an image folder", folders=("fake",), features="[N, C] (class logits)")
    command("fvd", cmd_fvd, "FVD (bias-corrected) and KID between two video folders or feature files")
    p = command("clip-sim", cmd_clip_sim, "CLIP similarity of images and their captions", folders=("fake",),
                features="[N, 2, D] (image, caption embedding)")
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
    p = sub.add_parser("compare", help="is result A better than result B? (paired where they share samples)")
    p.add_argument("a", metavar="A.json")
    p.add_argument("b", metavar="B.json")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--higher-is-better", dest="higher_is_better", action="store_true")
    way.add_argument("--lower-is-better", dest="higher_is_better", action="store_false")
    p.add_argument("--ci", type=float, default=0.95)
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=cmd_compare)
