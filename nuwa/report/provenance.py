"""results/provenance/run.json: what produced the results (code version, config, packages, device)."""
from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Mapping

from nuwa.core.config import REPO_ROOT, config_hash
from nuwa.core.io import write_json


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def packages() -> dict[str, str]:
    """Every installed distribution and its version (what `pip freeze` lists)."""
    return dict(sorted((d.metadata["Name"], d.version) for d in metadata.distributions() if d.metadata["Name"]))


def device() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": __import__("os").cpu_count()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def provenance(cfg: Mapping) -> dict:
    sha = git("rev-parse", "HEAD")
    return {"git_sha": sha or "unknown", "git_dirty": bool(git("status", "--porcelain")) if sha else None,
            "config_hash": config_hash(cfg), "config": dict(cfg), "python": sys.version.split()[0],
            "platform": platform.platform(), "device": device(), "packages": packages(),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_provenance(cfg: Mapping, out: str | Path) -> None:
    write_json(out, provenance(cfg))
