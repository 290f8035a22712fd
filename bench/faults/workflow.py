"""Interrupt `snakemake --cores all` of config/ci.yaml with SIGINT or SIGKILL at random jobs, rerun, compare.

Each series starts from an empty directory (a copy of config/, as tests/test_workflow_e2e.py does).
An interruption comes a random few seconds after a randomly chosen job of the invocation starts:
SIGINT goes to Snakemake's process group (Ctrl-C), SIGKILL to Snakemake and all its jobs (a
scheduler killing the allocation, a dead node). Then the same command runs again, and so on; the
last run goes to the end. Checks, from Snakemake's own job log and the files' mtimes:

- no job that finished in an interrupted invocation runs again, and its outputs keep their mtime;
- every output a killed job left behind is recomputed by a later invocation before anything uses it;
- the final results/ is byte for byte the uninterrupted run's.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.faults.lab import ROOT, env

JOB = re.compile(r"^(?:local)?rule (\S+):$")
FIELD = re.compile(r"^\s+(output|jobid): (.*)$")
FINISHED = re.compile(r"Finished job(?:id:)? (\d+)")
LOCKED = "LockException"


@dataclass
class Invocation:
    """What one Snakemake invocation did, from its log: outputs per job id, which finished, when it ended."""

    outputs: dict[str, list[str]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)
    rc: int = 0
    interrupted_at: float | None = None
    orphans: int = 0
    block: list[str] = field(default_factory=list)  # outputs of the job block being read

    def parse(self, line: str) -> bool:
        """Read one log line; True when it starts a job (its jobid line)."""
        self.lines.append(line)
        if JOB.match(line):
            self.block = []
        elif m := FIELD.match(line):
            if m[1] == "output":
                self.block = [o.strip() for o in m[2].split(",") if o.strip()]
            else:
                self.outputs.setdefault(m[2].strip(), self.block)
                return True
        elif m := FINISHED.search(line):
            self.finished.add(m[1])
        return False

    @property
    def started(self) -> int:
        return len(self.outputs)

    def files(self, which: str) -> set[str]:
        jobs = self.finished if which == "finished" else set(self.outputs) - self.finished
        return {o for j in jobs for o in self.outputs.get(j, [])}


def command(folder: Path, target: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(folder),
            "--cores", "all", "--configfile=config/ci.yaml", *extra, target]


def invoke(folder: Path, target: str, stop_after_job: int | None = None, delay: float = 0.0,
           sig: int = signal.SIGINT, timeout: float = 3600) -> Invocation:
    """One Snakemake run; with ``stop_after_job`` it is interrupted ``delay`` s after that job starts."""
    inv = Invocation()
    proc = subprocess.Popen(command(folder, target), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    fired = threading.Event()

    def interrupt() -> None:
        time.sleep(delay)
        if proc.poll() is None:
            inv.interrupted_at = time.time()
            os.killpg(proc.pid, sig)

    for line in proc.stdout:  # type: ignore[union-attr]
        if inv.parse(line.rstrip("\n")) and stop_after_job and not fired.is_set() and inv.started >= stop_after_job:
            fired.set()
            threading.Thread(target=interrupt, daemon=True).start()
    try:
        inv.rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        inv.rc = proc.wait()
    if inv.interrupted_at:
        wait_for_group(proc.pid)
        inv.orphans = kill_orphans(folder)
    return inv


def kill_orphans(folder: Path) -> int:
    """Jobs still running in ``folder`` after their Snakemake is gone (outside its process group): kill, count."""
    found = 0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).resolve() == folder.resolve():
                os.kill(int(proc.name), signal.SIGKILL)
                found += 1
        except OSError:
            continue
    return found


def wait_for_group(pgid: int, timeout: float = 120) -> None:
    """After Ctrl-C, wait until every job of the group has exited (SIGKILL the rest after ``timeout``)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)


def mtimes(folder: Path, files: set[str]) -> dict[str, int]:
    out = {}
    for f in files:
        p = folder / f
        if p.exists():
            out[f] = p.stat().st_mtime_ns
    return out


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(ROOT / "config", folder / "config")
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def rerun(folder: Path, target: str, **kw) -> tuple[Invocation, int]:
    """Run again; a lock left by a killed Snakemake is removed with `--unlock` (counted) and the run retried."""
    inv = invoke(folder, target, **kw)
    if inv.rc and any(LOCKED in line for line in inv.lines):
        subprocess.run(command(folder, target, "--unlock"), cwd=ROOT, env=env(), capture_output=True, check=True)
        return invoke(folder, target, **kw), 1
    return inv, 0


def series(folder: Path, target: str, sig: int, interrupts: int, rng: np.random.Generator, total_jobs: int) -> dict:
    fresh(folder)
    history: list[tuple[Invocation, dict[str, int]]] = []
    unlocks, done = 0, 0
    while len(history) < interrupts:
        remaining = max(1, total_jobs - done)
        k = int(rng.integers(1, max(2, remaining // 2 + 1)))
        inv, unlocked = rerun(folder, target, stop_after_job=k, delay=float(rng.uniform(0.5, 5.0)), sig=sig)
        unlocks += unlocked
        if inv.interrupted_at is None:
            break
        done += len(inv.finished)
        history.append((inv, mtimes(folder, inv.files("finished"))))
    final, unlocked = rerun(folder, target)
    unlocks += unlocked
    return {"invocations": history, "final": final, "unlocks": unlocks}


def check_series(folder: Path, result: dict, reference: dict[str, bytes]) -> dict:
    runs = [inv for inv, _ in result["invocations"]] + [result["final"]]
    recomputed, stale_used, mtime_changed = set(), set(), set()
    for i, (inv, stamps) in enumerate(result["invocations"]):
        later = set().union(*(r.files("finished") | r.files("started") for r in runs[i + 1:]))
        recomputed |= inv.files("finished") & later
        now = mtimes(folder, set(stamps))
        mtime_changed |= {f for f, t in stamps.items() if now.get(f) != t}
        left = {f for f in inv.files("started") if (folder / f).exists()}
        # an output a killed job left must be rewritten by a later invocation (newer than the interruption)
        stale_used |= {f for f in left if f not in later or (folder / f).stat().st_mtime < inv.interrupted_at}
    results = tree(folder / "results")
    differing = sorted(k for k in set(results) | set(reference) if results.get(k) != reference.get(k))
    return {"interrupts": len(result["invocations"]), "final_rc": result["final"].rc, "unlocks": result["unlocks"],
            "orphaned_jobs": sum(inv.orphans for inv, _ in result["invocations"]),
            "jobs_started": sum(r.started for r in runs), "recomputed_finished": sorted(recomputed),
            "finished_outputs_touched": sorted(mtime_changed), "killed_outputs_not_redone": sorted(stale_used),
            "results_files": len(results), "results_differing": differing,
            "ok": result["final"].rc == 0 and not (recomputed or mtime_changed or stale_used or differing)}


def run_workflow(work: Path, seed: int, interrupts: int = 3, target: str = "results/table2.csv") -> list[dict]:
    ref_dir = fresh(work / "reference")
    start = time.time()
    ref = invoke(ref_dir, target)
    if ref.rc:
        raise RuntimeError("the uninterrupted workflow run failed:\n" + "\n".join(ref.lines[-40:]))
    reference, total = tree(ref_dir / "results"), ref.started
    rows = [{"mode": "uninterrupted", "jobs": total, "seconds": round(time.time() - start, 1), "ok": True}]
    print(f"workflow uninterrupted: {total} jobs, {rows[0]['seconds']} s", flush=True)
    for s, (name, sig) in enumerate((("SIGINT", signal.SIGINT), ("SIGKILL", signal.SIGKILL))):
        start = time.time()
        result = series(work / name, target, sig, interrupts, np.random.default_rng([seed, s]), total)
        row = {"mode": name, **check_series(work / name, result, reference), "seconds": round(time.time() - start, 1)}
        rows.append(row)
        print(f"workflow {name}: {row['interrupts']} interrupts, {row['jobs_started']} jobs started for {total}, "
              f"recomputed finished {len(row['recomputed_finished'])}, killed outputs not redone "
              f"{len(row['killed_outputs_not_redone'])}, results differing {row['results_differing']}, "
              f"unlocks {row['unlocks']} ({row['seconds']} s)", flush=True)
    return rows
