"""Atomic file output and small I/O helpers shared by every subcommand.

Every artifact is written to a temporary sibling and renamed into place, so an interrupted
run never leaves a half-written result that a later run (or Snakemake) would mistake for done.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from nuwa.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "" if is_dir else final.suffix
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{suffix}", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    if is_dir and final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def require_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """Return ``Path(path)`` or raise a one-line :class:`UserError` naming the missing file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p}" + (f" ({hint})" if hint else ""))
    return p


def torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    p = require_file(path, what)
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or truncated file
        raise UserError(f"{what} {p} is unreadable ({type(exc).__name__}: {exc}); delete it and rerun the step that writes it") from exc
