"""`nuwa generate {uncond,t2i,outpaint,animate,t2v}`: sampling for every model family.

Algorithm 2 lives in the families (``family.generate``). This module turns a request in pixels
(canvas size, captions, input images) into a :class:`nuwa.core.family.GenerationRequest` in tokens
(known tokens from the VQGAN-encoded input, aligned by the rule of :mod:`nuwa.commands.inputs`), decodes
the generated grids to pixels (images: VQGAN, column strip by column strip; videos: the first
frame given (animate) or VQGAN-decoded (t2v), later frames by PG-VQGAN from the previous frame)
and writes the sample folder of docs/contracts.md into a temporary folder renamed at the end.
``--shard I/N`` generates only the I-th of N runs of whole batches (the batches one process would
make, so the same seeds give the same files); `nuwa samples merge` joins the N shard folders.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from nuwa.commands import families
from nuwa.commands.inputs import DIRECTIONS, check_canvas, cover, known_part, outpaint_input, read_image
from nuwa.commands.train import patch_tokens
from nuwa.core import checkpoint
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest, module_from_checkpoint
from nuwa.core.io import atomic_path, read_text, require_file
from nuwa.core.sample_folders import SampleWriter, check_video_format
from nuwa.core.sampling import SamplingConfig

log = logging.getLogger(__name__)

TASKS = ("uncond", "t2i", "outpaint", "animate", "t2v")
VIDEO_TASKS = ("animate", "t2v")
IMAGE_INPUT_TASKS = ("outpaint", "animate")
TEXT_REQUIRED = ("t2i", "t2v")
HELP = {
    "uncond": "unconditional images of any size",
    "t2i": "images from captions, any size",
    "outpaint": "extend a given image (a file or the known half of test images) in one direction or all around",
    "animate": "a video whose first frame is a given image (PG-VQGAN decoding)",
    "t2v": "videos from captions (first frame VQGAN, later frames PG-VQGAN)",
}


@dataclass
class Job:
    """What one sample is conditioned on."""

    caption: str | None                 # None: no text
    image: torch.Tensor | None = None   # outpaint: the known part; animate: the first frame, float[3, H, W]
    conditioned_on: str = ""            # --data: the dataset item's file (the metrics leave it out of the real set)


@dataclass
class Settings:
    task: str
    model: str
    checkpoint: Path
    tokenizer: Path
    out: Path
    pg_tokenizer: Path | None = None
    batch_size: int = 8
    width: int | None = None            # pixels; None: the training size
    height: int | None = None
    frames: int | None = None           # videos; None: the training clip length
    direction: str = "right"
    input_height: int | None = None
    seed: int = 0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    video_format: str = "gif"
    fps: int = 8
    progress: bool = True
    shard: tuple[int, int] | None = None  # (I, N): only the I-th of N runs of whole batches


@dataclass
class Condition:
    known: torch.Tensor | None = None        # Long[B, F, h, w]
    mask: torch.Tensor | None = None         # Bool[F, h, w], True where given
    first: torch.Tensor | None = None        # animate: the given first frames, float[B, 3, H, W]


@dataclass
class Loaded:
    family: Any
    module: nn.Module
    data: dict                                # what `nuwa train` recorded about the training shard
    tokenizer: Any
    pg_tokenizer: Any | None


# ---------------------------------------------------------------- loading


def load_tokenizer(path: Path, flag: str) -> Any:
    require_file(path, f"tokenizer checkpoint ({flag})", "train one with `nuwa tokenizer train`")
    from nuwa.tokenizer import load

    return load(path)


def load(settings: Settings) -> Loaded:
    fam = families.get(settings.model)
    ckpt = checkpoint.load(settings.checkpoint, fam.kind)
    module = module_from_checkpoint(fam, ckpt)
    tok = load_tokenizer(settings.tokenizer, "--tokenizer")
    pg = None
    if settings.task in VIDEO_TASKS:
        if settings.pg_tokenizer is None:
            raise UserError(f"{settings.task} decodes later frames with a PG-VQGAN; pass --pg-tokenizer CKPT")
        pg = load_tokenizer(settings.pg_tokenizer, "--pg-tokenizer")
        if not hasattr(pg, "pixel_encoder"):
            raise UserError(f"--pg-tokenizer {settings.pg_tokenizer} is a plain VQGAN; pass a PG-VQGAN checkpoint "
                            f"(`nuwa tokenizer train pg_vqgan`)")
    loaded = Loaded(fam, module, dict(ckpt.get("data") or {}), tok, pg)
    check_codebooks(loaded, settings)
    return loaded


def check_codebooks(loaded: Loaded, settings: Settings) -> None:
    n_embed = loaded.data.get("n_embed")
    tok, pg = loaded.tokenizer, loaded.pg_tokenizer
    if n_embed is not None and tok.n_embed != n_embed:
        raise UserError(f"tokenizer {settings.tokenizer} has {tok.n_embed} codes but the model was trained on "
                        f"{n_embed}; pass the tokenizer the training shard was encoded with")
    if pg is not None and (pg.n_embed, pg.factor) != (tok.n_embed, tok.factor):
        raise UserError(f"PG-VQGAN {settings.pg_tokenizer} (codes {pg.n_embed}, f={pg.factor}) does not match the "
                        f"VQGAN (codes {tok.n_embed}, f={tok.factor}); pass the PG-VQGAN trained on this VQGAN")


def sampling_with_flags(cfg: dict, model: str, **overrides: Any) -> SamplingConfig:
    """The family's configured sampling settings with the CLI's values (None: keep) on top."""
    try:
        configured = families.get(model).sampling_config(cfg)
        return dataclasses.replace(configured, **{k: v for k, v in overrides.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad sampling setting: {exc}") from exc


def canvas(settings: Settings, loaded: Loaded, unit: int) -> tuple[int, int, int]:
    """(frames, height, width) in pixels, defaults from the training shard."""
    size = loaded.data.get("image_size")
    height = settings.height or (size[0] if size else None)
    width = settings.width or (size[1] if size else None)
    if height is None or width is None:
        raise UserError(f"checkpoint {settings.checkpoint} does not record its training size; pass --width and --height")
    check_canvas(width, height, unit)
    if settings.task not in VIDEO_TASKS:
        return 1, height, width
    trained = (loaded.data.get("grid") or [1])[0]
    frames = settings.frames or (trained if trained > 1 else None)
    if frames is None or frames < 2:
        raise UserError("videos need at least 2 frames; pass --frames F (F >= 2)")
    return frames, height, width


# ---------------------------------------------------------------- what to condition on


def read_captions(path: Path) -> list[str]:
    captions = [line.strip() for line in read_text(path, "captions file", "one caption per line").splitlines() if line.strip()]
    if not captions:
        raise UserError(f"captions file {path} has no captions; write one caption per line")
    return captions


def dataset_jobs(data: Path, split: str, task: str, direction: str, n: int | None, no_text: bool) -> list[Job]:
    """Captions (and for outpaint/animate the known half / first frame) from a rendered dataset."""
    from nuwa.data.folders import ImageFolder, VideoFolder, read_records

    records = read_records(data, split)
    n = len(records) if n is None else n
    if n > len(records):
        raise UserError(f"--n {n} but {data}/{split} holds only {len(records)} samples; lower --n")
    sources = [(data / split / rec["file"]).as_posix() for rec in records[:n]]
    if task not in IMAGE_INPUT_TASKS:
        return [Job(rec["caption"] or None, conditioned_on=src) for rec, src in zip(records, sources)]
    folder = ImageFolder(data, split) if task == "outpaint" else VideoFolder(data, split)
    jobs = []
    for i, src in enumerate(sources):
        item = folder[i]
        image = known_part(item["image"], direction) if task == "outpaint" else item["video"][0]
        jobs.append(Job(None if no_text else item["caption"] or None, image, src))
    return jobs


def user_jobs(n: int | None, captions: list[str] | None, image: torch.Tensor | None) -> list[Job]:
    if captions is None:
        return [Job(None, image) for _ in range(n or 1)]
    n = len(captions) if n is None else n
    if len(captions) == 1:
        captions = captions * n
    if n > len(captions):
        raise UserError(f"--n {n} but only {len(captions)} captions were given; lower --n or add captions")
    return [Job(c, image) for c in captions[:n]]


def check_jobs(task: str, jobs: list[Job]) -> None:
    if not jobs:
        raise UserError("nothing to generate; --n must be >= 1")
    if task in TEXT_REQUIRED and jobs[0].caption is None:
        raise UserError(f"{task} needs text; pass --caption TEXT, --captions FILE or --data DIR")
    if task in IMAGE_INPUT_TASKS and jobs[0].image is None:
        raise UserError(f"{task} needs an input image; pass --input IMAGE or --data DIR")


def check_inputs(jobs: list[Job], settings: Settings, size: tuple[int, int], unit: int) -> None:
    """Every input fits the canvas by the alignment rule (fails before any sampling work)."""
    for job in jobs:
        if settings.task == "outpaint":
            outpaint_input(job.image, size, settings.direction, unit, settings.input_height)
        elif settings.task == "animate":
            cover(job.image, size, unit)


def condition(jobs: list[Job], settings: Settings, grid: tuple[int, int, int], tokenizer: Any, unit: int
              ) -> Condition:
    """Known tokens and mask for one batch (outpaint: the placed input; animate: the first frame)."""
    frames, height, width = grid
    f = tokenizer.factor
    shape = (len(jobs), frames, height // f, width // f)
    if settings.task == "outpaint":
        placed = [outpaint_input(job.image, (height, width), settings.direction, unit, settings.input_height)
                  for job in jobs]
        box = placed[0][1]
        if any(b != box for _, b in placed):
            raise UserError("the input images of one batch land on differently sized regions; use --batch-size 1")
        known = torch.zeros(shape, dtype=torch.long)
        known[:, 0, box.top // f:(box.top + box.height) // f, box.left // f:(box.left + box.width) // f] = \
            tokenizer.encode_to_indices(torch.stack([img for img, _ in placed]))
        return Condition(known, box.token_mask((height, width), f)[None])
    if settings.task == "animate":
        first = torch.stack([cover(job.image, (height, width), unit) for job in jobs])
        known = torch.zeros(shape, dtype=torch.long)
        known[:, 0] = tokenizer.encode_to_indices(first)
        mask = torch.zeros(shape[1:], dtype=torch.bool)
        mask[0] = True
        return Condition(known, mask, first)
    return Condition()


def text_ids(jobs: list[Job]) -> torch.Tensor | None:
    from nuwa.core.text import tokenize

    return None if jobs[0].caption is None else tokenize([job.caption for job in jobs])


# ---------------------------------------------------------------- pixels


def write_batch(writer: SampleWriter, tokens: torch.Tensor, cond: Condition, loaded: Loaded, start: int) -> list[Path]:
    """Decode one batch of token grids Long[B, F, h, w] to disk (streamed strip by strip); each sample's file.

    Images: VQGAN. Videos: PG-VQGAN frame by frame from the previous decoded frame; the first frame is
    the given one (animate) or the PG-VQGAN's unguided, i.e. plain VQGAN, decoding (t2v).
    """
    from nuwa.tokenizer.decode import decode_image, decode_video

    paths = []
    for b in range(tokens.shape[0]):
        if writer.task in VIDEO_TASKS:
            path = writer.video_dir(start + b)
            first = cond.first[b] if cond.first is not None else None
            decode_video(loaded.pg_tokenizer, tokens[b], path, first=first)
            writer.write_video(start + b)
        else:
            path = writer.image_path(start + b)
            decode_image(loaded.tokenizer, tokens[b, 0], path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------- the run


def sample_batch(jobs: list[Job], start: int, settings: Settings, loaded: Loaded, writer: SampleWriter,
                 unit: int, grid: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Generate, decode and record one batch; returns its tokens Long[B, F, h, w] and outpainting masks."""
    frames, height, width = grid
    f = loaded.tokenizer.factor
    seed = settings.seed + start
    t0 = time.time()
    cond = condition(jobs, settings, grid, loaded.tokenizer, unit)
    request = GenerationRequest(  # sample i draws from its own stream (seed + i): the batch size does not matter
        grid=(frames, height // f, width // f), batch=len(jobs), text=text_ids(jobs),
        known=cond.known, known_mask=cond.mask, sampling=settings.sampling,
        generator=torch.Generator().manual_seed(seed), progress=settings.progress,
        generators=[torch.Generator().manual_seed(seed + i) for i in range(len(jobs))])
    with torch.no_grad():
        tokens = loaded.family.generate(loaded.module, request).long().cpu()
    check_output(tokens, request, settings.model)
    files = write_batch(writer, tokens, cond, loaded, start)
    seconds = (time.time() - t0) / len(jobs)
    for i, (job, path) in enumerate(zip(jobs, files)):
        writer.record(path, caption=job.caption or "", seed=seed + i, width=width, height=height,
                      frames=frames, seconds=seconds, **({"conditioned_on": job.conditioned_on} if job.conditioned_on else {}))
    masks = (~cond.mask[0]).expand(len(jobs), -1, -1) if settings.task == "outpaint" else None
    return tokens, masks


def batch_starts(n: int, batch_size: int, shard: tuple[int, int] | None) -> range:
    """The first sample of each batch to generate: all batches, or shard I's contiguous run of them."""
    starts = range(0, n, batch_size)
    if shard is None:
        return starts
    index, count = shard
    if count > len(starts):
        raise UserError(f"--shard {index}/{count}: {n} samples in batches of {batch_size} make only {len(starts)} "
                        f"batches; use at most {len(starts)} shards (or a smaller --batch-size)")
    return starts[index * len(starts) // count:(index + 1) * len(starts) // count]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or int(match[1]) >= int(match[2]):
        raise UserError(f"--shard {text!r}: write I/N with 0 <= I < N, e.g. --shard 0/4")
    return int(match[1]), int(match[2])


def generate(settings: Settings, jobs: list[Job], cfg: dict, command: list[str] | None = None) -> Path:
    """Generate ``jobs`` and write the sample folder ``settings.out``; nothing is written on error."""
    check_jobs(settings.task, jobs)
    check_video_format(settings.video_format)
    if settings.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    starts = batch_starts(len(jobs), settings.batch_size, settings.shard)
    n = len(jobs[starts[0]:starts[-1] + settings.batch_size])
    loaded = load(settings)
    # the checkpoint's own patch (a run may train with --set nuwa.model.patch=...), else the config's
    unit = loaded.tokenizer.factor * loaded.family.model_config(loaded.module).get("patch", patch_tokens(cfg))
    grid = canvas(settings, loaded, unit)
    check_inputs(jobs, settings, grid[1:], unit)
    t_start = time.time()
    tokens, masks = [], []
    with atomic_path(settings.out, is_dir=True) as tmp:
        writer = SampleWriter(tmp, task=settings.task, model=settings.model,
                              video_format=settings.video_format, fps=settings.fps)
        with tqdm(total=n, desc=f"generate {settings.task} ({settings.model})", unit="sample",
                  disable=not settings.progress) as bar:
            for start in starts:
                batch = jobs[start:start + settings.batch_size]
                batch_tokens, batch_masks = sample_batch(batch, start, settings, loaded, writer, unit, grid)
                tokens.append(batch_tokens)
                if batch_masks is not None:
                    masks.append(batch_masks)
                bar.update(len(batch))
        total = time.time() - t_start
        writer.finish(torch.cat(tokens), run_info(settings, grid, n, total, command, len(jobs)),
                      torch.cat(masks) if masks else None)
    log.info("wrote %d %s samples to %s (%.1f s)", n, settings.task, settings.out, total)
    return settings.out


def run_info(settings: Settings, grid: tuple[int, int, int], n: int, seconds: float,
             command: list[str] | None, samples: int) -> dict[str, Any]:
    """run.json; a shard's also says which shard of how many, and the whole set's sample count."""
    frames, height, width = grid
    shard = {} if settings.shard is None else {
        "shard": {"index": settings.shard[0], "of": settings.shard[1], "samples": samples}}
    return {**shard, "command": shlex.join(command or sys.argv), "task": settings.task, "model": settings.model,
            "checkpoint": str(settings.checkpoint), "tokenizer": str(settings.tokenizer),
            "pg_tokenizer": str(settings.pg_tokenizer) if settings.pg_tokenizer else None,
            "sampling": dataclasses.asdict(settings.sampling), "seed": settings.seed, "n": n,
            "batch_size": settings.batch_size, "width": width, "height": height, "frames": frames,
            "direction": settings.direction if settings.task == "outpaint" else None,
            "input_height": settings.input_height, "seconds": round(seconds, 3),
            "seconds_per_sample": round(seconds / n, 4)}


def check_output(tokens: torch.Tensor, request: GenerationRequest, model: str) -> None:
    """The family's answer has the asked shape and kept every given token (Family protocol)."""
    expected = (request.batch, *request.grid)
    if tuple(tokens.shape) != expected:
        raise RuntimeError(f"{model} generated tokens of shape {tuple(tokens.shape)}, expected {expected}")
    if request.known_mask is not None:
        mask = request.known_mask.expand_as(tokens)
        if not torch.equal(tokens[mask], request.known[mask]):
            raise RuntimeError(f"{model} changed given tokens; its generate() breaks the Family protocol")


# ---------------------------------------------------------------- CLI


def register(sub: argparse._SubParsersAction) -> None:
    from nuwa.core.config import add_config_args

    parser = sub.add_parser("generate", help="sample images or videos from a trained model",
                            description=__doc__.splitlines()[0])
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for task in TASKS:
        p = tasks.add_parser(task, help=HELP[task], description=HELP[task])
        add_task_args(p, task)
        add_config_args(p)
        p.set_defaults(func=main)


def add_task_args(p: argparse.ArgumentParser, task: str) -> None:
    p.add_argument("--model", required=True, help=f"model family: {', '.join(families.REGISTRY)}")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint written by `nuwa train`")
    p.add_argument("--tokenizer", required=True, type=Path, help="VQGAN checkpoint the training shard was encoded with")
    p.add_argument("--out", required=True, type=Path, help="output folder (replaced atomically)")
    p.add_argument("--n", type=int, default=None,
                   help="number of samples (default: one per caption / dataset sample, else 1)")
    p.add_argument("--batch-size", type=int, default=8, help="samples generated together (default 8)")
    p.add_argument("--width", type=int, default=None, help="canvas width in pixels, a multiple of f*m (default: training width)")
    p.add_argument("--height", type=int, default=None, help="canvas height in pixels, a multiple of f*m (default: training height)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: config seed); sample i uses seed + i, whatever the batch size")
    p.add_argument("--temperature", type=float, default=None, help="softmax temperature (default: config)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens, 0 = off (default: config)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, 1 = off (default: config)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale, 1 = off (default: config)")
    p.add_argument("--steps", type=int, default=None, help="unmasking steps of iterative decoders (default: config)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="generate only shard I of N (whole batches; join the shards with `nuwa samples merge`)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if task != "uncond":
        text = p.add_mutually_exclusive_group()
        text.add_argument("--caption", help="one caption for every sample")
        text.add_argument("--captions", type=Path, help="text file, one caption per line")
        text.add_argument("--data", type=Path, help="rendered dataset folder to take captions (and inputs) from")
        p.add_argument("--split", default="test", help="dataset split with --data (default test)")
    if task in IMAGE_INPUT_TASKS:
        p.add_argument("--input", type=Path, help="input image file of any size (aligned by the rule in docs/cli.md)")
    if task == "outpaint":
        p.add_argument("--direction", default="right", help=f"where to extend: {', '.join(DIRECTIONS)} (default right)")
        p.add_argument("--input-height", type=int, default=None,
                       help="height in pixels the input is scaled to, a multiple of f*m (default: see docs/cli.md)")
        p.add_argument("--no-text", action="store_true", help="outpaint without captions")
    if task in VIDEO_TASKS:
        p.add_argument("--pg-tokenizer", type=Path, required=True, help="PG-VQGAN checkpoint for frames after the first")
        p.add_argument("--frames", type=int, default=None, help="frames per video (default: training clip length)")
        p.add_argument("--video-format", default="gif", help="gif or mp4 (mp4 needs imageio-ffmpeg; default gif)")
        p.add_argument("--fps", type=int, default=8, help="frames per second of the GIF/MP4 (default 8)")


def jobs_from_args(args: argparse.Namespace) -> list[Job]:
    task = args.task
    data = getattr(args, "data", None)
    if data is not None:
        if task in IMAGE_INPUT_TASKS and args.input is not None:
            raise UserError("pass either --input IMAGE or --data DIR, not both")
        return dataset_jobs(data, args.split, task, getattr(args, "direction", "right"), args.n,
                            getattr(args, "no_text", False))
    captions = None
    if getattr(args, "caption", None) is not None:
        captions = [args.caption]
    elif getattr(args, "captions", None) is not None:
        captions = read_captions(args.captions)
    if getattr(args, "no_text", False):
        captions = None
    image = read_image(args.input) if getattr(args, "input", None) is not None else None
    return user_jobs(args.n, captions, image)


def settings_from_args(args: argparse.Namespace, cfg: dict) -> Settings:
    families.get(args.model)  # an unknown model is a one-line error before any work
    sampling = sampling_with_flags(cfg, args.model, temperature=args.temperature, top_k=args.top_k,
                                   top_p=args.top_p, guidance=args.guidance, steps=args.steps)
    return Settings(
        task=args.task, model=args.model, checkpoint=args.checkpoint, tokenizer=args.tokenizer, out=args.out,
        pg_tokenizer=getattr(args, "pg_tokenizer", None), batch_size=args.batch_size,
        width=args.width, height=args.height, frames=getattr(args, "frames", None),
        direction=getattr(args, "direction", "right"), input_height=getattr(args, "input_height", None),
        seed=cfg.get("seed", 0) if args.seed is None else args.seed, sampling=sampling,
        video_format=getattr(args, "video_format", "gif"), fps=getattr(args, "fps", 8), progress=not args.quiet,
        shard=parse_shard(args.shard))


def main(args: argparse.Namespace) -> int:
    from nuwa.core.config import config_from_args

    cfg = config_from_args(args)
    settings = settings_from_args(args, cfg)
    if settings.task == "outpaint" and settings.direction not in DIRECTIONS:
        raise UserError(f"unknown direction {settings.direction!r}; choose one of {', '.join(DIRECTIONS)}")
    out = generate(settings, jobs_from_args(args), cfg, [sys.argv[0], *sys.argv[1:]])
    print(out)
    return 0
