"""Seconds per 4x-wide text-to-image sample for Taming (sliding window), MaskGIT and NUWA-Infinity, in one run.

    python -m baselines.timing [--taming CKPT] [--maskgit CKPT] [--nuwa CKPT] [--n 3] [--width-factor 4]
                               [--seed 0] [--json OUT] [--config YAML] [--set KEY=VALUE]

Without checkpoints the models are built fresh from the config (the cost of sampling does not
depend on the weights). The canvas is the baselines' training window (``baselines.taming.model.window``
tokens) made ``width_factor`` times as wide, the same for all three models.
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from baselines.config import resolve_model
from nuwa.cli import add_config_args, config_from_args
from nuwa.errors import UserError
from nuwa.family import Family, GenerationRequest, get, load_module
from nuwa.io import write_json
from nuwa.sampling import SamplingConfig
from nuwa.train import sampling_config
from nuwa.text import tokenize

log = logging.getLogger(__name__)
CAPTION = "a large lake surrounded by green vegetation and mountains in the background"


def seconds_per_image(family: Family, module: nn.Module, grid: tuple[int, int, int], sampling: SamplingConfig,
                      n: int, seed: int) -> float:
    """Mean wall-clock seconds of ``family.generate`` for one captioned image (batch 1), after one warm-up."""
    text = tokenize([CAPTION])
    times = []
    for i in tqdm(range(n + 1), desc=f"timing {family.kind}", leave=False):
        request = GenerationRequest(grid=grid, batch=1, text=text, sampling=sampling, progress=False,
                                    generator=torch.Generator().manual_seed(seed + i))
        start = time.perf_counter()
        family.generate(module, request)
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / n


def load_or_build(family: Family, cfg: dict, path: str | None) -> nn.Module:
    """The trained model of a ``nuwa train --model NAME`` checkpoint, or a fresh one built from the config."""
    if not path:
        return family.build(cfg).eval()
    return load_module(family, path)


def measure(cfg: dict, checkpoints: dict[str, str | None], n: int, width_factor: int, seed: int) -> dict:
    """Seconds per ``width_factor``-wide image for each named family (checkpoint or fresh model), same canvas."""
    torch.manual_seed(seed)
    h, w = resolve_model(cfg, "taming", causal=True).window
    grid = (1, h, width_factor * w)
    result = {"device": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
              "n": n, "width_factor": width_factor, "grid": list(grid), "caption": CAPTION, "models": {}}
    for name, path in checkpoints.items():
        family = get(name)
        module = load_or_build(family, cfg, path)
        sampling = sampling_config(cfg, name)
        seconds = seconds_per_image(family, module, grid, sampling, n, seed)
        result["models"][name] = {"seconds_per_image": round(seconds, 4), "checkpoint": path, "sampling": vars(sampling)}
        log.info("%s: %.3f s per %dx%d-token image", name, seconds, grid[1], grid[2])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baselines.timing", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--taming", metavar="CKPT", help="trained Taming checkpoint (default: fresh model)")
    parser.add_argument("--maskgit", metavar="CKPT", help="trained MaskGIT checkpoint (default: fresh model)")
    parser.add_argument("--nuwa", metavar="CKPT", help="trained NUWA-Infinity checkpoint (default: fresh model)")
    parser.add_argument("--n", type=int, default=3, help="timed images per model (after one warm-up)")
    parser.add_argument("--width-factor", type=int, default=4, help="canvas width in training windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        result = measure(config_from_args(args), {"taming": args.taming, "maskgit": args.maskgit, "nuwa": args.nuwa},
                         args.n, args.width_factor, args.seed)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, row in result["models"].items():
        print(f"{name}\t{row['seconds_per_image']:.3f} s per {result['grid'][1]}x{result['grid'][2]}-token image")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
