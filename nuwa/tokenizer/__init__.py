"""Tokenizers: VQGAN and PG-VQGAN (paper §3.3), our checkpoints and public taming checkpoints.

``load(path)`` returns a tokenizer with ``encode_to_indices``, ``decode_indices``, ``factor`` and
``n_embed`` (see docs/contracts.md); ``load_taming(model_yaml, ckpt)`` loads a taming-transformers
VQModel (``model.yaml`` + ``last.ckpt``) unchanged.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import yaml

from nuwa.core import checkpoint as ckpt_io
from nuwa.core.config import build
from nuwa.core.errors import UserError
from nuwa.core.io import require_file, torch_load
from nuwa.tokenizer.config import DDConfig, VQGANArch
from nuwa.tokenizer.pg_vqgan import PGVQGAN
from nuwa.tokenizer.vqgan import VQGAN

log = logging.getLogger(__name__)
KINDS = {"vqgan": VQGAN, "pg_vqgan": PGVQGAN}


def arch_dict(arch: VQGANArch) -> dict:
    return dataclasses.asdict(arch)


def load(path: str | Path) -> VQGAN:
    """Load a ``nuwa tokenizer train`` / ``import-taming`` checkpoint in eval mode."""
    ckpt = ckpt_io.load(path, tuple(KINDS))
    arch = build(VQGANArch, ckpt["config"], f"{path}:config")
    model = KINDS[ckpt["kind"]](arch)
    model.load_state_dict(ckpt["model"])
    return model.eval()


def load_taming(model_yaml: str | Path, ckpt: str | Path) -> VQGAN:
    """A taming VQModel from its ``model.yaml`` and ``last.ckpt`` (``loss.*`` keys are ignored)."""
    params = taming_params(model_yaml)
    dd_fields = {f.name for f in dataclasses.fields(DDConfig)}
    ignored = sorted(set(params["ddconfig"]) - dd_fields)
    if ignored:
        log.info("ignoring ddconfig keys taming ignores too: %s", ", ".join(ignored))
    dd = build(DDConfig, {k: v for k, v in params["ddconfig"].items() if k in dd_fields}, f"{model_yaml}:ddconfig")
    arch = VQGANArch(ddconfig=dd, n_embed=int(params["n_embed"]), embed_dim=int(params["embed_dim"]))
    model = VQGAN(arch)
    raw = torch_load(ckpt, "taming checkpoint")
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"{ckpt} holds no state_dict; pass taming's last.ckpt")
    state = {k: v for k, v in state.items() if not k.startswith("loss.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split("\n\t")[1:2]).strip()[:200]
        raise UserError(f"{ckpt} does not match {model_yaml} ({detail}); pass the model.yaml that belongs to this checkpoint") from exc
    return model.eval()


def taming_params(model_yaml: str | Path) -> dict:
    path = require_file(model_yaml, "taming model.yaml")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    params = (cfg.get("model") or {}).get("params") if isinstance(cfg, dict) else None
    if not isinstance(params, dict) or not all(k in params for k in ("ddconfig", "n_embed", "embed_dim")):
        raise UserError(f"{path} has no model.params.{{ddconfig, n_embed, embed_dim}}; pass a taming VQModel model.yaml")
    target = cfg["model"].get("target", "taming.models.vqgan.VQModel")
    if not target.endswith(".VQModel"):
        raise UserError(f"{path} describes {target}; only taming.models.vqgan.VQModel checkpoints are supported")
    return params
