"""`nuwa bench ncp-scaling`: NUWA-Infinity's cost per patch stays flat as the canvas widens.

One randomly initialised model of the configured size (text off) generates canvases 1, 2, 4, ...
patches wide (``rows`` patch rows) in omega order with the AR local decoder. Per width it records
seconds per patch, the peak number of cached patches in NCP and the peak bytes they hold (alone and
with the model's weights, i.e. everything generation keeps between patches), and
the largest attention memory of a step (keys a query sees). The same is then done with a
full-context variant -- the extent covers the whole canvas, so every earlier patch is context and
nothing is ever removed -- to show what NCP saves. Memory is counted exactly from the tensors NCP
holds (CPU has no allocator statistics); on CUDA the allocator's peak is recorded as well.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time

import torch

from nuwa import local
from nuwa.checkpoint import seed_everything
from nuwa.errors import UserError
from nuwa.cli import add_config_args, config_from_args
from nuwa.family import GenerationRequest
from nuwa.io import write_json
from nuwa.model import NuwaInfinity
from nuwa.settings import ModelConfig, settings

log = logging.getLogger(__name__)
WIDTHS = (1, 2, 4, 8, 16, 32)


def measure(model: NuwaInfinity, width: int, rows: int, seed: int, device: torch.device) -> dict:
    m = model.cfg.patch
    request = GenerationRequest(grid=(1, rows * m, width * m), batch=1, progress=False,
                                generator=torch.Generator().manual_seed(seed))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.no_grad():
        _, ncp = local.generate(model, request)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    row = {"width": width, "patches": width * rows, "seconds_per_patch": seconds / (width * rows),
           "peak_cached_patches": ncp.peak, "peak_cache_bytes": ncp.peak_bytes,
           "peak_held_bytes": ncp.peak_bytes + sum(p.numel() * p.element_size() for p in model.parameters()),
           "max_context_tokens": max(len(s) for s in ncp.selects) * model.cfg.tokens_per_patch}
    if device.type == "cuda":
        row["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    return row


def ncp_scaling(model_cfg: ModelConfig, widths: tuple[int, ...] = WIDTHS, rows: int = 2, seed: int = 0,
                device: torch.device | None = None) -> dict:
    """The benchmark table: {"ncp": [row per width], "full": [...], "ratios": {...}}."""
    if min(widths) < 1 or rows < 1:
        raise UserError(f"widths {list(widths)} and rows {rows} must be >= 1 patch")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = dataclasses.replace(model_cfg, text=None, local="ar")
    variants = {"ncp": base, "full": dataclasses.replace(base, extent=(max(widths), rows, 0))}
    result: dict = {"rows": rows, "device": str(device), "threads": torch.get_num_threads(),
                    "model": dataclasses.asdict(base)}
    for name, cfg in variants.items():
        seed_everything(seed)
        model = NuwaInfinity(cfg).to(device).eval()
        measure(model, widths[0], rows, seed, device)  # warm-up
        result[name] = []
        for width in widths:
            row = measure(model, width, rows, seed, device)
            log.info("%s width %d: %.4f s/patch, %d cached patches", name, width, row["seconds_per_patch"], row["peak_cached_patches"])
            result[name].append(row)
    refs = [w for w in (2, 4) if w in widths and w < max(widths)]  # 4 > e_w + 1: the extent is saturated
    result["ratios"] = {name: {k: v for ref in refs for k, v in ratios(result[name], max(widths), ref).items()}
                        for name in variants}
    return result


def ratios(rows: list[dict], wide: int, ref: int) -> dict:
    by = {r["width"]: r for r in rows}
    keys = ("seconds_per_patch", "peak_cache_bytes", "peak_held_bytes", "max_context_tokens")
    return {f"{k}_{wide}_vs_{ref}": by[wide][k] / max(by[ref][k], 1e-12) for k in keys}


def table(result: dict) -> str:
    lines = ["| variant | width | s/patch | peak cached patches | peak cache MiB | weights + caches MiB | max context tokens |",
             "|---|---|---|---|---|---|---|"]
    for name in ("ncp", "full"):
        for r in result[name]:
            lines.append(f"| {name} | {r['width']} | {r['seconds_per_patch']:.4f} | {r['peak_cached_patches']} | "
                         f"{r['peak_cache_bytes'] / 2**20:.3f} | {r['peak_held_bytes'] / 2**20:.3f} | {r['max_context_tokens']} |")
    for name, rs in ((n, r) for n, r in result["ratios"].items() if r):
        lines.append(f"\n{name}: " + ", ".join(f"{k} = {v:.2f}" for k, v in rs.items()))
    return "\n".join(lines)


def _cmd_ncp_scaling(args: argparse.Namespace) -> int:
    cfg = settings(config_from_args(args)).model
    result = ncp_scaling(cfg, tuple(args.widths), args.rows, args.seed)
    print(table(result))
    if args.json:
        write_json(args.json, result)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="performance benchmarks")
    sub = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    p = sub.add_parser("ncp-scaling", help="seconds per patch and cache memory vs canvas width, NCP vs full context")
    add_config_args(p)
    p.add_argument("--json", default=None, metavar="OUT", help="also write the table as JSON")
    p.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), help="canvas widths in patches")
    p.add_argument("--rows", type=int, default=2, help="canvas height in patches")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_ncp_scaling)
