"""The claims report: each quantitative claim of §4.4-4.5 with our effect, interval and verdict.

Effects are signed so that a positive value is the paper's direction ("A better than B" ->
how much better). Intervals come from metrics.stats.compare: the difference of the two results, with
bias-corrected values and a jackknife interval for FID-type metrics (paired over the shared real set
and prompts, valid between sets of different n) and paired bootstrap replicates for IS, CLIP-SIM and
speed. Verdict: held (interval above 0), not held (below 0), inconclusive (contains 0). Exact numbers
(epochs) compare directly.
A claim the embedded scale structurally cannot test (see STRUCTURAL: runs that never plateaued,
training images of a single patch) is "untestable here", with the reason in the ``why`` column,
whatever the numbers say.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from metrics.stats import compare, difference
from nuwa.core.errors import UserError
from nuwa.core.io import write_text
from nuwa.model.config import settings
from nuwa.plan import SWEEP_FIGURES, TABLES, Plan, Row, token_grid
from nuwa.report import paper
from nuwa.report.tables import PLATEAU_TOLERANCE, PLATEAU_WINDOW, cell_result, markdown, read_json, write_csv

LINEAR_TOLERANCE = 1.2  # issue 3: seconds per patch at the widest width within 1.2x of 2 patches wide
UNTESTABLE = "untestable here"
VERDICTS = ("held", "not held", "inconclusive", UNTESTABLE)


@dataclass(frozen=True)
class Claim:
    """``a`` beats ``b`` on ``column`` of ``table`` (row labels); ``minus``: compare the x4 gap instead."""
    table: str
    a: str
    b: str
    column: str
    minus: str = ""  # column subtracted from ``column`` in both rows (degradation from 1x to x4)


def _beats(table: str, pairs: list[tuple[str, str]], columns: list[str]) -> list[Claim]:
    return [Claim(table, a, b, c) for a, b in pairs for c in columns]


T2I = ["Block-FID", "Block-FID(x4)"]
CLAIMS: list[Claim] = [
    *_beats("table2", [("NUWA-Infinity", "Taming"), ("NUWA-Infinity", "MaskGIT")], [*T2I, "IS", "CLIP-SIM"]),
    Claim("table2", "NUWA-Infinity", "MaskGIT", "Block-FID(x4)", minus="Block-FID"),
    *_beats("table3", [("NUWA-Infinity (AR)", "NUWA-Infinity (P-NAR)"), ("NUWA-Infinity (P-NAR)", "NUWA-Infinity (NAR)")], ["FVD"]),
    *_beats("table4", [("NUWA-Infinity", "MaskGIT")], ["Right Extend", "Left Extend", "Down Extend", "Up Extend"]),
    *_beats("table4", [("NUWA-Infinity", "Taming")], ["Right Extend", "Down Extend"]),
    *_beats("table4", [("NUWA-Infinity", "NUWA-Infinity w/o text")], ["Down Extend", "Up Extend"]),
    *_beats("table5", [("Pre", "Post")], T2I),
    *_beats("table6", [("w/ caches", "w/o caches")], T2I),
    *_beats("table7a", [("NUWA-Infinity (AR)", "NUWA-Infinity (P-NAR)"), ("NUWA-Infinity (P-NAR)", "NUWA-Infinity (NAR)")],
            [*T2I, "CLIP-SIM"]),
    *_beats("table7a", [("NUWA-Infinity (NAR)", "NUWA-Infinity (P-NAR)"), ("NUWA-Infinity (P-NAR)", "NUWA-Infinity (AR)")],
            ["Inference Speed"]),
    *_beats("table7b", [("Large", "Base")], ["Block-FID"]),
    *_beats("table7c", [("Patch", "Accumulated")], ["Block-FID", "Convergence epoch"]),
]


def verdict_exact(advantage: float) -> str:
    return "held" if advantage > 0 else "not held" if advantage < 0 else "inconclusive"


def judge(a: dict, b: dict, higher_is_better: bool, ci: float) -> dict:
    """metrics.stats.compare of two measured results, or a direct comparison of exact numbers."""
    if not has_error(a) or not has_error(b):
        adv = (1 if higher_is_better else -1) * (a["value"] - b["value"])
        return {"verdict": verdict_exact(adv), "advantage": adv, "ci_low": adv, "ci_high": adv}
    return compare(a, b, higher_is_better=higher_is_better, ci=ci)


def has_error(result: dict) -> bool:
    """Does ``result`` carry its sampling error (jackknife values or bootstrap replicates)?"""
    return "jackknife" in result or bool(result.get("replicates"))


def not_plateaued(plan: Plan, runs: dict[str, str], results: dict[str, dict]) -> str:
    """Convergence speed means nothing unless both runs reached their plateau."""
    short = [label for label, r in results.items() if not r.get("plateaued", True)]
    if not short:
        return ""
    return (f"{' and '.join(short)} had not plateaued (validation loss still fell by >= {PLATEAU_TOLERANCE:.0%} "
            f"over the last {PLATEAU_WINDOW:.0%} of training); train both longer (their nuwa.train.epochs)")


def single_patch_images(plan: Plan, runs: dict[str, str], results: dict[str, dict]) -> str:
    """Wide generation reads context offsets that a run never saw if its training images are one patch wide."""
    for label, run in runs.items():
        r = plan.runs[run]
        cfg = r.effective(plan.cfg)
        patch, tokens = settings(cfg).model.patch, token_grid(cfg, r.world)[1]
        if tokens <= patch:
            return (f"at {label} a {tokens}x{tokens}-token training image is a single patch, so the context that "
                    "wider generation reads is never trained")
    return ""


# (table or figure, column or curve) -> why the embedded scale cannot test that claim ("" when it can)
STRUCTURAL: dict[tuple[str, str], Callable[[Plan, dict[str, str], dict[str, dict]], str]] = {
    ("table7c", "Convergence epoch"): not_plateaued,
    ("figure16", "Block-FID(x4)"): single_patch_images,
}


def why_untestable(plan: Plan, where: tuple[str, str], runs: dict[str, str], results: dict[str, dict]) -> str:
    check = STRUCTURAL.get(where)
    return check(plan, runs, results) if check else ""


def table_claim(plan: Plan, claim: Claim, ci: float, cache: dict) -> dict[str, Any]:
    t = TABLES[claim.table]
    rows = {r.label: r for r in t.rows}
    cell = t.columns[claim.column]

    def result(label: str, column: str) -> dict:
        key = (claim.table, label, column)
        if key not in cache:
            cache[key] = cell_result(plan, claim.table, rows[label], t.columns[column], ci)
        return cache[key]

    a, b = result(claim.a, claim.column), result(claim.b, claim.column)
    pa, pb = paper.TABLES[claim.table][claim.a][claim.column], paper.TABLES[claim.table][claim.b][claim.column]
    if claim.minus:
        a, b = difference(a, result(claim.a, claim.minus)), difference(b, result(claim.b, claim.minus))
        pa = pa - paper.TABLES[claim.table][claim.a][claim.minus]
        pb = pb - paper.TABLES[claim.table][claim.b][claim.minus]
        text = f"{claim.b} degrades more than {claim.a} from {claim.minus} to {claim.column}"
    else:
        better = "lower" if cell.lower_is_better else "higher"
        text = f"{claim.a} beats {claim.b} on {claim.column} ({better} is better)"
    j = judge(a, b, not cell.lower_is_better, ci)
    why = why_untestable(plan, (claim.table, claim.column), {claim.a: rows[claim.a].run, claim.b: rows[claim.b].run},
                         {claim.a: a, claim.b: b})
    return {"id": f"{claim.table}:{claim.a}>{claim.b}:{claim.column}" + (f"-{claim.minus}" if claim.minus else ""),
            "source": paper.SOURCES[claim.table], "claim": text, "ours_a": a["value"], "ours_b": b["value"],
            "paper_a": pa, "paper_b": pb, "effect": j["advantage"], "ci_low": j["ci_low"], "ci_high": j["ci_high"],
            **verdict(j["verdict"], why), "n": a.get("n", ""), "seeds": a.get("seeds", "")}


def verdict(measured: str, why: str) -> dict[str, str]:
    """The verdict columns: the measured one, unless the embedded scale cannot test the claim at all."""
    return {"verdict": UNTESTABLE if why else measured, "why": why}


def sweep_claim(plan: Plan, figure: str, curve: str, ci: float) -> dict[str, Any]:
    """Fig. 16/17 trend: the largest setting of the sweep beats the smallest."""
    fig = SWEEP_FIGURES[figure]
    runs, values = plan.sweeps[fig.sweep], plan.sweep_values(fig.sweep)
    cell = fig.curves[curve]
    small, large = (cell_result(plan, figure, Row(str(v), r), cell, ci) for r, v in ((runs[0], values[0]), (runs[-1], values[-1])))
    j = judge(large, small, not cell.lower_is_better, ci)
    labels = {f"{fig.sweep} value {values[-1]}": runs[-1], f"{fig.sweep} value {values[0]}": runs[0]}
    why = why_untestable(plan, (figure, curve), labels, dict(zip(labels, (large, small))))
    return {"id": f"{figure}:{curve}", "source": paper.SOURCES[figure],
            "claim": f"{curve} improves from {fig.sweep} value {values[0]} to {values[-1]} ({fig.title})",
            "ours_a": large["value"], "ours_b": small["value"], "paper_a": "", "paper_b": "",
            "effect": j["advantage"], "ci_low": j["ci_low"], "ci_high": j["ci_high"], **verdict(j["verdict"], why),
            "n": large.get("n", ""), "seeds": large.get("seeds", "")}


def linear_claim(bench: dict) -> dict[str, Any]:
    """§4.4.1: with NCP, generation cost grows linearly with size (constant seconds per patch)."""
    from nuwa.report.figures import ncp_rows

    rows = sorted((r for r in ncp_rows(bench) if r["variant"] == "ncp"), key=lambda r: r["width"])
    ref = next((r for r in rows if r["width"] >= 2), rows[0])
    ratio = rows[-1]["seconds_per_patch"] / ref["seconds_per_patch"]
    return {"id": "linear:seconds_per_patch", "source": paper.SOURCES["linear"],
            "claim": f"seconds per patch at {rows[-1]['width']} patches wide within {LINEAR_TOLERANCE}x of {ref['width']} wide",
            "ours_a": rows[-1]["seconds_per_patch"], "ours_b": ref["seconds_per_patch"], "paper_a": "", "paper_b": "",
            "effect": LINEAR_TOLERANCE - ratio, "ci_low": "", "ci_high": "",
            **verdict("held" if ratio <= LINEAR_TOLERANCE else "not held", ""), "n": len(rows), "seeds": 1}


def claims(plan: Plan) -> list[dict[str, Any]]:
    ci = float(plan.cfg.get("metrics", {}).get("ci", 0.95))
    cache: dict = {}
    out = [table_claim(plan, c, ci, cache) for c in CLAIMS]
    out += [sweep_claim(plan, f, curve, ci) for f, fig in SWEEP_FIGURES.items() for curve in fig.curves]
    out.append(linear_claim(read_json(plan.workdir / "bench" / "ncp_scaling.json")))
    return out


def write_claims(plan: Plan, out_csv: str | Path) -> None:
    rows = claims(plan)
    if not rows:
        raise UserError("no claims to report")
    out = Path(out_csv)
    write_csv(out, rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    header = ["Claims of the paper (§4.4-4.5) and whether they held here",
              f"scale: {plan.exp.get('scale', 'embedded')}; effect > 0 is the paper's direction; "
              f"interval: {float(plan.cfg.get('metrics', {}).get('ci', 0.95)):.0%} of the paired difference "
              "(jackknife, bias-corrected, for FID-type metrics; bootstrap for IS, CLIP-SIM, speed; docs/metrics.md)",
              ", ".join(f"{k}: {v}" for k, v in counts.items())]
    cols = ["claim", "source", "ours_a", "ours_b", "paper_a", "paper_b", "effect", "ci_low", "ci_high", "verdict"]
    body = [[r[c] for c in cols[:-1]] + [f"{r['verdict']} ({r['why']})" if r["why"] else r["verdict"]] for r in rows]
    write_text(out.with_suffix(".md"), markdown(header, cols, body))
