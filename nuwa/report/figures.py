"""Figures: the sweep plots of Figs. 16-17 (with their data as CSV for `dvc plots show`), sample
sheets for the qualitative figures (Figs. 1-4, 11-15), the NCP generation-cost plot and Table 7c's
validation curves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nuwa.core.errors import UserError
from nuwa.core.io import atomic_path
from nuwa.plan import SAMPLE_FIGURES, SWEEP_FIGURES, TABLES, Plan, Row
from nuwa.report.tables import cell_result, convergence, read_history, read_json, write_csv


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def sweep_x(key: str, value: Any, axis: int | None) -> tuple[float, str]:
    """x position and tick label of one sweep value: patch side m -> M = m^2 tokens; an extent -> its varying axis."""
    if key.endswith(".patch"):
        return float(value) ** 2, f"M={int(value) ** 2}"
    if axis is not None:
        return float(value[axis]), "(" + ", ".join(map(str, value)) + ")"
    return float(value), str(value)


def sweep_rows(plan: Plan, figure: str) -> list[dict[str, Any]]:
    fig = SWEEP_FIGURES[figure]
    spec = plan.exp["sweeps"][fig.sweep]
    ci = float(plan.cfg.get("metrics", {}).get("ci", 0.95))
    values = spec["values"]
    axis = _varying_axis(values)
    rows = []
    for run, value in zip(plan.sweeps[fig.sweep], values):
        x, label = sweep_x(spec["key"], value, axis)
        row: dict[str, Any] = {"x": x, "setting": label, "run": run}
        for curve, cell in fig.curves.items():
            r = cell_result(plan, figure, Row(label, run), cell, ci)
            row.update({curve: r["value"], f"{curve} ci_low": r["ci_low"], f"{curve} ci_high": r["ci_high"],
                        f"{curve} n": r["n"]})
        row["backbone"] = r.get("backbone", "")
        rows.append(row)
    return rows


def _varying_axis(values: list[Any]) -> int | None:
    """For list values (extents), the first axis that changes across the sweep (the plot's x)."""
    if not values or not isinstance(values[0], (list, tuple)):
        return None
    return next((i for i in range(len(values[0])) if len({v[i] for v in values}) > 1), 0)


def write_sweep_figure(plan: Plan, figure: str, out_png: str | Path) -> None:
    """results/figures/{figure}.png and results/{figure}.csv (one row per sweep value)."""
    fig_spec = SWEEP_FIGURES[figure]
    rows = sweep_rows(plan, figure)
    write_csv(sweep_csv_path(out_png), rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = np.array([r["x"] for r in rows])
    for curve in fig_spec.curves:
        y = np.array([r[curve] for r in rows])
        err = np.array([[y[i] - r[f"{curve} ci_low"], r[f"{curve} ci_high"] - y[i]] for i, r in enumerate(rows)]).T
        ax.errorbar(xs, y, yerr=np.clip(err, 0, None), marker="o", capsize=3, label=curve)
    ax.set_xticks(xs, [r["setting"] for r in rows])
    ax.set_xlabel(fig_spec.x_label)
    ax.set_title(f"{fig_spec.title} ({plan.exp.get('scale', 'embedded')} scale)")
    ax.legend()
    save_figure(fig, out_png)


def sweep_csv_path(out_png: str | Path) -> Path:
    """results/figures/X.png -> results/X.csv (the plot data DVC renders)."""
    p = Path(out_png)
    return p.parent.parent / f"{p.stem}.csv"


# ------------------------------------------------------------------------------ sample sheets
def _records(folder: Path) -> list[dict]:
    from nuwa.core.sample_folders import read_index

    return read_index(folder)


def _frames(folder: Path, record: dict) -> list[Path]:
    """The image of a sample, or its video's frames in order."""
    path = folder / record["file"]
    if path.is_dir():
        return sorted(path.glob("*.png"))
    if path.suffix in (".gif", ".mp4"):
        return sorted((path.parent / path.stem).glob("*.png"))
    return [path]


def sample_sheet(entries: list[tuple[str, Path]], per_row: int, title: str):
    """One row per entry: up to ``per_row`` images (or one video's frames), captions underneath."""
    from PIL import Image

    plt = _pyplot()
    sheets = []
    for label, folder in entries:
        recs = _records(folder)
        if not recs:
            raise UserError(f"sample folder {folder} is empty; rerun `nuwa generate`")
        video = len(_frames(folder, recs[0])) > 1
        items = [(p, f"{i}") for i, p in enumerate(_frames(folder, recs[0]))] if video else \
            [(_frames(folder, r)[0], r.get("caption") or "") for r in recs[:per_row]]
        sheets.append((label, items, recs[0].get("caption") or "" if video else ""))
    cols = max(len(items) for _, items, _ in sheets)
    images = {(i, j): np.asarray(Image.open(p).convert("RGB")) for i, (_, items, _) in enumerate(sheets)
              for j, (p, _) in enumerate(items)}
    aspect = max(a.shape[1] / a.shape[0] for a in images.values())
    fig, axes = plt.subplots(len(sheets), cols, figsize=(min(2.2 * cols * aspect, 40), 2.6 * len(sheets)), squeeze=False)
    for i, (label, items, caption) in enumerate(sheets):
        for j in range(cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(items):
                ax.imshow(images[(i, j)])
                ax.set_title(_wrap(items[j][1]), fontsize=7)
        axes[i][0].text(-0.05, 0.5, _wrap(f"{label}\n{caption}", 24), transform=axes[i][0].transAxes,
                        ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _wrap(text: str, width: int = 32) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) if text else ""


def scroll_sheet(folder: Path, pieces: int, title: str):
    """A very long image cut into ``pieces`` consecutive strips, one per row (as Figs. 11-12)."""
    from PIL import Image

    plt = _pyplot()
    image = np.asarray(Image.open(_frames(folder, _records(folder)[0])[0]).convert("RGB"))
    strips = np.array_split(image, pieces, axis=1)
    fig, axes = plt.subplots(pieces, 1, figsize=(12, 12 * image.shape[0] * pieces / image.shape[1] + 1), squeeze=False)
    for ax, strip in zip(axes[:, 0], strips):
        ax.imshow(strip)
        ax.axis("off")
    fig.suptitle(f"{title} ({image.shape[1]}x{image.shape[0]} px)", fontsize=10)
    return fig


def write_sample_figure(plan: Plan, figure: str, out_png: str | Path) -> None:
    title, entries = SAMPLE_FIGURES[figure]
    folders = [(label, plan.samples(run, sset, plan.seeds[0])) for label, run, sset in entries]
    if figure == "figure_scroll":
        fig = scroll_sheet(folders[0][1], pieces=3, title=title)
    else:
        fig = sample_sheet(folders, int(plan.exp["n"]["figure"]), f"{title} ({plan.exp.get('scale', 'embedded')} scale)")
    save_figure(fig, out_png)


# ------------------------------------------------------------------------------ NCP cost
def ncp_rows(bench: dict) -> list[dict[str, Any]]:
    """`nuwa bench ncp-scaling --json` ({"ncp": [rows], "full": [rows]}) as one row list with a variant column."""
    rows = [{"variant": v, **r, "peak_cache_mb": r["peak_cache_bytes"] / 2**20}
            for v in ("ncp", "full") for r in bench.get(v, []) if "peak_cache_bytes" in r]
    if not rows or not any(r["variant"] == "ncp" for r in rows):
        raise UserError("NCP benchmark JSON has no 'ncp' rows with width/seconds_per_patch/peak_cache_bytes; "
                        "rerun `nuwa bench ncp-scaling --json OUT`")
    return rows


def write_ncp_figure(plan: Plan, out_png: str | Path) -> None:
    rows = ncp_rows(read_json(plan.workdir / "bench" / "ncp_scaling.json"))
    write_csv(sweep_csv_path(out_png), rows)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for variant in sorted({r["variant"] for r in rows}):
        sel = [r for r in rows if r["variant"] == variant]
        widths = [r["width"] for r in sel]
        axes[0].plot(widths, [r["seconds_per_patch"] for r in sel], marker="o", label=variant)
        axes[1].plot(widths, [r["peak_cache_mb"] for r in sel], marker="o", label=variant)
    axes[0].set(xscale="log", xlabel="image width (patches)", ylabel="seconds per patch", title="generation cost")
    axes[1].set(xscale="log", xlabel="image width (patches)", ylabel="peak NCP cache (MiB)", title="memory")
    axes[0].legend()
    save_figure(fig, out_png)


# ------------------------------------------------------------------------------ Table 7c curves
CONVERGENCE_TABLE = "table7c"


def write_convergence_figure(plan: Plan, out_png: str | Path) -> None:
    """Validation loss against epochs of Table 7c's runs (patch vs accumulated loss), with the common
    target their convergence epochs are read at; the data as results/figure_convergence.csv."""
    rows = TABLES[CONVERGENCE_TABLE].rows
    curves = {r.label: read_history(plan.history(r.run)) for r in rows}
    found = convergence({r.label: plan.history(r.run) for r in rows})
    write_csv(sweep_csv_path(out_png), [{"run": label, "epoch": e, "val_loss": v} for label, c in curves.items()
                                         for e, v in c])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, curve in curves.items():
        line, = ax.plot(*zip(*curve), marker=".", label=f"{label} (reaches target at epoch {found[label]['value']:.3g})")
        ax.axvline(found[label]["value"], color=line.get_color(), linestyle=":")
    ax.axhline(next(iter(found.values()))["target_val_loss"], color="grey", linestyle="--", label="target (higher final loss)")
    ax.set(xlabel="epoch", ylabel="validation loss", title=f"{TABLES[CONVERGENCE_TABLE].title} ({plan.exp.get('scale', 'embedded')} scale)")
    ax.legend(fontsize=7)
    save_figure(fig, out_png)


def write_figure(plan: Plan, figure: str, out_png: str | Path) -> None:
    if figure in SWEEP_FIGURES:
        write_sweep_figure(plan, figure, out_png)
    elif figure in SAMPLE_FIGURES:
        write_sample_figure(plan, figure, out_png)
    elif figure == "figure_ncp":
        write_ncp_figure(plan, out_png)
    elif figure == "figure_convergence":
        write_convergence_figure(plan, out_png)
    else:
        raise UserError(f"unknown figure {figure!r}; choose one of "
                        f"{', '.join([*SWEEP_FIGURES, *SAMPLE_FIGURES, 'figure_ncp', 'figure_convergence'])}")
