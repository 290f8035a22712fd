"""`nuwa bench ncp-scaling`: NUWA-Infinity's cost per patch stays flat as the canvas widens.

One randomly initialised model (text off, AR local decoder; by default the paper geometry: 16x16-token
patches, extent (2, 2, 0), 4 layers, d=256, codebook 1024 -- big enough that attention over the
context is a real part of a token's cost) generates ``batch`` canvases at once, ``rows`` patch rows
high and 1, 2, 4, ..., 32 patches wide, in omega order. The same is done with a full-context variant -- the extent
covers the whole canvas, so every earlier patch is context and nothing is ever removed -- to show
what NCP saves.

Per (variant, width), measured in a freshly spawned process so that its memory peak is its own:
seconds per patch position (all ``batch`` canvases' patches there; after a 1-patch-wide warm-up in
that process; wall clock, and the CPU seconds of the process, which other jobs on a shared machine
disturb much less), the peak resident memory of the
process (``ru_maxrss``: everything -- runtime, weights, caches, attention temporaries) and its growth
over the process right before generating, NCP's peak number of live caches and the bytes they hold
(weights included: ``peak_held_bytes``), the preallocated NCP pool, and the widest context one
patch attends to. On CUDA the allocator's peak is recorded too.

At batch 1 a small model's token costs mostly the weight reads of its matrix-vector products, the
same for any context; at a sampling batch (the workflow generates 32 images at a time) the weights
are read once for the whole batch while every image reads its own context's keys and values, so
what NCP saves shows in seconds as well as in memory.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time

import torch

from nuwa.bench.memory import isolated, peak_rss_bytes, rss_bytes
from nuwa.bench.output import add_output_args, emit
from nuwa.bench.presets import PRESETS, preset_config
from nuwa.core.config import add_config_args
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.model.config import ModelConfig, settings

log = logging.getLogger(__name__)
WIDTHS = (1, 2, 4, 8, 16, 32)


def generate_once(model, width: int, rows: int, seed: int, device: torch.device, batch: int = 1
                  ) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, the NCP used) of one generation."""
    from nuwa.model.generate import generate

    m = model.cfg.patch
    request = GenerationRequest(grid=(1, rows * m, width * m), batch=batch, progress=False,
                                generator=torch.Generator(device).manual_seed(seed))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        _, ncp = generate(model, request)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu, ncp


def measure(model_cfg: dict, width: int, rows: int, seed: int, device: str, batch: int = 1) -> dict:
    """One (variant, width) row; meant to run in its own process (nuwa.bench.memory.isolated)."""
    from nuwa.model.decoder import NuwaInfinity

    torch.manual_seed(seed)
    dev = torch.device(device)
    model = NuwaInfinity(ModelConfig(**model_cfg)).to(dev).eval()
    generate_once(model, 1, rows, seed, dev, batch)  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = rss_bytes()
    seconds, cpu_seconds, ncp = generate_once(model, width, rows, seed, dev, batch)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    tokens = model.cfg.tokens_per_patch
    row = {"width": width, "patches": width * rows, "seconds_per_patch": seconds / (width * rows),
           "cpu_seconds_per_patch": cpu_seconds / (width * rows),
           "peak_cached_patches": ncp.peak, "peak_cache_bytes": ncp.peak_bytes, "peak_held_bytes": ncp.peak_bytes + weights,
           "pool_bytes": ncp.kv.nbytes(),
           "max_context_tokens": max(len(s) for s in ncp.selects) * tokens,
           "peak_rss_bytes": peak_rss_bytes(), "rss_before_bytes": before, "rss_growth_bytes": peak_rss_bytes() - before}
    if dev.type == "cuda":
        row["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    return row


def ncp_scaling(model_cfg: ModelConfig, widths: tuple[int, ...] = WIDTHS, rows: int = 2, seed: int = 0,
                device: torch.device | None = None, isolate: bool = True, batch: int = 1) -> dict:
    """The benchmark table: {"ncp": [row per width], "full": [...], "ratios": {...}}.

    ``isolate=False`` measures in this process (quick, for tests; the RSS columns are then this process's)."""
    if min(widths) < 1 or rows < 1:
        raise UserError(f"widths {list(widths)} and rows {rows} must be >= 1 patch")
    if batch < 1:
        raise UserError(f"--batch {batch} must be >= 1 canvas")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = dataclasses.replace(model_cfg, text=None, local="ar")
    variants = {"ncp": base, "full": dataclasses.replace(base, extent=(max(widths), rows, 0))}
    result: dict = {"rows": rows, "batch": batch, "device": str(device), "threads": torch.get_num_threads(), "isolated": isolate,
                    "model": dataclasses.asdict(base), "ncp": [], "full": []}
    run = isolated if isolate else (lambda fn, *a: fn(*a))
    for width in widths:  # the two variants side by side, width by width
        for name, cfg in variants.items():
            row = run(measure, dataclasses.asdict(cfg), width, rows, seed, str(device), batch)
            log.info("%s width %d: %.4f s/patch, %d live caches, peak RSS %.0f MiB", name, width,
                     row["seconds_per_patch"], row["peak_cached_patches"], row["peak_rss_bytes"] / 2**20)
            result[name].append(row)
    refs = [w for w in (2, 4) if w in widths and w < max(widths)]  # 4 > e_w + 1: the extent is saturated
    result["ratios"] = {name: {k: v for ref in refs for k, v in ratios(result[name], max(widths), ref).items()}
                        for name in variants}
    return result


def ratios(rows: list[dict], wide: int, ref: int) -> dict:
    by = {r["width"]: r for r in rows}
    keys = ("seconds_per_patch", "cpu_seconds_per_patch", "peak_rss_bytes", "rss_growth_bytes", "peak_cache_bytes", "peak_held_bytes", "max_context_tokens")
    return {f"{k}_{wide}_vs_{ref}": by[wide][k] / max(by[ref][k], 1e-12) for k in keys}


def table(result: dict) -> str:
    mib = 2 ** 20
    lines = ["| variant | width | s/patch | CPU s/patch | peak RSS MiB | RSS growth MiB | live caches | cache MiB | weights + caches MiB | NCP pool MiB | max context tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("ncp", "full"):
        for r in result[name]:
            lines.append(f"| {name} | {r['width']} | {r['seconds_per_patch']:.4f} | {r['cpu_seconds_per_patch']:.4f} | "
                         f"{r['peak_rss_bytes'] / mib:.0f} | "
                         f"{r['rss_growth_bytes'] / mib:.1f} | {r['peak_cached_patches']} | {r['peak_cache_bytes'] / mib:.2f} | "
                         f"{r['peak_held_bytes'] / mib:.2f} | {r['pool_bytes'] / mib:.2f} | {r['max_context_tokens']} |")
    for name, rs in ((n, r) for n, r in result["ratios"].items() if r):
        lines.append(f"\n{name}: " + ", ".join(f"{k} = {v:.2f}" for k, v in rs.items()))
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    cfg = settings(preset_config(args, args.preset)).model
    result = ncp_scaling(cfg, tuple(args.widths), args.rows, args.seed, isolate=not args.in_process, batch=args.batch)
    result["preset"] = args.preset
    return emit(result, table(result), args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ncp-scaling", help="seconds per patch and memory vs canvas width, NCP vs full context")
    add_config_args(p)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper-geometry",
                   help="paper-geometry (default: 16x16-token patches, 4 layers, d=256) or embedded (the configured model)")
    add_output_args(p)
    p.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), help="canvas widths in patches")
    p.add_argument("--rows", type=int, default=2, help="canvas height in patches")
    p.add_argument("--batch", type=int, default=1, help="canvases generated together (seconds are per patch position of the batch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--in-process", action="store_true", help="measure in this process (no fresh process per row)")
    p.set_defaults(func=_cmd)
