"""`nuwa bench sampling-speed` / `ncp-scaling` write the documented JSON; the GPU script's dry run (slow)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_model import tiny

from nuwa.bench.memory import isolated
from nuwa.bench.ncp_scaling import measure, ncp_scaling
from nuwa.commands.cli import main
from nuwa.core.errors import UserError

REPO = Path(__file__).resolve().parents[1]
TINY = ["--set", "nuwa.model.layers=1", "--set", "nuwa.model.dim=16", "--set", "nuwa.model.heads=2",
        "--set", "nuwa.model.patch=2", "--set", "baselines.taming.model.window=[2, 2]",
        "--set", "baselines.maskgit.model.window=[2, 2]", "--set", "nuwa.sample.steps=2"]


def test_sampling_speed_paper_geometry_json_layout(tmp_path):
    out, md = tmp_path / "speed.json", tmp_path / "speed.md"
    assert main(["bench", "sampling-speed", "--preset", "paper-geometry", *TINY, "--widths", "1", "2",
                 "--batches", "1", "2", "--repeats", "2", "--json", str(out), "--markdown", str(md)]) == 0
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"taming", "maskgit", "nuwa-ar", "nuwa-nar", "nuwa-pnar"}
    assert {m: result["models"][m]["decoder"] for m in ("nuwa-ar", "nuwa-nar", "nuwa-pnar")} == \
        {"nuwa-ar": "ar", "nuwa-nar": "nar", "nuwa-pnar": "pnar"}
    entry = result["results"]["nuwa-pnar"]["x2"]["b2"]
    assert entry["grid"] == [1, 2, 4] and entry["batch"] == 2 and entry["tokens_per_image"] == 8
    assert len(entry["seconds_per_image"]) == entry["repeats"] == 2
    assert entry["mean_seconds_per_image"] == pytest.approx(sum(entry["seconds_per_image"]) / 2)
    assert result["results"]["taming"]["x1"]["b1"]["method"] == "KV cache"
    assert result["results"]["taming"]["x2"]["b1"]["method"] == "sliding window"
    for key in ("taming_over_nuwa-ar_x2_b1", "nuwa-ar_over_nuwa-nar_x1_b2", "nuwa-ar_images_per_second_b2_over_b1_x2",
                "nuwa-ar_ms_per_token_x2_over_taming_kv_x1_b1"):
        assert result["ratios"][key] > 0
    assert result["models"]["nuwa-ar"]["config"]["patch"] == 2 and result["models"]["taming"]["config"]["text"] is None
    assert "| nuwa-nar | NCP (2, 2, 0), NAR, 1 step | x1 | 1 |" in md.read_text()


def test_an_isolated_ncp_row_reports_the_peak_rss_of_its_own_process():
    row = isolated(measure, dict(vars(tiny(text=None, extent=(1, 1, 0)))), 3, 1, 0, "cpu")
    assert row["peak_rss_bytes"] >= row["rss_before_bytes"] > 50 * 2**20  # a torch process, counted whole
    assert row["rss_growth_bytes"] >= 0 and row["peak_cached_patches"] == 2 and row["patches"] == 3
    assert row["pool_bytes"] == 2 * 5 * 2 * 2 * 32 * 4  # slots x (M+1) x (k, v) x layers x dim x fp32


def test_ncp_scaling_generates_a_batch_of_canvases_per_row():
    cfg = tiny(text=None, extent=(1, 1, 0))
    one = ncp_scaling(cfg, (1, 3), rows=1, isolate=False)
    four = ncp_scaling(cfg, (1, 3), rows=1, isolate=False, batch=4)
    assert four["batch"] == 4 and [r["patches"] for r in four["ncp"]] == [1, 3]
    assert four["ncp"][1]["pool_bytes"] == 4 * one["ncp"][1]["pool_bytes"]  # one NCP pool row per canvas
    with pytest.raises(UserError, match="--batch 0"):
        ncp_scaling(cfg, (1, 3), rows=1, isolate=False, batch=0)


def torch_only_site(folder: Path) -> Path:
    """A site-packages folder with torch and what torch itself needs, nothing else of this environment."""
    import importlib.metadata as md

    folder.mkdir()
    todo, seen = ["torch"], set()
    while todo:
        name = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        todo += [r.split(";")[0].split(" ")[0].split(">")[0].split("=")[0].split("<")[0].split("[")[0]
                 for r in dist.requires or [] if "extra ==" not in r]
        for top in {f.parts[0] for f in dist.files or [] if not f.parts[0].endswith((".dist-info", ".pth")) and f.parts[0] != ".."}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


@pytest.mark.slow
def test_gpu_script_dry_run_with_only_torch_and_the_vendored_packages(tmp_path):
    """The GPU script on a machine that has python and torch only (``python -S``: no site-packages)."""
    vendor, site = tmp_path / "vendor", torch_only_site(tmp_path / "site")
    subprocess.run(["bash", str(REPO / "nuwa/bench/vendor.sh"), str(vendor)], check=True,
                   env={**os.environ, "PYTHON": sys.executable})
    assert not (site / "numpy").exists() and not (site / "yaml").exists()
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, "-S", "-m", "nuwa.bench.gpu", "--dry-run", "--json", str(out)], check=True,
                   cwd=REPO, timeout=600, env={"PATH": os.environ["PATH"], "OMP_NUM_THREADS": "1", "HOME": str(tmp_path),
                                               "PYTHONPATH": os.pathsep.join(map(str, (REPO, site, vendor)))})
    result = json.loads(out.read_text())
    sections = result["sections"]
    assert result["dry_run"] and set(sections) == {"train", "decode_b1_eager", "decode_b4_eager", "sampling_speed", "ncp_scaling"}
    assert not [name for name, s in sections.items() if "error" in s], {n: s.get("error") for n, s in sections.items()}
    assert sections["train"]["tokens_per_second"] > 0 and sections["decode_b4_eager"]["tokens_per_second"] > 0
    assert "nuwa-pnar" in sections["sampling_speed"]["results"] and sections["ncp_scaling"]["ncp"]


@pytest.mark.slow
def test_gpu_shell_script_dry_run(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run(["bash", str(REPO / "nuwa/bench/gpu.sh"), "--dry-run", str(out)], check=True, timeout=600,
                   env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    assert json.loads(out.read_text())["sections"]["decode_b1_eager"]["tokens_per_second"] > 0
    assert torch.cuda.is_available() or json.loads(out.read_text())["environment"]["device"] == "cpu"
