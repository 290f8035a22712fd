"""`nuwa tokenizer {train,encode,decode,report,import-taming}`."""
from __future__ import annotations

import argparse
from pathlib import Path

from nuwa.core import checkpoint as ckpt_io
from nuwa.core.config import add_config_args, config_from_args
from nuwa.core.errors import UserError
from nuwa.core.io import torch_load, write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="VQGAN / PG-VQGAN: train, encode, decode, report, import")
    sub = parser.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("train", help="train a VQGAN on images (or frames), or a PG-VQGAN on frame pairs")
    p.add_argument("kind", choices=["vqgan", "pg_vqgan"])
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder (its train split is used)")
    p.add_argument("--out", required=True, metavar="CKPT")
    p.add_argument("--init", metavar="CKPT", help="trained VQGAN to start a PG-VQGAN from (required for pg_vqgan)")
    p.add_argument("--stop-after", type=int, metavar="STEPS", help="stop after this many steps, keeping <out>.resume")
    common(p, train)

    p = sub.add_parser("encode", help="encode a dataset split to a token shard")
    p.add_argument("--tokenizer", required=True, metavar="CKPT")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--split", required=True, help="train, test or test_wide")
    p.add_argument("--out", required=True, metavar="SHARD")
    p.add_argument("--batch-size", type=int, default=32)
    common(p, encode)

    p = sub.add_parser("decode", help="decode token grids to PNGs, streamed strip by strip / frame by frame")
    p.add_argument("--tokenizer", required=True, metavar="CKPT")
    p.add_argument("--tokens", required=True, metavar="SHARD_OR_PT", help="a token shard or a tokens.pt with 'tokens' [N, F, h, w]")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--strip", type=int, default=16, help="token columns decoded per strip")
    p.add_argument("--margin", type=int, default=8, help="context token columns on each side of a strip")
    p.add_argument("--limit", type=int, help="decode only the first N samples")
    common(p, decode)

    p = sub.add_parser("report", help="PSNR, codebook usage and reconstruction FID on a held-out split, as JSON")
    p.add_argument("--tokenizer", required=True, metavar="CKPT")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, metavar="JSON")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backbone", metavar="NAME|CKPT",
                   help="image metric backbone (inception or a proxy checkpoint) for the reconstruction FID (default: none)")
    common(p, report)

    p = sub.add_parser("import-taming", help="convert a taming-transformers VQModel to a suite checkpoint")
    p.add_argument("--config", required=True, metavar="MODEL_YAML", help="taming's model.yaml")
    p.add_argument("--ckpt", required=True, metavar="LAST_CKPT", help="taming's last.ckpt")
    p.add_argument("--out", required=True, metavar="CKPT")
    p.set_defaults(func=import_taming)


def common(p: argparse.ArgumentParser, func) -> None:
    add_config_args(p)
    p.add_argument("--seed", type=int, help="random seed (default: the config's seed)")
    p.set_defaults(func=func)


def setup(args: argparse.Namespace) -> dict:
    cfg = config_from_args(args)
    from nuwa.tokenizer.config import check_config

    check_config(cfg)
    args.seed = cfg.get("seed", 0) if args.seed is None else args.seed
    ckpt_io.seed_everything(args.seed)
    return cfg


def train(args: argparse.Namespace) -> int:
    from nuwa.tokenizer.config import pg_vqgan_config, vqgan_config
    from nuwa.tokenizer.train import train_pg_vqgan, train_vqgan

    cfg = setup(args)
    if args.kind == "vqgan":
        path = train_vqgan(args.data, args.out, vqgan_config(cfg), seed=args.seed, stop_after=args.stop_after)
    else:
        if not args.init:
            raise UserError("training a pg_vqgan needs --init CKPT, the trained VQGAN it starts from")
        path = train_pg_vqgan(args.data, args.init, args.out, pg_vqgan_config(cfg), seed=args.seed, stop_after=args.stop_after)
    print(path)
    return 0


def encode(args: argparse.Namespace) -> int:
    from nuwa.tokenizer import load
    from nuwa.tokenizer.encode import encode_split

    setup(args)
    tokens = encode_split(load(args.tokenizer), args.data, args.split, args.out,
                          tokenizer_path=args.tokenizer, batch_size=args.batch_size)
    print(f"{args.out}: tokens {tuple(tokens.shape)}")
    return 0


def decode(args: argparse.Namespace) -> int:
    from nuwa.tokenizer import load
    from nuwa.tokenizer.decode import decode_tokens

    setup(args)
    data = torch_load(args.tokens, "tokens file")
    if not isinstance(data, dict) or "tokens" not in data:
        raise UserError(f"{args.tokens} has no 'tokens' entry; pass a token shard or a generated tokens.pt")
    tokens = data["tokens"].long()[:args.limit]
    decode_tokens(load(args.tokenizer), tokens, args.out, strip=args.strip, margin=args.margin)
    print(f"{args.out}: {tokens.shape[0]} samples")
    return 0


def report(args: argparse.Namespace) -> int:
    from nuwa.tokenizer import load
    from nuwa.tokenizer.report import reconstruction_report

    cfg = setup(args)
    backbone = None
    if args.backbone:
        from metrics.backbones import load_backbone
        from metrics.config import metrics_config

        backbone = load_backbone(args.backbone, "image", metrics_config(cfg))
    result = {"tokenizer": str(args.tokenizer), "data": str(args.data),
              **reconstruction_report(load(args.tokenizer), args.data, args.split, args.batch_size, backbone)}
    write_json(args.out, result)
    print(f"psnr {result['psnr']:.2f} dB, codebook usage {result['codebook_usage']:.1%}"
          + (f", reconstruction FID {result['rec_fid']:.3f} [{result['rec_fid_backbone']}]" if backbone else ""))
    return 0


def import_taming(args: argparse.Namespace) -> int:
    from nuwa.tokenizer import arch_dict, load_taming

    model = load_taming(args.config, args.ckpt)
    ckpt_io.save(Path(args.out), kind="vqgan", config=arch_dict(model.arch), model=model.state_dict(),
                 source={"model_yaml": str(args.config), "ckpt": str(args.ckpt)})
    print(f"{args.out}: VQGAN f={model.factor}, {model.n_embed} codes")
    return 0
