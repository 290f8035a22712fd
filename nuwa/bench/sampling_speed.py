"""`nuwa bench sampling-speed`: seconds per image and tokens per second of Taming, MaskGIT and NUWA-Infinity, one job.

Presets (``--preset``):

* ``embedded``: the workflow's trained Table 2 checkpoints (``--taming/--maskgit/--nuwa CKPT``;
  a missing one is a fresh model of the configured size), a canvas of the baselines' training
  window made ``--widths`` times wide, captioned with :data:`CAPTION` (the models are text models).
* ``paper-geometry``: fresh models of equal size (nuwa.bench.presets: 4 layers, d=256, codebook 1024,
  no text; ``--set`` resizes them), 16x16-token patches and Taming / MaskGIT windows, canvases one
  window high and 1, 2, 4 windows wide, and NUWA-Infinity with each local decoder as its own entry
  (``nuwa-ar``, ``nuwa-nar``, ``nuwa-pnar`` with ``nuwa.sample.steps``).

Taming uses its KV cache on a canvas of its window (width 1) and the sliding window on wider ones;
MaskGIT decodes windows with half-window stride; NUWA-Infinity generates in omega order through
NCP. An entry name with ``+compile`` (e.g. ``nuwa-ar+compile``; ``--compile``: every entry) runs
its decode steps under torch.compile (CUDA graphs on a GPU), so eager and compiled are timed in one
job. Every (model, width, batch) entry is timed ``--repeats`` times after one untimed warm-up
generation per model (per entry when compiled: compilation is not timed); repeats are interleaved (round r of every entry before round r+1 of any),
so a change in machine load shows in every entry alike, and an entry stops repeating once its timed
seconds pass ``--max-entry-seconds``. Sample i of a batch draws from its own random stream (seed + i),
so the tokens of a sample do not depend on the batch size. The result (JSON layout in
docs/benchmarks.md) has the seconds per image of every repeat, their mean, tokens per second and
the ratios the issue's targets are stated in.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from nuwa.bench.output import add_output_args, emit
from nuwa.bench.presets import PRESETS, preset_config
from nuwa.commands.families import get
from nuwa.core.config import add_config_args, apply_overrides
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest, load_module
from nuwa.core.text import tokenize

log = logging.getLogger(__name__)
CAPTION = "a large lake surrounded by green vegetation and mountains in the background"
DECODERS = {"taming": ("taming", None), "maskgit": ("maskgit", None), "nuwa": ("nuwa", None),
            "nuwa-ar": ("nuwa", "ar"), "nuwa-nar": ("nuwa", "nar"), "nuwa-pnar": ("nuwa", "pnar")}
DEFAULTS = {  # preset -> (models, widths, batches)
    "embedded": (("taming", "maskgit", "nuwa"), (4,), (1, 16)),
    "paper-geometry": (("taming", "maskgit", "nuwa-ar", "nuwa-nar", "nuwa-pnar"), (1, 2, 4), (1, 16)),
}


@dataclass
class Model:
    name: str
    family: object
    module: nn.Module
    sampling: object
    checkpoint: str | None
    compile: bool = False

    @property
    def decoder(self) -> str:
        return self.module.cfg.local if self.family.kind == "nuwa" else self.family.kind

    def method(self, width: int) -> str:
        if self.family.kind == "taming":
            return "KV cache" if width == 1 else "sliding window"
        if self.family.kind == "maskgit":
            return f"windows, {self.sampling.steps} steps each"
        steps = {"ar": "", "nar": ", 1 step", "pnar": f", {self.sampling.steps} steps"}[self.decoder]
        return f"NCP {tuple(self.module.cfg.extent)}, {self.decoder.upper()}{steps}"

    def describe(self) -> dict:
        return {"family": self.family.kind, "decoder": self.decoder, "compile": self.compile, "checkpoint": self.checkpoint,
                "parameters": sum(p.numel() for p in self.module.parameters()),
                "config": self.family.model_config(self.module), "sampling": dataclasses.asdict(self.sampling)}


def parse_name(name: str) -> tuple[str, bool]:
    """(entry without ``+compile``, whether it is compiled); a one-line UserError for an unknown one."""
    base = name.removesuffix("+compile")
    if base not in DECODERS:
        raise UserError(f"unknown model {name!r}; choose from {', '.join(DECODERS)} (each optionally +compile)")
    return base, base != name


def build_models(cfg: dict, names: list[str], checkpoints: dict[str, str | None], seed: int,
                 device: torch.device, compile_all: bool = False) -> list[Model]:
    models = []
    for name in names:
        base, compiled = parse_name(name)
        kind, decoder = DECODERS[base]
        family = get(kind)
        path = checkpoints.get(kind) if decoder is None else None
        model_cfg = cfg if decoder is None else apply_overrides(cfg, [f"nuwa.model.local={decoder}"])
        torch.manual_seed(seed)
        module = load_module(family, path) if path else family.build(model_cfg)
        models.append(Model(name, family, module.to(device).eval(), family.sampling_config(model_cfg), path,
                            compiled or compile_all))
    return models


def canvas(cfg: dict, width: int) -> tuple[int, int, int]:
    """The baselines' training window (the Taming window) made ``width`` times as wide."""
    from baselines.config import resolve_model

    h, w = resolve_model(cfg, "taming", causal=True).window
    return 1, h, width * w


def time_one(model: Model, grid: tuple[int, int, int], batch: int, seed: int, device: torch.device) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of one ``generate`` of ``batch`` images (captioned when the model has text)."""
    text = tokenize([CAPTION] * batch) if getattr(model.module, "text", None) is not None else None
    request = GenerationRequest(grid=grid, batch=batch, text=text, sampling=model.sampling, progress=False,
                                generators=[torch.Generator(device).manual_seed(seed + i) for i in range(batch)],
                                compile=model.compile)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model.family.generate(model.module, request)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def summarize(entry: dict) -> dict:
    times = entry["seconds_per_image"]
    mean = statistics.fmean(times)
    entry.update(mean_seconds_per_image=mean, std_seconds_per_image=statistics.stdev(times) if len(times) > 1 else 0.0,
                 mean_cpu_seconds_per_image=statistics.fmean(entry["cpu_seconds_per_image"]),
                 images_per_second=1 / mean, tokens_per_second=entry["tokens_per_image"] / mean,
                 ms_per_token=1e3 * mean / entry["tokens_per_image"])
    return entry


def sampling_speed(cfg: dict, preset: str, names: list[str], widths: list[int], batches: list[int],
                   checkpoints: dict[str, str | None], repeats: int = 5, max_entry_seconds: float = 120.0,
                   seed: int = 0, compile_step: bool = False, device: torch.device | None = None) -> dict:
    """Measure every (model, width, batch); the JSON of docs/benchmarks.md."""
    if repeats < 1 or min(widths) < 1 or min(batches) < 1:
        raise UserError("--repeats, --widths and --batches must be >= 1")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = build_models(cfg, names, checkpoints, seed, device, compile_step)
    entries = [{"model": m.name, "decoder": m.decoder, "method": m.method(width) + (", compiled" if m.compile else ""),
                "width": width, "grid": list(canvas(cfg, width)), "batch": batch, "seconds_per_image": [],
                "cpu_seconds_per_image": []}
               for m in models for width in widths for batch in batches]
    for m in models:  # warm-up: the smallest canvas, one image
        time_one(m, canvas(cfg, min(widths)), 1, seed, device)
    by_name = {m.name: m for m in models}
    for r in range(repeats):
        for e in entries:
            model = by_name[e["model"]]
            if e["seconds_per_image"] and sum(e["seconds_per_image"]) * e["batch"] > max_entry_seconds:
                continue
            if model.compile and not e["seconds_per_image"]:  # compile this entry's shapes untimed
                time_one(model, tuple(e["grid"]), e["batch"], seed, device)
            seconds, cpu = time_one(model, tuple(e["grid"]), e["batch"], seed + 1000 * (r + 1), device)
            e["seconds_per_image"].append(seconds / e["batch"])
            e["cpu_seconds_per_image"].append(cpu / e["batch"])
            log.info("%s x%d batch %d (%s): %.3f s per image", e["model"], e["width"], e["batch"], e["method"], seconds / e["batch"])
    results: dict = {}
    for e in entries:
        e["tokens_per_image"] = e["grid"][1] * e["grid"][2]
        e["repeats"] = len(e["seconds_per_image"])
        results.setdefault(e["model"], {}).setdefault(f"x{e['width']}", {})[f"b{e['batch']}"] = summarize(e)
    return {"benchmark": "sampling-speed", "preset": preset, "device": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "compile": compile_step, "seed": seed, "repeats": repeats,
            "max_entry_seconds": max_entry_seconds, "caption": CAPTION, "window": list(canvas(cfg, 1)[1:]),
            "models": {m.name: m.describe() for m in models}, "results": results, "ratios": ratios(results),
            "cpu_ratios": ratios(results, "mean_cpu_seconds_per_image")}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def ratios(results: dict, seconds: str = "mean_seconds_per_image") -> dict:
    """The issue's targets, as ratios of mean seconds per image (or per token) measured in this run
    (``seconds``: wall clock, or mean_cpu_seconds_per_image: the CPU time of this process)."""
    def mean(model: str, width: int, batch: int, key: str = seconds) -> float | None:
        entry = results.get(model, {}).get(f"x{width}", {}).get(f"b{batch}", {})
        if key == "ms_per_token" and entry:
            return 1e3 * entry[seconds] / entry["tokens_per_image"]
        return entry.get(key)

    out: dict = {}
    nuwa = next((n for n in ("nuwa-ar", "nuwa") if n in results), None)
    widths = sorted({int(w[1:]) for r in results.values() for w in r})
    batches = sorted({int(b[1:]) for r in results.values() for w in r.values() for b in w})
    for width in widths:
        for batch in batches:
            pairs = {f"taming_over_{nuwa}": ("taming", nuwa), f"maskgit_over_{nuwa}": ("maskgit", nuwa),
                     "nuwa-ar_over_nuwa-nar": ("nuwa-ar", "nuwa-nar"), "nuwa-ar_over_nuwa-pnar": ("nuwa-ar", "nuwa-pnar")}
            for key, (a, b) in pairs.items():
                if b is not None and mean(a, width, batch) and mean(b, width, batch):
                    out[f"{key}_x{width}_b{batch}"] = mean(a, width, batch) / mean(b, width, batch)
            if nuwa and mean(nuwa, width, batch, "ms_per_token") and mean("taming", 1, batch, "ms_per_token"):
                out[f"{nuwa}_ms_per_token_x{width}_over_taming_kv_x1_b{batch}"] = (
                    mean(nuwa, width, batch, "ms_per_token") / mean("taming", 1, batch, "ms_per_token"))
            for model in (m for m in results if m.endswith("+compile")):
                base = model.removesuffix("+compile")
                if mean(base, width, batch) and mean(model, width, batch):
                    out[f"{base}_over_{model}_x{width}_b{batch}"] = mean(base, width, batch) / mean(model, width, batch)
            for model in results:
                if batch != 1 and mean(model, width, batch) and mean(model, width, 1):
                    out[f"{model}_images_per_second_b{batch}_over_b1_x{width}"] = mean(model, width, 1) / mean(model, width, batch)
    return out


def table(result: dict) -> str:
    lines = [f"preset {result['preset']}, {result['device']}, {result['threads']} thread(s), compile {result['compile']}, "
             f"window {result['window'][0]}x{result['window'][1]} tokens", "",
             "| model | method | width | batch | s / image (mean +- sd, repeats) | CPU s / image | tokens / s | ms / token |",
             "|---|---|---|---|---|---|---|---|"]
    for model, per_width in result["results"].items():
        for per_batch in per_width.values():
            for e in per_batch.values():
                lines.append(f"| {model} | {e['method']} | x{e['width']} | {e['batch']} | {e['mean_seconds_per_image']:.3f} "
                             f"+- {e['std_seconds_per_image']:.3f} ({e['repeats']}) | {e['mean_cpu_seconds_per_image']:.3f} | "
                             f"{e['tokens_per_second']:.0f} | {e['ms_per_token']:.3f} |")
    lines += ["", "| ratio | wall clock | CPU time |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {result['cpu_ratios'].get(k, float('nan')):.2f} |" for k, v in result["ratios"].items()]
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    models, widths, batches = DEFAULTS[args.preset]
    cfg = preset_config(args, args.preset)
    checkpoints = {"taming": args.taming, "maskgit": args.maskgit, "nuwa": args.nuwa}
    if args.preset == "paper-geometry" and any(checkpoints.values()):
        raise UserError("--preset paper-geometry times fresh models; pass checkpoints with --preset embedded")
    names = args.models or list(models)
    for name in names:
        parse_name(name)
    result = sampling_speed(cfg, args.preset, names, args.widths or list(widths), args.batches or list(batches),
                            checkpoints, args.repeats, args.max_entry_seconds, args.seed, args.compile)
    return emit(result, table(result), args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper-geometry",
                   help="paper-geometry (fresh models, 16x16-token patches/windows) or embedded (trained checkpoints)")
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help=f"entries to time ({', '.join(DECODERS)}; NAME+compile: its decode steps compiled)")
    p.add_argument("--taming", metavar="CKPT", help="embedded: trained Taming checkpoint (default: fresh model)")
    p.add_argument("--maskgit", metavar="CKPT", help="embedded: trained MaskGIT checkpoint (default: fresh model)")
    p.add_argument("--nuwa", metavar="CKPT", help="embedded: trained NUWA-Infinity checkpoint (default: fresh model)")
    p.add_argument("--widths", type=int, nargs="+", help="canvas widths in windows (default: embedded 4; paper-geometry 1 2 4)")
    p.add_argument("--batches", type=int, nargs="+", help="images generated together (default: 1 16)")
    p.add_argument("--repeats", type=int, default=5, help="timed generations per entry (after one warm-up per model)")
    p.add_argument("--max-entry-seconds", type=float, default=120.0,
                   help="stop repeating an entry once its timed seconds exceed this (it keeps at least one)")
    p.add_argument("--compile", action="store_true", help="every entry's decode steps under torch.compile (CUDA graphs on a GPU)")
    p.add_argument("--seed", type=int, default=0)
    add_output_args(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sampling-speed", help="seconds per image of Taming, MaskGIT and NUWA-Infinity in one job")
    add_arguments(p)
    p.set_defaults(func=_cmd)

