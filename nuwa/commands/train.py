"""`nuwa train --model {nuwa,taming,maskgit}`: one training command for every model family.

The family builds its model from the config and supplies the training recipe
(``family.trainable``); :func:`nuwa.core.trainer.fit` runs it over the token shards (AdamW + warm-up,
bf16 on GPU, DDP under torchrun, exact resume from ``<out>.resume``, per-epoch validation CSV).
The checkpoint holds ``kind = family.kind``, the family's model config, and under ``data`` what
generation needs to know about the training shard (token grid, image size, codebook size).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from nuwa.commands import families
from nuwa.core.checkpoint import seed_everything
from nuwa.core.errors import UserError
from nuwa.core.trainer import fit
from nuwa.data.tokens import TokenDataset, collate_tokens
from nuwa.model.config import settings

log = logging.getLogger(__name__)

# where a family's model config names its codebook size (NUWA-Infinity: codebook; baselines: n_embed)
CODEBOOK_KEYS = ("codebook", "n_embed")


def patch_tokens(cfg: dict) -> int:
    """m, the patch side in tokens (nuwa.model.patch); f*m pixels is the grid every canvas aligns to."""
    return settings(cfg).model.patch


def shard_info(train_set: TokenDataset, val_set: TokenDataset) -> dict:
    """What generation needs from the shard; the two shards must agree."""
    if val_set.n_embed != train_set.n_embed or val_set.grid[1:] != train_set.grid[1:]:
        raise UserError(f"validation shard ({val_set.n_embed} codes, grid {val_set.grid}) does not match the training "
                        f"shard ({train_set.n_embed} codes, grid {train_set.grid}); encode both with the same tokenizer and size")
    shard = train_set.shard
    grid = list(train_set.grid)
    size = shard.get("image_size")
    return {"grid": grid, "n_embed": train_set.n_embed, "world": shard.get("world"),
            "tokenizer": str(shard.get("tokenizer")) if shard.get("tokenizer") else None,
            "image_size": list(size) if size is not None else None}


def check_codebook(model_config: dict, n_embed: int, model: str, shard: Path) -> None:
    sizes = [model_config[k] for k in CODEBOOK_KEYS if k in model_config]
    if sizes and sizes[0] != n_embed:
        raise UserError(f"shard {shard} was encoded with a {n_embed}-code tokenizer but the {model} model has a "
                        f"{sizes[0]}-code codebook; set the model's codebook size to {n_embed} (--set) or re-encode")


def check_patch(model_config: dict, grid: tuple[int, int, int], shard: Path) -> None:
    """A patch-based model's patch must tile the shard's token grid (before any training work)."""
    patch = model_config.get("patch")
    if patch and (grid[1] % patch or grid[2] % patch):
        raise UserError(f"shard {shard} holds {grid[1]}x{grid[2]}-token grids, which patches of {patch}x{patch} tokens "
                        f"do not tile; set nuwa.model.patch to a divisor of {grid[1]} and {grid[2]}")


def train(model: str, train_shard: Path, val_shard: Path, out: Path, cfg: dict, *, history: Path | None = None,
          seed: int = 0, resume: bool = True, stop_after: int | None = None) -> Path:
    """Train family ``model`` on the shards and write checkpoint ``out`` (or ``<out>.resume`` when stopped early)."""
    fam = families.get(model)
    train_set, val_set = TokenDataset(train_shard), TokenDataset(val_shard)
    data = shard_info(train_set, val_set)
    tcfg = fam.train_config(cfg)
    seed_everything(seed)
    module = fam.build(cfg)
    model_config = fam.model_config(module)
    check_codebook(model_config, train_set.n_embed, model, train_shard)
    check_patch(model_config, train_set.grid, train_shard)
    log.info("training %s (%.2fM parameters) on %d samples of grid %s", model,
             sum(p.numel() for p in module.parameters()) / 1e6, len(train_set), data["grid"])
    trainable = fam.trainable(module, cfg)
    if hasattr(trainable, "grid"):  # recipes whose steps per batch depend on the grid (NUWA-Infinity's patch loss)
        trainable.grid = train_set.grid
    return fit(trainable, train_set, val_set, tcfg, out=out, kind=fam.kind,
               model_config=model_config, seed=seed, collate=collate_tokens, history_csv=history,
               resume=resume, stop_after=stop_after, desc=f"train {model}", extra={"data": data})


def register(sub: argparse._SubParsersAction) -> None:
    from nuwa.core.config import add_config_args

    p = sub.add_parser("train", help="train NUWA-Infinity or a baseline on token shards",
                       description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help=f"model family: {', '.join(families.REGISTRY)}")
    p.add_argument("--train", required=True, type=Path, help="training token shard (`nuwa tokenizer encode`)")
    p.add_argument("--val", required=True, type=Path, help="validation token shard")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write")
    p.add_argument("--history", type=Path, default=None, help="per-epoch train/validation loss CSV")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: config seed)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if <out>.resume exists")
    p.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                   help="stop after this many optimizer steps, keeping only <out>.resume (rerun to continue)")
    add_config_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from nuwa.core.config import config_from_args

    cfg = config_from_args(args)
    families.get(args.model)
    if args.stop_after is not None and args.stop_after < 1:
        raise UserError("--stop-after must be >= 1")
    seed = cfg.get("seed", 0) if args.seed is None else args.seed
    path = train(args.model, args.train, args.val, args.out, cfg, history=args.history, seed=seed,
                 resume=not args.no_resume, stop_after=args.stop_after)
    if int(os.environ.get("RANK", "0")) == 0:  # one line under torchrun too
        print(path)
    return 0
