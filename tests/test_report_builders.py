"""Table, figure and claims builders on small metric files written by the test (fixtures, never results/)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nuwa.core.config import REPO_ROOT, load_config
from nuwa.plan import TABLES, Plan
from nuwa.report import paper
from nuwa.report.claims import Claim, judge, table_claim
from nuwa.report.figures import write_figure
from nuwa.report.tables import convergence, table1, write_table

CONFIG = REPO_ROOT / "config" / "config.yaml"
B = 50  # bootstrap replicates in the fixtures


@pytest.fixture()
def plan(tmp_path) -> Plan:
    return Plan(load_config([CONFIG], [f"workdir={tmp_path / 'work'}", f"metrics.bootstrap={B}"]))


def put_metric(plan: Plan, run: str, sset: str, metric: str, value: float, spread: float = 0.1, seed: int = 0) -> None:
    reps = value + spread * np.random.default_rng(hash((run, sset, metric)) % 2**32).standard_normal(B)
    result = {"metric": metric, "value": value, "ci_low": float(np.quantile(reps, 0.025)),
              "ci_high": float(np.quantile(reps, 0.975)), "ci": 0.95, "n": 64, "seeds": 1, "bootstrap": B,
              "bootstrap_seed": seed, "replicates": reps.tolist(), "backbone": "proxy-image", "backbone_sha256": "ab" * 32}
    path = plan.metric(run, sset, metric, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def fill_table(plan: Plan, table: str, values: dict[str, float]) -> None:
    """Every metric file of ``table``; the value of a row is looked up by its run."""
    for row, _, cell in plan.table_cells(table):
        if cell is not None:
            put_metric(plan, row.run, cell.sample_set + row.suffix, cell.metric, values[row.run])


def test_table2_has_ours_with_intervals_beside_the_papers(plan, tmp_path):
    fill_table(plan, "table2", {"taming": 40.0, "maskgit": 30.0, "main": 10.0})
    out = tmp_path / "results" / "table2.csv"
    write_table(plan, "table2", out)
    rows = list(csv.DictReader(out.open()))
    assert [r["method"] for r in rows] == ["Taming", "MaskGIT", "NUWA-Infinity"]
    for col in TABLES["table2"].columns:
        assert {col, f"{col} ci_low", f"{col} ci_high", f"{col} n", f"{col} (paper)"} <= set(rows[0])
    nuwa = rows[2]
    assert float(nuwa["Block-FID"]) == 10.0 and float(nuwa["Block-FID ci_low"]) < 10.0 < float(nuwa["Block-FID ci_high"])
    assert float(nuwa["Block-FID (paper)"]) == paper.TABLES["table2"]["NUWA-Infinity"]["Block-FID"]
    assert nuwa["seeds"] == "0" and "proxy-image" in nuwa["backbone"] and nuwa["scale"] == "embedded"
    md = out.with_suffix(".md").read_text()
    assert "proxy backbones" in md and "sampling seeds: 0" in md and "| NUWA-Infinity | 10 [" in md
    assert json.loads(out.with_suffix(".json").read_text())["Taming"]["IS"] == 40.0


def test_table4_keeps_the_papers_na(plan, tmp_path):
    fill_table(plan, "table4", {"taming": 20.0, "maskgit": 15.0, "main": 6.0})
    out = tmp_path / "table4.csv"
    write_table(plan, "table4", out)
    taming = next(csv.DictReader(out.open()))
    assert taming["Left Extend"] == "" and taming["Left Extend (paper)"] == "N/A" and float(taming["Right Extend"]) == 20.0


def test_table1_from_paper_yaml_equals_the_papers_table1():
    paper_cfg = load_config([CONFIG, REPO_ROOT / "config" / "paper.yaml"])
    rows = table1(paper_cfg, load_config([CONFIG]))
    assert [r["setting"] for r in rows] == list(paper.TABLE1)
    for r in rows:
        for name in paper.TABLE1_TASKS:
            assert r[f"{name} (paper.yaml)"] == r[f"{name} (paper)"], (r["setting"], name)
    ours = {r["setting"]: r["T2I & IO (this config)"] for r in rows}
    assert ours["Visual Size W x H"] == "64x64" and ours["Compression Ratio"] == "8"


@pytest.mark.parametrize("pre, post, verdict", [(10.0, 12.0, "held"), (12.0, 10.0, "not held"), (10.0, 10.02, "inconclusive")])
def test_claim_verdict_follows_the_paired_interval(plan, pre, post, verdict):
    put_metric(plan, "base", "t2i", "block-fid", pre)
    put_metric(plan, "post", "t2i", "block-fid", post)
    c = table_claim(plan, Claim("table5", "Pre", "Post", "Block-FID"), 0.95, {})
    assert c["verdict"] == verdict
    assert c["effect"] == pytest.approx(post - pre)  # lower is better: positive = Pre beats Post
    assert c["paper_a"] == 10.05 and c["paper_b"] == 10.47 and c["ci_low"] <= c["effect"] <= c["ci_high"]


def test_exact_numbers_compare_directly():
    assert judge({"value": 50}, {"value": 70}, False, 0.95)["verdict"] == "held"
    assert judge({"value": 50}, {"value": 50}, False, 0.95)["verdict"] == "inconclusive"


def write_history(path, curve: list[tuple[float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{e},{i * 10},{i * 80},5,{v},1" for i, (e, v) in enumerate(curve, 1)]
    path.write_text("epoch,step,examples,train_loss,val_loss,seconds\n" + "\n".join(rows) + "\n")


def test_convergence_is_the_epoch_each_run_first_reaches_the_higher_final_loss(tmp_path):
    fast, slow = tmp_path / "fast.csv", tmp_path / "slow.csv"
    write_history(fast, [(0.5, 4.0), (1, 3.2), (1.5, 3.05), (2, 3.0), (2.5, 2.99), (3, 2.99)])
    write_history(slow, [(0.5, 4.5), (1, 4.0), (1.5, 3.5), (2, 3.3), (2.5, 3.2), (3, 3.19)])
    found = convergence({"fast": fast, "slow": slow})
    assert found["fast"]["target_val_loss"] == 3.19 and found["fast"]["value"] == 1.5 and found["slow"]["value"] == 3
    assert found["fast"]["plateaued"] and not found["slow"]["plateaued"]  # 3.3 -> 3.19 in the last quarter: 3 %


def test_a_convergence_claim_without_a_plateau_is_untestable_not_a_verdict(plan):
    write_history(plan.history("loss_patch"), [(1, 3.0), (2, 2.5), (3, 2.0), (4, 1.5)])
    write_history(plan.history("loss_accumulated"), [(1, 3.5), (2, 3.2), (3, 3.1), (4, 3.1)])
    c = table_claim(plan, Claim("table7c", "Patch", "Accumulated", "Convergence epoch"), 0.95, {})
    assert c["verdict"] == "untestable here" and "Patch had not plateaued" in c["why"]
    write_history(plan.history("loss_patch"), [(1, 3.0), (2, 2.5), (3, 2.41), (4, 2.4)])
    c = table_claim(plan, Claim("table7c", "Patch", "Accumulated", "Convergence epoch"), 0.95, {})
    assert c["verdict"] == "held" and c["why"] == "" and c["ours_a"] == 1 and c["ours_b"] == 3


def test_x4_patch_size_claim_with_single_patch_training_images_is_untestable(plan):
    from nuwa.report.claims import sweep_claim

    for i, run in enumerate(plan.sweeps["figure16"]):
        put_metric(plan, run, "t2i", "block-fid", 30.0 - 5 * i)
        put_metric(plan, run, "t2i_wide", "block-fid", 40.0 - 5 * i)
    assert plan.sweep_values("figure16")[-1] == 8  # an 8x8-token (64 px) training image is one patch
    wide = sweep_claim(plan, "figure16", "Block-FID(x4)", 0.95)
    assert wide["verdict"] == "untestable here" and "single patch" in wide["why"]
    assert sweep_claim(plan, "figure16", "FID", 0.95)["verdict"] == "held"


def test_convergence_figure_draws_both_curves(plan, tmp_path):
    write_history(plan.history("loss_patch"), [(1, 3.0), (2, 2.5), (3, 2.41), (4, 2.4)])
    write_history(plan.history("loss_accumulated"), [(1, 3.5), (2, 3.2), (3, 3.1), (4, 3.1)])
    out = tmp_path / "results" / "figures" / "figure_convergence.png"
    write_figure(plan, "figure_convergence", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((tmp_path / "results" / "figure_convergence.csv").open()))
    assert [r["run"] for r in rows] == ["Patch"] * 4 + ["Accumulated"] * 4 and float(rows[-1]["val_loss"]) == 3.1


def test_sweep_figure_writes_png_and_plot_data(plan, tmp_path):
    values = {run: 30.0 - 5 * i for i, run in enumerate(plan.sweeps["figure16"])}
    for run, v in values.items():
        put_metric(plan, run, "t2i", "block-fid", v)
        put_metric(plan, run, "t2i_wide", "block-fid", v + 5)
    out = tmp_path / "results" / "figures" / "figure16.png"
    write_figure(plan, "figure16", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((tmp_path / "results" / "figure16.csv").open()))
    patches = plan.sweep_values("figure16")
    assert [float(r["x"]) for r in rows] == [p * p for p in patches]  # x = M tokens per patch
    assert [float(r["FID"]) for r in rows] == list(values.values())
    assert {"Block-FID(x4)", "Block-FID(x4) ci_low", "run", "setting"} <= set(rows[0])


def test_ncp_figure_and_linear_claim_from_the_benchmark_json(plan, tmp_path):
    from nuwa.core.io import write_json
    from nuwa.report.claims import linear_claim

    def rows(growth: float) -> list[dict]:
        return [{"width": w, "patches": 2 * w, "seconds_per_patch": 0.01 * (1 + growth * w),
                 "peak_cached_patches": 6, "peak_cache_bytes": 4096 * min(w, 3)} for w in (1, 2, 4, 8, 16, 32)]

    bench = {"rows": 2, "ncp": rows(0.0), "full": rows(0.5)}
    write_json(plan.workdir / "bench" / "ncp_scaling.json", bench)
    out = tmp_path / "results" / "figures" / "figure_ncp.png"
    write_figure(plan, "figure_ncp", out)
    assert out.is_file() and len(list(csv.DictReader((tmp_path / "results" / "figure_ncp.csv").open()))) == 12
    assert linear_claim(bench)["verdict"] == "held"
    assert linear_claim({"ncp": rows(0.5)})["verdict"] == "not held"


def put_local_speed(plan: Plan, cpu_seconds: dict[str, list[float]]) -> None:
    """A bench/local_speed.json as `nuwa bench sampling-speed --preset paper-geometry` writes it (the fields read)."""
    wide = f"x{plan.exp['wide']}"
    results = {name: {wide: {"b1": {"cpu_seconds_per_image": secs, "seconds_per_image": secs}}} for name, secs in cpu_seconds.items()}
    plan.local_speed().parent.mkdir(parents=True, exist_ok=True)
    plan.local_speed().write_text(json.dumps({"benchmark": "sampling-speed", "preset": "paper-geometry", "device": "cpu",
                                              "results": results}))


def test_table7a_speed_is_the_paper_geometry_benchmark_relative_to_ar(plan):
    from nuwa.report.tables import cell_result

    put_local_speed(plan, {"nuwa-ar": [2.0, 2.2, 1.9, 2.1, 2.0], "nuwa-nar": [0.2, 0.25, 0.2, 0.21, 0.2],
                           "nuwa-pnar": [1.0, 1.1, 0.9, 1.0, 1.0]})
    t = TABLES["table7a"]
    rows, cell = {r.label: r for r in t.rows}, t.columns["Inference Speed"]
    assert plan.needed("nar", cell) == [plan.local_speed()]
    res = {label: cell_result(plan, "table7a", rows[label], cell, 0.95) for label in rows}
    assert res["NUWA-Infinity (AR)"]["value"] == pytest.approx(1.0)
    assert res["NUWA-Infinity (NAR)"]["value"] == pytest.approx(10.2 / 1.06)  # mean AR seconds / mean NAR seconds
    assert res["NUWA-Infinity (P-NAR)"]["value"] == pytest.approx(2.04)
    for r in res.values():
        assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["n"] == 5
    c = table_claim(plan, Claim("table7a", "NUWA-Infinity (NAR)", "NUWA-Infinity (P-NAR)", "Inference Speed"), 0.95, {})
    assert c["verdict"] == "held" and c["effect"] > 0


def test_table7a_speed_without_the_decoders_entry_names_the_file_and_the_rule(plan):
    from nuwa.core.errors import UserError
    from nuwa.report.tables import cell_result

    put_local_speed(plan, {"nuwa-ar": [2.0, 2.1]})
    row = next(r for r in TABLES["table7a"].rows if r.run == "nar")
    with pytest.raises(UserError, match="no nuwa-nar x.*local_speed rule"):
        cell_result(plan, "table7a", row, TABLES["table7a"].columns["Inference Speed"], 0.95)
