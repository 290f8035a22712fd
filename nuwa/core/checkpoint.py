"""Checkpoints that know what they hold, and the RNG state needed for exact resume."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from nuwa.core.errors import UserError
from nuwa.core.io import torch_load, torch_save

FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    import numpy as np  # here, not at the top: generation-only machines (nuwa/bench/gpu.sh) may lack numpy

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(path: str | Path, *, kind: str, config: dict, model: dict, **extra: Any) -> None:
    """Atomically save ``{kind, config, model, ...extra}``; ``kind`` names the model family."""
    torch_save({"format": FORMAT_VERSION, "kind": kind, "config": config, "model": model, **extra}, path)


def load(path: str | Path, kind: str | tuple[str, ...]) -> dict[str, Any]:
    """Load a checkpoint and check that it holds a model of ``kind`` (one line if not)."""
    kinds = (kind,) if isinstance(kind, str) else kind
    ckpt = torch_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model" not in ckpt:
        raise UserError(f"checkpoint {path} was not written by this suite (no 'kind'/'model' keys); pass a checkpoint made by `nuwa train` or `nuwa tokenizer train`")
    if ckpt["kind"] not in kinds:
        raise UserError(f"checkpoint {path} holds a '{ckpt['kind']}' model, expected {' or '.join(repr(k) for k in kinds)}; pass the right checkpoint")
    return ckpt
