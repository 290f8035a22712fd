"""A full disk during a write, and two processes sharing a work directory.

ENOSPC: each command writes into a small tmpfs that is filled up beforehand, leaving a random
share of the bytes the command needs. It must either finish or stop with one ``error:`` line; in
both cases every file left under a final name must be whole (loads, parses, matches its hash) and
no temporary file may remain. After a failed `nuwa train` the space is freed and the rerun must end
exactly where an uninterrupted run ends.

Concurrency: two copies of a command start at (almost) the same moment against the same output,
work directory and feature cache; both must succeed and leave whole files equal to a lone run's.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from bench.faults.kills import load, same
from bench.faults.lab import ROOT, Lab, Result, check, env, nuwa_command, run

MiB = 1 << 20


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` (needs root) for the duration of the block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def whole(path: Path) -> bool:
    """Does a file left under its final name hold a complete artifact?"""
    from nuwa.core.io import read_json, torch_load

    try:
        if path.suffix in (".pt", ".resume"):
            torch_load(path, "artifact")
        elif path.suffix == ".json":
            read_json(path, "artifact")
        elif path.suffix == ".npy":
            return hashlib.sha256(path.read_bytes()).hexdigest()[:16] == path.name.split(".")[1]
        elif path.suffix == ".csv":
            lines = path.read_text().splitlines()
            return bool(lines) and all(line.count(",") == lines[0].count(",") for line in lines)
        elif path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                im.load()
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
    except Exception:
        return False
    return True


def leftovers(root: Path, filler: Path) -> tuple[list[Path], list[Path]]:
    """(temporary files or folders, broken files under final names) below ``root``."""
    temps, broken = [], []
    for p in root.rglob("*"):
        if p == filler:
            continue
        if p.name.startswith(".") and ".tmp" in p.name:
            temps.append(p)
        elif p.is_file() and not any(q.name.startswith(".") for q in p.relative_to(root).parents if q.name) \
                and not whole(p):
            broken.append(p)
    return temps, broken


def one_line(result: Result) -> bool:
    return len(result.error_lines) == 1 and not result.traceback


def disk_targets(lab: Lab) -> dict[str, Callable[[Path], list[str]]]:
    return {
        "nuwa train": lambda d: lab.train_args("taming", d / "run" / "model.pt"),
        "nuwa tokenizer encode": lambda d: ["tokenizer", "encode", "--tokenizer", str(lab.vqgan), "--data", str(lab.data),
                                            "--split", "test", "--out", str(d / "test.pt")],
        "nuwa generate": lambda d: lab.generate_args(d / "samples", seed=0),
        "nuwa eval fid (cache + JSON)": lambda d: lab.fid_args(d / "fid.json", workdir=d / "work"),
        "nuwa data render": lambda d: ["data", "render", "lhqc", "--out", str(d / "data")],
    }


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_enospc(lab: Lab, work: Path, seed: int, levels: int = 4) -> list[dict]:
    rows = []
    for t, (name, args_of) in enumerate(disk_targets(lab).items()):
        normal = work / f"{t}-normal"
        shutil.rmtree(normal, ignore_errors=True)
        normal.mkdir(parents=True)
        check(run(args_of(normal)))
        need = du(normal)
        rng = np.random.default_rng([seed, t])
        for level in range(levels):
            free = int(rng.uniform(0.02, 1.5) * need)  # a training run needs more at its peak (resume + temp copy)
            rows.append(enospc_case(lab, name, args_of, work / f"{t}-{level}", need, free))
            r = rows[-1]
            print(f"enospc {name:28s} free {free:>9d} of {need:>9d} B -> rc {r['rc']}, one line {r['one_line']}, "
                  f"temps {r['temp_files']}, broken {r['broken_files']}, rerun identical {r['rerun_identical']}", flush=True)
    return rows


def enospc_case(lab: Lab, name: str, args_of: Callable[[Path], list[str]], mount: Path, need: int, free: int) -> dict:
    size = 4 * need + 64 * MiB  # room for the rerun once the filler is gone
    with tmpfs(mount, size) as d:
        filler = d / "filler"
        with open(filler, "wb") as f:  # leave `free` bytes (tmpfs counts whole pages)
            f.truncate(0)
            f.write(b"\0" * max(0, size - free))
        result = run(args_of(d))
        temps, broken = leftovers(d, filler)
        row = {"target": name, "need": need, "free": free, "rc": result.rc, "error": (result.error_lines or [""])[0][:200],
               "one_line": result.rc == 0 or one_line(result), "temp_files": len(temps), "broken_files": len(broken),
               "rerun_identical": None}
        if name == "nuwa train" and result.rc != 0:
            filler.unlink()
            check(run(args_of(d)))
            row["rerun_identical"] = same(load(d / "run" / "model.pt"), load(lab.model["taming"])) and \
                (d / "run" / "history.csv").read_bytes() == lab.history["taming"].read_bytes()
    row["ok"] = row["one_line"] and not row["temp_files"] and not row["broken_files"] and row["rerun_identical"] is not False
    return row


# ---------------------------------------------------------------- two processes at once
def concurrent_targets(lab: Lab) -> dict[str, tuple[Callable[[Path], list[str]], Callable[[Path], object], object]]:
    """name -> (command in a shared dir, its output, the output of a lone run)."""
    def fid_value(d: Path) -> tuple[str, bool]:
        from bench.faults.corrupt import cache_is_whole

        return json.loads((d / "fid.json").read_text())["value"], cache_is_whole(d / "work" / "features")

    def samples(folder: Path) -> object:
        from nuwa.core.sample_folders import read_index

        return len(read_index(folder)), torch.load(folder / "tokens.pt", weights_only=False)["tokens"]

    lone_fid = (json.loads(lab.metric["fid"].read_text())["value"], True)
    return {
        "nuwa eval fid, one feature cache": (lambda d: lab.fid_args(d / "fid.json", workdir=d / "work"), fid_value, lone_fid),
        "nuwa train, one --out": (lambda d: lab.train_args("taming", d / "run" / "model.pt"),
                                  lambda d: (load(d / "run" / "model.pt")["model"], (d / "run" / "history.csv").read_bytes()),
                                  (load(lab.model["taming"])["model"], lab.history["taming"].read_bytes())),
        "nuwa generate, one --out": (lambda d: lab.generate_args(d / "samples", seed=0), lambda d: samples(d / "samples"),
                                     samples(lab.samples)),
    }


def run_concurrent(lab: Lab, work: Path, seed: int, pairs: int = 3) -> list[dict]:
    rows = []
    for t, (name, (args_of, output, lone)) in enumerate(concurrent_targets(lab).items()):
        rng = np.random.default_rng([seed, t])
        for i in range(pairs):
            d = work / f"{t}-{i}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            procs, logs = [], [d.parent / f"{d.name}.{k}.log" for k in range(2)]
            for log in logs:
                with open(log, "w") as fh:
                    procs.append(subprocess.Popen(nuwa_command(args_of(d)), cwd=ROOT, env=env(),
                                                  stdout=subprocess.DEVNULL, stderr=fh))
                time.sleep(float(rng.uniform(0, 1.5)))
            codes = [p.wait() for p in procs]
            errors = [log.read_text()[-300:] for p, log in zip(procs, logs) if p.returncode]
            temps, broken = leftovers(d, d / "none")
            identical = all(c == 0 for c in codes) and same(output(d), lone)
            rows.append({"target": name, "exit_codes": codes, "identical": identical, "temp_files": len(temps),
                         "broken_files": len(broken), "errors": errors,
                         "ok": identical and not temps and not broken})
            print(f"concurrent {name:34s} pair {i}: exit {codes}, identical {identical}, temps {len(temps)}, "
                  f"broken {len(broken)}", flush=True)
    return rows
