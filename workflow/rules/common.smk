# Shared helpers: the resolved plan (nuwa/report/plan.py), per-section config files, log/benchmark paths.
import os
import shlex
import subprocess
import sys

import yaml

from nuwa.data.config import WORLDS, VideoConfig, world_config
from nuwa.plan import BACKBONE_TASK, METRIC_BACKBONE, REFERENCE_BACKBONE, SAMPLE_FIGURES, \
    SWEEP_FIGURES, TABLES, Plan

from nuwa.commands.config import check_all

check_all(config)  # every package's check_config and every run's overrides: a bad value fails before any work
PY = sys.executable
ENV = "../envs/nuwa.yaml"  # used with --sw-deployment-method conda; otherwise PY (this interpreter) runs every rule
PLAN = Plan(config)
W = str(PLAN.workdir)
SECTIONS = ("top", "data", "tokenizer", "nuwa", "baselines", "metrics", "experiments")
TABLE_NAMES = ("table1", *TABLES)
FIGURE_NAMES = (*SWEEP_FIGURES, *SAMPLE_FIGURES, "figure_ncp", "figure_convergence")
EXP = config["experiments"]
VIDEO_WORLDS = tuple(w for w in WORLDS if isinstance(world_config(config, w), VideoConfig))

wildcard_constraints:
    world="|".join(WORLDS),
    section="|".join(SECTIONS),
    run="|".join(PLAN.runs),
    sset="|".join(PLAN.sets),
    seed=r"\d+",
    split="train|test",
    kind="image|clip|video",
    metric="|".join(METRIC_BACKBONE),


def log(name):
    return f"{W}/logs/{name}.log"


def bench(name):
    return f"{W}/benchmarks/{name}.tsv"


def section_content(name):
    """What one config file under {W}/config holds: a top-level section, or the scalar keys ("top")."""
    if name == "top":
        return {k: v for k, v in config.items() if k not in SECTIONS}
    return {name: config.get(name, {})}


def config_files(*sections):
    return [f"{W}/config/{s}.yaml" for s in ("top", *sections)]


def config_args(*sections):
    """`--config` options so a command sees exactly the sections it depends on (and nothing else reruns it)."""
    return " ".join(f"--config {p}" for p in config_files(*sections))


def set_args(items):
    return " ".join(f"--set {shlex.quote(i)}" for i in items)


def world_size(world, widths=1, heights=1):
    wc = world_config(config, world)
    side = wc.crop if world == "rqf" else wc.width
    return side * widths, wc.height * heights


def manifest_inputs(wc):
    """A real folder's captions file (manifest) in the repository: editing it re-imports the world."""
    wcfg = world_config(config, wc.world)
    path = getattr(wcfg, "captions", "") if wcfg.source == "folder" else ""
    return [path] if path and os.path.isfile(path) else []


def backbone_arg(kind):
    """`--backbone`: the workflow's proxy checkpoint (embedded default) or the reference network's name."""
    if config.get("metrics", {}).get("backbone", "proxy") == "proxy":
        return str(PLAN.backbone(kind))
    return REFERENCE_BACKBONE[kind]


def backbone_inputs(kind):
    return [str(PLAN.backbone(kind))] if config.get("metrics", {}).get("backbone", "proxy") == "proxy" else []


def vqgan_priority(wc):
    """Tokenizer training is the long pole every later job waits on, so it starts first (other jobs: 0).
    Among VQGANs, the one more work waits on goes first: +1 per world it encodes, +1 per video world
    (whose PG-VQGAN trains on top of it)."""
    users = [w for w, v in EXP["vqgan_world"].items() if v == wc.world]
    return 1 + len(users) + len(set(users) & set(VIDEO_WORLDS))


def run_of(wc):
    return PLAN.runs[wc.run]


def launcher(wc, resources):
    """`python -m` or, under profiles/gpu, torchrun over the GPUs this job was given (it picks its devices itself)."""
    if config.get("launcher", "python") == "torchrun":
        return f"{PY} -m torch.distributed.run --standalone --nproc_per_node={max(1, resources.gpu)} -m"
    return f"{PY} -m"


def generate_inputs(wc):
    run, sset = PLAN.runs[wc.run], PLAN.sets[wc.sset]
    files = {"checkpoint": PLAN.checkpoint(run.name), "tokenizer": PLAN.vqgan(run.world)}
    if sset.task in ("animate", "t2v"):
        files["pg_tokenizer"] = PLAN.pg_vqgan(run.world)
    if sset.task != "uncond":
        files["data"] = PLAN.data(run.world)
    return {k: str(v) for k, v in files.items()}


def generate_args(wc, input):
    """The options of `nuwa generate` for one sample set (sizes from the data section, counts from experiments)."""
    run, sset = PLAN.runs[wc.run], PLAN.sets[wc.sset]
    width, height = world_size(run.world, sset.width, sset.height)
    args = [f"--model {run.model}", f"--checkpoint {input.checkpoint}", f"--tokenizer {input.tokenizer}",
            f"--n {EXP['n'][sset.n_key]}", f"--batch-size {EXP['batch']}", f"--width {width}", f"--height {height}", f"--seed {wc.seed}", "--quiet"]
    if sset.task != "uncond":
        args += [f"--data {input.data}", "--split test"]
    if sset.direction:
        args.append(f"--direction {sset.direction}")
    if not sset.text:
        args.append("--no-text")
    if sset.frames_key:
        args += [f"--pg-tokenizer {input.pg_tokenizer}", f"--frames {EXP['frames'][sset.frames_key]}"]
    return " ".join(args)


def metric_inputs(wc):
    run = PLAN.runs[wc.run]
    return {"samples": str(PLAN.samples(wc.run, wc.sset, int(wc.seed))),
            "real": str(PLAN.data(run.world)),
            "backbone": backbone_inputs(METRIC_BACKBONE[wc.metric])}


def metric_args(wc, input):
    """Generated samples against the real test split of the run's world (captions come with the samples).
    Outpainting scores only the generated region (the sample folder's masks.pt) against the same region."""
    args = [f"--backbone {backbone_arg(METRIC_BACKBONE[wc.metric])}", f"--seed {wc.seed}", f"--fake {input.samples}"]
    if wc.metric in ("fid", "block-fid", "fvd"):
        args.append(f"--real {input.real}/test")
    if wc.metric == "block-fid" and PLAN.sets[wc.sset].direction:
        args.append(f"--masks {input.samples}/masks.pt")
    return " ".join(args)


def git_state():
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")
