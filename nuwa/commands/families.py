"""The model families by CLI name (`--model nuwa|taming|maskgit`): the one module that knows all three."""
from __future__ import annotations

import importlib

from nuwa.core.errors import UserError
from nuwa.core.family import Family

REGISTRY = {
    "nuwa": "nuwa.model.family",
    "taming": "baselines.taming",
    "maskgit": "baselines.maskgit",
}


def get(name: str) -> Family:
    if name not in REGISTRY:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).FAMILY
