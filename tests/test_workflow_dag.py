"""The Snakemake workflow plans (embedded and paper scale) and lints clean; DVC reads its stages."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def job_counts(out: str) -> dict[str, int]:
    counts, inside = {}, False
    for line in out.splitlines():
        if line.startswith("job "):
            inside = True
            continue
        if inside and line.strip() and not line.startswith("-"):
            name, _, n = line.partition(" ")
            if not n.strip().isdigit():
                break
            counts[name] = int(n)
    return counts


def test_table2_plans_the_three_models_and_their_metrics():
    r = snakemake("-n", "-F", "results/table2.csv")  # -F: the whole DAG, whatever results/ already holds
    assert r.returncode == 0, r.stderr + r.stdout
    counts = job_counts(r.stdout)
    assert counts["train"] == 3          # NUWA-Infinity, Taming, MaskGIT
    assert counts["generate"] == 6       # x1 and x4 for each
    assert counts["metric"] == 12        # Block-FID, Block-FID(x4), IS, CLIP-SIM for each
    assert counts["table"] == 1 and "provenance" not in counts


def test_tokenizers_target_plans_the_tokenizer_part_long_poles_first():
    r = snakemake("-n", "-F", "tokenizers")
    assert r.returncode == 0, r.stderr + r.stdout
    counts = job_counts(r.stdout)
    assert (counts["render"], counts["vqgan"], counts["pg_vqgan"], counts["encode"], counts["tokenizer_report"]) \
        == (4, 3, 2, 8, 4)
    assert "train" not in counts and "generate" not in counts
    priority = {}
    for block in r.stdout.split("\nrule ")[1:]:
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines()[1:] if ": " in line)
        priority[(block.split(":")[0], fields.get("wildcards", ""))] = int(fields.get("priority", 0))
    # renders first, then the VQGAN that most token shards and PG-VQGANs wait on (lhqc: lhqc + lhqv)
    assert priority[("render", "world=rqf")] > priority[("vqgan", "world=lhqc")] > priority[("vqgan", "world=peppa")] \
        > priority[("vqgan", "world=rqf")] > priority[("encode", "world=rqf, split=test")] \
        > priority[("tokenizer_report", "world=rqf")]


@pytest.mark.slow
def test_everything_plans_on_the_embedded_default():
    r = snakemake("-n", "-F")
    assert r.returncode == 0, r.stderr + r.stdout
    counts = job_counts(r.stdout)
    assert counts["proxy_backbone"] == 3 and counts["sample_figure"] == 8 and counts["sweep_figure"] == 3
    assert counts["claims"] == 1 and counts["provenance"] == 1


@pytest.mark.slow
def test_everything_plans_at_paper_scale_with_reference_backbones():
    r = snakemake("-n", "-F", "all", "--configfile=config/paper.yaml")
    assert r.returncode == 0, r.stderr + r.stdout
    counts = job_counts(r.stdout)
    assert "proxy_backbone" not in counts  # real Inception / CLIP / I3D at paper scale
    assert counts["table"] == 8 and counts["table1"] == 1 and counts["provenance"] == 1
    assert "torch.distributed.run" not in r.stdout  # launcher is python unless profiles/gpu sets torchrun


@pytest.mark.slow
def test_gpu_profile_launches_training_under_torchrun():
    r = snakemake("-n", "-F", "-p", "--profile", "profiles/gpu", "results/table2.csv")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "torch.distributed.run --standalone --nproc_per_node=8 -m nuwa train" in r.stdout


@pytest.mark.slow
def test_bad_config_value_fails_before_any_job():
    r = snakemake("-n", "results/table2.csv", "--config", "seed=-1")
    assert r.returncode != 0
    assert "seed" in (r.stdout + r.stderr) and "Building DAG" not in r.stdout


def test_lint_is_clean():
    r = snakemake("--lint")
    assert r.returncode == 0 and "Congratulations" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]


def test_dvc_stages_call_snakemake_and_persist_outputs():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert {"tokenizer", "table1", "table2", "claims", "provenance"} <= set(stages)
    for name, stage in stages.items():
        assert stage["cmd"].startswith("snakemake --cores all "), name
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                (path, opts), = out.items()
                assert opts["persist"] is True, (name, path)
    bindir = str(Path(sys.executable).parent)  # the venv's dvc, also when the venv is not activated
    r = subprocess.run([f"{bindir}/dvc", "dag"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert r.returncode == 0 and "claims" in r.stdout, r.stderr
