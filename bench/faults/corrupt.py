"""Damage each kind of intermediate file and run its next consumer.

Per kind (checkpoint, tokenizer checkpoint, resume checkpoint, token shard, feature cache entry,
samples index, metric JSON) the file is truncated to half, emptied, hit by single bit flips at random
offsets, and replaced by a valid file of the wrong kind or run. The consumer must then either stop
with one ``error:`` line that names the file and a fix (no traceback), or succeed with exactly the
output of an undamaged run (a cache entry rebuilt, a flipped padding byte): never a wrong number.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.faults.kills import same
from bench.faults.lab import Lab, Result, check, run

FIX_WORDS = ("rerun", "delete", "pass ", "re-create", "set ", "fix", "remove")


@dataclass
class Case:
    """One kind of file: where a pristine copy goes, the consumer and how to read its output."""

    kind: str
    prepare: Callable[[Path], Path]          # work dir -> the file to damage (a fresh copy)
    consume: Callable[[Path], Result]        # work dir -> the consumer's run
    output: Callable[[Path, Result], object]  # the consumer's output, compared with the undamaged run's
    replacement: Callable[[], bytes]         # bytes of a valid file of the wrong kind / run


def damage(data: bytes, mode: str, rng: np.random.Generator, replacement: bytes) -> bytes:
    if mode == "truncate":
        return data[: len(data) // 2]
    if mode == "empty":
        return b""
    if mode == "replace":
        return replacement
    flipped = bytearray(data)
    flipped[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
    return bytes(flipped)


def outcome(result: Result, path: Path, clean: object, got: Callable[[], object]) -> str:
    """refused (one line naming the file and a fix) | rebuilt / unaffected (the undamaged run's output) | FAILED ..."""
    if result.rc == 0:
        if not same(got(), clean):
            return "FAILED: wrong output"
        return "rebuilt" if "recomputing it" in result.stderr else "unaffected"
    lines = result.error_lines
    if result.traceback or len(lines) != 1:
        return f"FAILED: {len(lines)} error lines, traceback {result.traceback}"
    line = lines[0]
    if str(path) not in line and path.name not in line:
        return f"FAILED: does not name the file: {line}"
    if not any(w in line for w in FIX_WORDS):
        return f"FAILED: names no fix: {line}"
    return "refused"


# ---------------------------------------------------------------- the kinds and their consumers
def cases(lab: Lab) -> list[Case]:
    def copy(src: Path, name: str) -> Callable[[Path], Path]:
        def prepare(work: Path) -> Path:
            dst = work / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
            return dst
        return prepare

    def tokens_of(folder: Path) -> torch.Tensor:
        return torch.load(folder / "tokens.pt", weights_only=False)["tokens"]

    def model_of(path: Path) -> dict:
        from nuwa.core.io import torch_load

        return torch_load(path, "checkpoint")["model"]

    def stdout_line(_: Path, r: Result) -> str:
        return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""

    resume_src = lab.root / "corrupt" / "resume_source" / "model.pt"
    other_resume = lab.root / "corrupt" / "resume_other" / "model.pt"
    for out, model in ((resume_src, "taming"), (other_resume, "maskgit")):
        if not out.with_name("model.pt.resume").exists():
            check(run(lab.train_args(model, out) + ["--stop-after", "5"]))

    fid_work = lab.root / "corrupt" / "fid_cache"
    if not (fid_work / "features").is_dir():
        check(run(lab.fid_args(workdir=fid_work)))
    real_entry, fake_entry = sorted((fid_work / "features").glob("*.npy"))[:2]

    def fid_cache_prepare(work: Path) -> Path:
        shutil.copytree(fid_work, work / "fidwork")
        return work / "fidwork" / "features" / real_entry.name

    return [
        Case("checkpoint", copy(lab.model["nuwa"], "model.pt"),
             lambda w: run(lab.generate_args(w / "samples", seed=0, checkpoint=w / "model.pt")),
             lambda w, r: tokens_of(w / "samples"), lambda: lab.model["taming"].read_bytes()),
        Case("tokenizer checkpoint", copy(lab.vqgan, "vqgan.pt"),
             lambda w: run(["tokenizer", "encode", "--tokenizer", str(w / "vqgan.pt"), "--data", str(lab.data),
                            "--split", "test", "--out", str(w / "test.pt")]),
             lambda w, r: torch.load(w / "test.pt", weights_only=False)["tokens"], lambda: lab.model["nuwa"].read_bytes()),
        Case("resume checkpoint", copy(resume_src.with_name("model.pt.resume"), "run/model.pt.resume"),
             lambda w: run(lab.train_args("taming", w / "run" / "model.pt")),
             lambda w, r: (model_of(w / "run" / "model.pt"), (w / "run" / "history.csv").read_bytes()),
             lambda: other_resume.with_name("model.pt.resume").read_bytes()),
        Case("token shard", copy(lab.shard["train"], "train.pt"),
             lambda w: run(["train", "--model", "taming", "--train", str(w / "train.pt"), "--val", str(lab.shard["test"]),
                            "--out", str(w / "run" / "model.pt"), "--history", str(w / "run" / "history.csv")]),
             lambda w, r: (model_of(w / "run" / "model.pt"), (w / "run" / "history.csv").read_bytes()),
             lambda: lab.vqgan.read_bytes()),
        Case("feature cache entry", fid_cache_prepare, lambda w: run(lab.fid_args(workdir=w / "fidwork")),
             lambda w, r: (stdout_line(w, r), cache_is_whole(w / "fidwork" / "features")), lambda: fake_entry.read_bytes()),
        Case("samples index", lambda w: copy(lab.samples, "samples")(w) / "samples.jsonl",
             lambda w: run(lab.clip_sim_args(samples=w / "samples")), stdout_line,
             lambda: (lab.other_samples / "samples.jsonl").read_bytes()),
        Case("metric JSON", copy(lab.metric["fid"], "fid.json"),
             lambda w: run(["eval", "compare", str(w / "fid.json"), str(lab.metric["fid"]), "--lower-is-better"],
                           settings=False),
             stdout_line, lambda: lab.metric["clip-sim"].read_bytes()),
    ]


def cache_is_whole(folder: Path) -> bool:
    """Every entry's bytes match the hash in its name, and no temporary file is left."""
    import hashlib

    from metrics.features import ENTRY_HASH

    entries = list(folder.iterdir())
    return all(not p.name.startswith(".") and hashlib.sha256(p.read_bytes()).hexdigest()[:ENTRY_HASH] == p.name.split(".")[1]
               for p in entries)


MODES = ("truncate", "empty", "flip", "flip", "flip", "replace")


def run_corruptions(lab: Lab, work: Path, seed: int, modes: tuple[str, ...] = MODES) -> list[dict]:
    """Every kind x mode; a clean run of each consumer first gives the output damage must not change."""
    rows = []
    for k, case in enumerate(cases(lab)):
        clean_dir = work / f"{k}-clean"
        shutil.rmtree(clean_dir, ignore_errors=True)
        case.prepare(clean_dir)
        clean = case.output(clean_dir, check(case.consume(clean_dir)))
        rng = np.random.default_rng([seed, k])
        for i, mode in enumerate(modes):
            case_dir = work / f"{k}-{i}-{mode}"
            shutil.rmtree(case_dir, ignore_errors=True)
            target = case.prepare(case_dir)
            target.write_bytes(damage(target.read_bytes(), mode, rng, case.replacement()))
            result = case.consume(case_dir)
            verdict = outcome(result, target, clean, lambda: case.output(case_dir, result))
            rows.append({"kind": case.kind, "mode": mode, "outcome": verdict,
                         "error": (result.error_lines or [""])[0][:300], "ok": not verdict.startswith("FAILED")})
            print(f"corrupt {case.kind:22s} {mode:9s} -> {verdict}"
                  + (f"  [{rows[-1]['error'][:140]}]" if result.rc else ""), flush=True)
    return rows


def summary(rows: list[dict]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for r in rows:
        key = "FAILED" if r["outcome"].startswith("FAILED") else r["outcome"]
        table.setdefault(r["kind"], {}).setdefault(key, 0)
        table[r["kind"]][key] += 1
    return table

