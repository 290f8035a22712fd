"""Tables 1-7: our numbers (with CIs, seeds, backbones) beside the paper's, as CSV + Markdown + JSON.

Our numbers come only from the files the workflow wrote (metric JSONs, sample timings, training
histories, checkpoints); the paper's only from :mod:`nuwa.report.paper`.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from metrics.io import read_metric
from nuwa.core import io as nuwa_io
from nuwa.core.config import apply_overrides
from nuwa.core.errors import UserError
from nuwa.core.io import require_file, write_json, write_text
from nuwa.plan import TABLES, Cell, Plan, Row
from nuwa.report import paper

# Table 7c: a run has plateaued when its validation loss fell by less than PLATEAU_TOLERANCE (relative)
# over the last PLATEAU_WINDOW of its training (in epochs); only then does "converges faster" mean anything.
PLATEAU_WINDOW = 0.25
PLATEAU_TOLERANCE = 0.01
DATASET_NAMES = {"rqf": "RQF", "lhqc": "LHQC", "lhqv": "LHQ-V", "peppa": "PeppaPig"}
TABLE1_TASKS = dict(zip(("uncond", "t2i", "animate", "t2v"), paper.TABLE1_TASKS))


def read_json(path: str | Path) -> dict:
    return nuwa_io.read_json(path, "result file", "rerun the workflow step that writes it")


def exact(value: float) -> dict:
    """A number without sampling error (a count, a depth, an epoch)."""
    return {"value": float(value), "ci_low": float(value), "ci_high": float(value), "n": 1, "seeds": 1,
            "replicates": []}


def combine(results: list[dict], ci: float) -> dict:
    from metrics.stats import over_seeds

    return results[0] if len(results) == 1 else over_seeds(results, ci)


def read_history(history: str | Path) -> list[tuple[float, float]]:
    """(epochs done, validation loss) per row of a `nuwa train --history` CSV."""
    p = require_file(history, "training history", "run `nuwa train ... --history CSV`")
    rows = [(float(r["epoch"]), float(r["val_loss"])) for r in csv.DictReader(p.read_text().splitlines())]
    rows = [r for r in rows if not math.isnan(r[1])]
    if not rows:
        raise UserError(f"training history {p} has no validation loss; train with a --val shard")
    return rows


def plateaued(curve: list[tuple[float, float]]) -> bool:
    """Did the validation loss improve by less than PLATEAU_TOLERANCE over the last PLATEAU_WINDOW of training?"""
    end, final = curve[-1]
    before = [v for e, v in curve if e <= end * (1 - PLATEAU_WINDOW)]  # the last evaluation before the window
    return bool(before) and (before[-1] - final) < PLATEAU_TOLERANCE * final


def convergence(histories: Mapping[str, str | Path]) -> dict[str, dict]:
    """Per run: epochs until its validation loss first reaches the target common to all runs, the
    highest of their final validation losses (so every run reaches it), and whether it plateaued."""
    curves = {name: read_history(h) for name, h in histories.items()}
    target = max(c[-1][1] for c in curves.values())
    return {name: {**exact(next(e for e, v in c if v <= target)), "target_val_loss": target,
                   "final_val_loss": c[-1][1], "plateaued": plateaued(c), "evaluations": len(c)}
            for name, c in curves.items()}


def parameter_count(checkpoint: str | Path) -> int:
    from nuwa.core.io import torch_load

    state = torch_load(checkpoint, "checkpoint")["model"]
    return int(sum(t.numel() for t in state.values()))


def speed(plan: Plan, run: str, reference: str, ci: float) -> dict:
    """Images per second of ``run`` relative to ``reference`` at the paper's patch size (bench/local_speed.json).

    Per repeat, the reference's CPU seconds per image over ours (repeat i of every decoder ran in the
    same round, so repeats pair); the mean ratio's interval is bootstrapped over repeats. CPU seconds
    of the benchmark's own process: jobs running beside it on the same cores disturb them less.
    """
    from metrics.stats import bootstrap

    bench = read_json(plan.local_speed())
    ours, ref = (local_seconds(plan, bench, r) for r in (run, reference))
    n = min(len(ours), len(ref))
    resamples = int(plan.cfg.get("metrics", {}).get("bootstrap", 100))
    result = bootstrap(lambda i: ref[:n][i].mean() / ours[:n][i].mean(), n, resamples=resamples,
                       seed=plan.seeds[0], ci=ci, desc="speed")
    return {"metric": "speed", **result, "seeds": 1, "preset": bench.get("preset"), "device": bench.get("device")}


def local_seconds(plan: Plan, bench: dict, run: str) -> np.ndarray:
    """CPU seconds per image of ``run``'s local decoder, x``experiments.wide``, batch 1, one per repeat."""
    local = plan.model_settings(plan.runs[run])["model"]["local"]
    entry = bench.get("results", {}).get(f"nuwa-{local}", {}).get(f"x{plan.exp['wide']}", {}).get("b1")
    if not entry:
        raise UserError(f"{plan.local_speed()} has no nuwa-{local} x{plan.exp['wide']} batch-1 entry; "
                        "delete it and rerun the workflow's local_speed rule")
    return np.asarray(entry["cpu_seconds_per_image"], dtype=np.float64)


def cell_result(plan: Plan, table: str, row: Row, cell: Cell, ci: float) -> dict:
    """Our number for one cell, as a metric-JSON-like dict (value, ci_low, ci_high, n, seeds, replicates, ...)."""
    if cell.metric == "params":
        return exact(parameter_count(plan.checkpoint(row.run)))
    if cell.metric in ("depth", "dim"):
        model = plan.model_settings(plan.runs[row.run])["model"]
        return exact(model["layers" if cell.metric == "depth" else "dim"])
    if cell.metric == "epoch":
        runs = {r.label: plan.history(r.run) for r in TABLES[table].rows}
        return convergence(runs)[row.label]
    if cell.metric == "speed":
        reference = next(r.run for r in TABLES[table].rows if r.label == cell.relative_to)
        return speed(plan, row.run, reference, ci)
    return combine([read_metric(p, cell.metric) for p in plan.needed(row.run, cell, row.suffix)], ci)


def results(plan: Plan, table: str) -> dict[str, dict[str, dict | None]]:
    """row label -> column -> our result (None where the method cannot do it)."""
    ci = float(plan.cfg.get("metrics", {}).get("ci", 0.95))
    out: dict[str, dict[str, dict | None]] = {}
    for row, col, cell in plan.table_cells(table):
        out.setdefault(row.label, {})[col] = None if cell is None else cell_result(plan, table, row, cell, ci)
    return out


def scale_note(cfg: Mapping) -> str:
    backbone = cfg.get("metrics", {}).get("backbone", "proxy")
    scale = cfg["experiments"].get("scale", "embedded")
    if backbone == "proxy":
        from nuwa.data.config import WORLDS, data_config

        data = data_config(cfg)
        real = [w for w in WORLDS if getattr(data, w).source == "folder"]
        where = f"this run's datasets ({', '.join(real)} from real folders)" if real else "the procedural worlds"
        return (f"scale: {scale}; proxy backbones trained by the workflow on {where} -- "
                "these numbers are not comparable with the paper's, only the orderings are")
    return f"scale: {scale}; reference backbones (Inception, CLIP ViT-B/32, I3D)"


def backbones(res: Mapping[str, Mapping[str, dict | None]]) -> list[str]:
    names = {f"{r['backbone']} (sha256 {str(r.get('backbone_sha256', ''))[:12]})"
             for cols in res.values() for r in cols.values() if r and "backbone" in r}
    return sorted(names)


def table_rows(plan: Plan, table: str) -> tuple[list[dict[str, Any]], list[str]]:
    """CSV rows (one per method) and the header lines (title, scale, seeds, CI level, backbones)."""
    res = results(plan, table)
    published = paper.TABLES[table]
    rows = []
    for label, cols in res.items():
        row: dict[str, Any] = {"method": label}
        for col, r in cols.items():
            row[col] = "" if r is None else r["value"]
            row[f"{col} ci_low"] = "" if r is None else r["ci_low"]
            row[f"{col} ci_high"] = "" if r is None else r["ci_high"]
            row[f"{col} n"] = "" if r is None else r["n"]
            row[f"{col} (paper)"] = "N/A" if published[label][col] is None else published[label][col]
        row["seeds"] = " ".join(map(str, plan.seeds))
        row["backbone"] = "; ".join(backbones({label: cols}))
        row["scale"] = plan.exp.get("scale", "embedded")
        rows.append(row)
    ci = float(plan.cfg.get("metrics", {}).get("ci", 0.95))
    header = [f"{table}: {TABLES[table].title} (paper {paper.SOURCES[table]})", scale_note(plan.cfg),
              f"sampling seeds: {', '.join(map(str, plan.seeds))}; training seed: {plan.cfg.get('seed', 0)}; "
              f"[low, high] = {ci:.0%} interval (FID-type: bias-corrected jackknife; IS, CLIP-SIM: bootstrap over "
              "samples; speed: bootstrap over benchmark repeats); n = samples per seed",
              f"backbones: {', '.join(backbones(res)) or 'none'}"]
    return rows, header


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def markdown(header: list[str], columns: list[str], rows: list[list[Any]]) -> str:
    lines = [f"**{header[0]}**", ""] + [f"_{h}_  " for h in header[1:]] + [""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table_markdown(plan: Plan, table: str, rows: list[dict[str, Any]], header: list[str]) -> str:
    cols = list(TABLES[table].columns)
    body = []
    for r in rows:
        cells = [r["method"]]
        for c in cols:
            ours = "N/A" if r[c] == "" else f"{fmt(r[c])} [{fmt(r[c + ' ci_low'])}, {fmt(r[c + ' ci_high'])}]"
            cells += [ours, r[f"{c} (paper)"]]
        body.append(cells)
    columns = ["Method"] + [x for c in cols for x in (f"{c} (ours)", f"{c} (paper)")]
    return markdown(header, columns, body)


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def write_table(plan: Plan, table: str, out_csv: str | Path) -> None:
    """results/{table}.csv, .md beside it, and .json (DVC metrics: ours per method and column)."""
    rows, header = table_rows(plan, table)
    out = Path(out_csv)
    write_csv(out, rows)
    write_text(out.with_suffix(".md"), table_markdown(plan, table, rows, header))
    write_json(out.with_suffix(".json"), {r["method"]: {c: r[c] for c in TABLES[table].columns if r[c] != ""}
                                          for r in rows})


# ---------------------------------------------------------------------------------------- Table 1
def _lr(value: float) -> str:
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _count(value: int) -> str:
    return f"{value // 1000}K" if value >= 1000 and value % 1000 == 0 else str(value)


def split_sizes(wc: Any, world: str) -> tuple[int, int]:
    """Train/test sample counts of a procedural world (real folders state theirs in experiments.tasks.*.scale)."""
    if world == "rqf":
        from nuwa.data.worlds.rqf import crop_starts

        cut = wc.width - wc.test_width
        return len(crop_starts(0, cut, wc.crop, wc.stride)), len(crop_starts(cut, wc.width, wc.crop, wc.stride))
    return wc.n_train, wc.n_test


def table1_column(cfg: Mapping, task: str) -> dict[str, str]:
    """Table 1's rows for one task column, read from a full config (the task's overrides applied)."""
    from nuwa.core.text import CONTEXT_LENGTH
    from nuwa.data.config import world_config
    from nuwa.model.config import settings
    from nuwa.tokenizer.config import vqgan_config

    spec = cfg["experiments"]["tasks"][task]
    full = apply_overrides(dict(cfg), list(spec.get("set", [])))
    s, vq, world = settings(full), vqgan_config(full), spec["world"]
    wc = world_config(full, world)
    video = task in ("animate", "t2v")
    width = wc.crop if world == "rqf" else wc.width
    factor = 2 ** (len(vq.model.ddconfig.ch_mult) - 1)
    frames = wc.frames if video else 1
    side = factor * s.model.patch
    scale = spec.get("scale", {})
    counts = split_sizes(wc, world)
    text = s.model.text is not None
    return {
        "Backbone": "PG-VQGAN" if video else "VQGAN",
        "Codebook": str(vq.model.n_embed),
        "Dimension": str(vq.model.embed_dim),
        "Compression Ratio": str(factor),
        "Layer Number L": str(s.model.layers),
        "Hidden Dimension d": str(s.model.dim),
        "Head Number": str(s.model.heads),
        "Self-attention": "yes",
        "Cross-attention": "yes" if text else "no",
        "Patch Number N": str((width // side) * (wc.height // side) * frames),
        "Patch Tokens M": str(s.model.patch ** 2),
        "Context Extent": "(" + ", ".join(map(str, s.model.extent)) + ")",
        "Name": DATASET_NAMES[world],
        "Train Scale": str(scale.get("train", _count(counts[0]))),
        "Test Scale": str(scale.get("test", _count(counts[1]))),
        "Epoch": str(s.train.epochs),
        "Visual Size W x H": f"{width}x{wc.height}",
        "Frame Length F": str(frames) if video else "N/A",
        "Text Length": str(CONTEXT_LENGTH) if text else "N/A",
        "Batch Size": str(s.train.batch_size),
        "Learning Rate": _lr(s.train.lr),
        "Warmup Ratio": f"{s.train.warmup_ratio:.0%}",
    }


def table1(paper_cfg: Mapping, ours: Mapping) -> list[dict[str, str]]:
    """Rows: Table 1's settings; columns per task: the paper, config/paper.yaml, the config in use."""
    cols = {t: (table1_column(paper_cfg, t), table1_column(ours, t)) for t in TABLE1_TASKS}
    rows = []
    for setting in paper.TABLE1:
        row = {"setting": setting}
        for task, name in TABLE1_TASKS.items():
            row[f"{name} (paper)"] = paper.TABLE1[setting][list(TABLE1_TASKS).index(task)]
            row[f"{name} (paper.yaml)"] = cols[task][0][setting]
            row[f"{name} (this config)"] = cols[task][1][setting]
        rows.append(row)
    return rows


def write_table1(paper_cfg: Mapping, ours: Mapping, out_csv: str | Path) -> None:
    rows = table1(paper_cfg, ours)
    out = Path(out_csv)
    write_csv(out, rows)
    header = ["table1: Implementation details of model training for different tasks (paper §4.2, Table 1)",
              "(paper) as printed; (paper.yaml) read from config/paper.yaml; (this config) read from the config in use "
              f"(scale: {ours['experiments'].get('scale', 'embedded')})"]
    write_text(out.with_suffix(".md"), markdown(header, list(rows[0]), [list(r.values()) for r in rows]))
    mismatch = [r["setting"] for r in rows for n in paper.TABLE1_TASKS if r[f"{n} (paper)"] != r[f"{n} (paper.yaml)"]]
    write_json(out.with_suffix(".json"), {"paper_yaml_matches_paper": not mismatch, "mismatched_settings": sorted(set(mismatch))})
