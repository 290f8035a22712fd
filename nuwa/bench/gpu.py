"""The GPU benchmarks of docs/benchmarks.md in one unattended run (``nuwa/bench/gpu.sh``), one JSON.

Sections, each written to the JSON as soon as it is done (a run cut short keeps what it measured):

1. ``train``: bf16 training of the paper's Base decoder (16 layers, d=768, 12 heads, 16x16-token
   patches, codebook 16384, extent (2, 2, 0), no text) on 64x64-token images (4x4 patches), the
   parallel masked form (accumulated loss, one step per batch, AdamW): tokens/s and MFU, model FLOPs
   = 3 x (2 x matmul parameters per position + 4 d per visible query-key pair per layer).
2. ``decode``: AR generation of one 64x64-token image (16 patches) with the same model in bf16, at
   batch 1 and 64, eager and under torch.compile (mode="reduce-overhead": CUDA graphs): tokens/s and,
   at batch 1, the fraction of the HBM-bandwidth roofline (every decode step reads all weights once
   and the keys/values it attends to).
3. ``sampling_speed``: ``nuwa bench sampling-speed --preset paper-geometry`` (3 repeats).
4. ``ncp_scaling``: ``nuwa bench ncp-scaling`` at the paper geometry, in this process.

``--dry-run`` runs every section at toy sizes on the CPU (a test of this script, not a benchmark).
A section that would start after ``--deadline`` seconds is skipped and says so.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import platform
import sys
import time
import traceback

import torch

from nuwa.core.io import write_json
from nuwa.model.config import ModelConfig

log = logging.getLogger(__name__)
# dense bf16 tensor-core FLOP/s and HBM bytes/s by device name (first match wins)
PEAKS = [("H200", 989e12, 4.8e12), ("H100 PCIe", 756e12, 2.0e12), ("H100", 989e12, 3.35e12),
         ("A100", 312e12, 2.0e12), ("L40S", 362e12, 0.864e12)]
BASE = ModelConfig(codebook=16384, layers=16, dim=768, heads=12, patch=16, extent=(2, 2, 0), text=None)
TOY = ModelConfig(codebook=64, layers=2, dim=64, heads=2, patch=4, extent=(2, 2, 0), text=None)


def peaks(device: torch.device) -> tuple[float | None, float | None]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return next(((f, b) for key, f, b in PEAKS if key in name), (None, None))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_parameters(model: torch.nn.Module) -> int:
    """Weights that take part in a matrix product per position (blocks and output head, not embeddings)."""
    return sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and (n.startswith("blocks.") or n.startswith("head.")))


def train(cfg: ModelConfig, device: torch.device, batch: int, steps: int, image_tokens: int) -> dict:
    from nuwa.model.decoder import NuwaInfinity
    from nuwa.model.train import loss_of, teacher_layout

    torch.manual_seed(0)
    model = NuwaInfinity(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    tokens = torch.randint(0, cfg.codebook, (batch, 1, image_tokens, image_tokens), device=device)
    layout = teacher_layout(model, tokens, torch.arange(batch, device=device) % 4)
    allowed, _ = model.attention_mask(layout.pos, layout.pos, torch.zeros(layout.ids.shape[1], dtype=torch.bool, device=device))
    positions = layout.ids.numel()
    flops = 3 * (2 * matmul_parameters(model) * positions + 4 * cfg.dim * cfg.layers * int(allowed.sum()))
    del allowed

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_of(model(layout.ids, layout.pos, parallel=True).logits, layout.targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    peak_flops, _ = peaks(device)
    row = {"model": dataclasses.asdict(cfg), "batch": batch, "image_tokens": [image_tokens, image_tokens],
           "positions_per_step": positions, "steps": steps, "seconds_per_step": seconds,
           "tokens_per_second": batch * image_tokens ** 2 / seconds, "model_flops_per_step": flops,
           "achieved_flops": flops / seconds, "peak_flops": peak_flops,
           "mfu": flops / seconds / peak_flops if peak_flops else None}
    if device.type == "cuda":
        row["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    return row


def decode(cfg: ModelConfig, device: torch.device, batch: int, compile_step: bool, image_tokens: int) -> dict:
    from nuwa.core.family import GenerationRequest
    from nuwa.model import adc
    from nuwa.model.decoder import NuwaInfinity
    from nuwa.model.generate import generate
    from nuwa.model.ncp import NCP

    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = NuwaInfinity(cfg).to(device=device, dtype=dtype).eval()
    grid = (1, image_tokens, image_tokens)

    def run() -> float:
        request = GenerationRequest(grid=grid, batch=batch, progress=False, compile=compile_step,
                                    generators=[torch.Generator(device).manual_seed(i) for i in range(batch)])
        sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            generate(model, request)
        sync(device)
        return time.perf_counter() - start

    warmup = run()  # includes compilation
    seconds = run()
    tokens = image_tokens ** 2
    m = cfg.tokens_per_patch
    plan = adc.split((1, image_tokens // cfg.patch, image_tokens // cfg.patch), "omega")
    ncp = NCP(torch.tensor([p[:3] for p in plan])[None], cfg.extent)
    keys_per_step = sum(len(s) * m + (m + 2) / 2 for s in ncp.selects) / len(plan)  # mean keys a decode step reads
    element = torch.finfo(dtype).bits // 8
    weight_bytes = matmul_parameters(model) * element
    step_bytes = weight_bytes + keys_per_step * 2 * cfg.dim * cfg.layers * element * batch
    _, bandwidth = peaks(device)
    steps = len(plan) * (m + 1)
    row = {"model": dataclasses.asdict(cfg), "dtype": str(dtype), "batch": batch, "compile": compile_step,
           "image_tokens": [image_tokens, image_tokens], "warmup_seconds": warmup, "seconds_per_batch": seconds,
           "tokens_per_second": batch * tokens / seconds, "decode_steps": steps, "seconds_per_step": seconds / steps,
           "bytes_per_step": step_bytes, "hbm_bandwidth": bandwidth}
    if bandwidth:
        row["roofline_steps_per_second"] = bandwidth / step_bytes
        row["fraction_of_roofline"] = (steps / seconds) / row["roofline_steps_per_second"]
    return row


def sampling_speed(dry: bool) -> dict:
    from nuwa.bench.presets import preset_config
    from nuwa.bench.sampling_speed import sampling_speed as measure

    sets = ["nuwa.model.layers=2", "nuwa.model.dim=32", "nuwa.model.heads=2", "nuwa.model.patch=4",
            "baselines.taming.model.window=[4, 4]", "baselines.maskgit.model.window=[4, 4]"] if dry else []
    cfg = preset_config(argparse.Namespace(config=None, overrides=sets), "paper-geometry", check=False)
    names = ["taming", "maskgit", "nuwa-ar", "nuwa-nar", "nuwa-pnar"]
    return measure(cfg, "paper-geometry", names, [1, 2] if dry else [1, 2, 4], [1, 2] if dry else [1, 16], {},
                   repeats=1 if dry else 3, max_entry_seconds=30.0)


def ncp_scaling(dry: bool, device: torch.device) -> dict:
    from nuwa.bench.ncp_scaling import ncp_scaling as measure
    from nuwa.bench.presets import preset_config
    from nuwa.model.config import settings

    sets = ["nuwa.model.layers=2", "nuwa.model.dim=32", "nuwa.model.heads=2", "nuwa.model.patch=4"] if dry else []
    cfg = settings(preset_config(argparse.Namespace(config=None, overrides=sets), "paper-geometry", check=False)).model
    return measure(cfg, (1, 2, 4) if dry else (1, 2, 4, 8, 16, 32), 1 if dry else 2, 0, device, isolate=False)


def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "cuda": torch.version.cuda, "host": platform.node()}
    if device.type == "cuda":
        env.update(name=torch.cuda.get_device_name(device), capability=list(torch.cuda.get_device_capability(device)),
                   memory_bytes=torch.cuda.get_device_properties(device).total_memory)
    flops, bandwidth = peaks(device)
    env.update(peak_bf16_flops=flops, hbm_bandwidth=bandwidth)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nuwa/bench/gpu.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, metavar="OUT")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU: checks the script, measures nothing")
    parser.add_argument("--deadline", type=float, default=450.0, help="seconds after which no new section starts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    start = time.perf_counter()
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.dry_run:
        print("error: no CUDA device; use --dry-run to check the script on a CPU", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg, image = (TOY, 16) if args.dry_run else (BASE, 64)
    result: dict = {"benchmark": "gpu", "dry_run": args.dry_run, "environment": environment(device), "sections": {}}
    sections = [("train", lambda: train(cfg, device, 2, 2 if args.dry_run else 10, image))]
    for batch in (1, 4 if args.dry_run else 64):
        for compile_step in (False, True):
            if args.dry_run and compile_step:
                continue  # CPU compilation takes minutes; the compiled step is tested by tests/test_engine.py
            sections.append((f"decode_b{batch}_{'compiled' if compile_step else 'eager'}",
                             lambda b=batch, c=compile_step: decode(cfg, device, b, c, image)))
    sections += [("sampling_speed", lambda: sampling_speed(args.dry_run)), ("ncp_scaling", lambda: ncp_scaling(args.dry_run, device))]
    for name, run in sections:
        elapsed = time.perf_counter() - start
        if elapsed > args.deadline:
            result["sections"][name] = {"skipped": f"deadline: {elapsed:.0f} s > {args.deadline:.0f} s"}
        else:
            log.info("section %s (%.0f s elapsed)", name, elapsed)
            try:
                result["sections"][name] = {"seconds": None, **run()}
            except Exception as exc:  # noqa: BLE001 -- a failed section is recorded, the others still run
                result["sections"][name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            result["sections"][name]["seconds"] = time.perf_counter() - start - elapsed
            if device.type == "cuda":
                torch.cuda.empty_cache()
        result["elapsed_seconds"] = time.perf_counter() - start
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
