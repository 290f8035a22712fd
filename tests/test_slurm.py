"""profiles/slurm on a real SLURM cluster (bench/slurm/run.sh): results/table2.csv through sbatch equals a local run's.

Both tests are slow (deselected by default) and skip without the executor plugin; the end-to-end one also
skips unless a cluster answers (`sinfo` on PATH and a node idle or mixed): start one with
`sudo bench/slurm/run.sh cluster`. No default test depends on SLURM.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "slurm" / "run.sh"

pytestmark = pytest.mark.slow


def plugin_installed() -> bool:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return False
    return True


def cluster_state() -> str:
    if shutil.which("sinfo") is None:
        return "no sinfo on PATH"
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    states = r.stdout.split()
    if r.returncode != 0 or not {"idle", "mixed"} & set(states):
        return f"no idle node (sinfo: {(r.stdout + r.stderr).strip() or 'nothing'})"
    return ""


needs_plugin = pytest.mark.skipif(not plugin_installed(), reason="snakemake-executor-plugin-slurm not installed "
                                                                 "(pip install -e '.[slurm]')")


@needs_plugin
def test_slurm_profile_keeps_its_resources_and_launches_torchrun(tmp_path):
    """As --workflow-profile the profile's default-resources hold (with --profile, profiles/default's won)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                        "--workflow-profile", "profiles/slurm", "--configfile=config/ci.yaml", "-n", "-p",
                        "results/table2.csv"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "slurm_partition=gpu" in r.stdout and "mem_mb=256000" in r.stdout and "gpu=8" in r.stdout
    assert "torch.distributed.run --standalone --nproc_per_node=8 -m nuwa train" in r.stdout


@needs_plugin
@pytest.mark.skipif(bool(cluster_state()), reason=f"no SLURM cluster: {cluster_state()}")
@pytest.mark.timeout(7200)
def test_table2_through_sbatch_equals_a_local_run(tmp_path):
    env = {**os.environ, "BENCH": str(tmp_path), "PYTHON": sys.executable}
    for step in ("local", "slurm", "compare"):
        r = subprocess.run(["bash", str(SCRIPT), step], cwd=ROOT, capture_output=True, text=True, env=env,
                           timeout=3600)
        assert r.returncode == 0, (step, (r.stdout + r.stderr)[-3000:], (tmp_path / f"{step}.log").exists()
                                   and (tmp_path / f"{step}.log").read_text()[-3000:])
    assert "identical" in r.stdout
