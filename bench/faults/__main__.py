"""`python -m bench.faults`: the fault-injection suite; prints the figures of docs/reliability.md.

    python -m bench.faults [--work DIR] [--seed S] [--kills N] [--interrupts N] [--only PART,...] [--json OUT]

Parts: kills (SIGKILL of training), workflow (SIGINT/SIGKILL of Snakemake on config/ci.yaml),
corrupt (damaged intermediate files), enospc (full disk), concurrent (two processes, one work
directory), inputs (the bad-input matrix). Every random choice (kill moments, jobs, byte offsets,
free space) comes from numpy generators seeded with ``[seed, case]``; the seed is printed first so
a failing run can be replayed. ``enospc`` mounts tmpfs and needs root. Exit status 1 if any check failed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PARTS = ("kills", "corrupt", "enospc", "concurrent", "inputs", "workflow")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("work/faults"), help="scratch folder (default work/faults)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs per training target (default 10)")
    p.add_argument("--interrupts", type=int, default=3, help="interruptions per Snakemake series (default 3)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts (default: {','.join(PARTS)})")
    p.add_argument("--json", type=Path, default=None, help="write every row and the summary as JSON")
    return p.parse_args(argv)


def run_part(name: str, args: argparse.Namespace) -> list[dict]:
    from bench.faults import corrupt, disk, inputs, kills, workflow
    from bench.faults.lab import Lab

    work = args.work.resolve()
    if name == "workflow":
        return workflow.run_workflow(work / "workflow", args.seed, args.interrupts)
    lab = Lab(work / "lab").build()
    if name == "kills":
        return kills.run_kills(lab, work / "kills", args.seed, args.kills)
    if name == "corrupt":
        return corrupt.run_corruptions(lab, work / "corrupt", args.seed)
    if name == "enospc":
        return disk.run_enospc(lab, work / "enospc", args.seed)
    if name == "concurrent":
        return disk.run_concurrent(lab, work / "concurrent", args.seed)
    return inputs.run_inputs(lab, work / "inputs")


def main(argv: list[str] | None = None) -> int:
    from nuwa.core.io import write_json

    args = parse(argv)
    parts = [p for p in args.only.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"error: unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    print(f"fault-injection suite: seed {args.seed}, parts {', '.join(parts)}, work {args.work}", flush=True)
    report: dict = {"seed": args.seed, "kills_per_target": args.kills, "interrupts_per_series": args.interrupts}
    for name in parts:
        start = time.time()
        rows = run_part(name, args)
        report[name] = {"rows": rows, "checks": len(rows), "failed": sum(not r["ok"] for r in rows),
                        "seconds": round(time.time() - start, 1)}
        print(f"== {name}: {len(rows) - report[name]['failed']}/{len(rows)} green ({report[name]['seconds']} s)",
              flush=True)
    if args.json:
        write_json(args.json, report)
    failed = sum(report[n]["failed"] for n in parts)
    print(f"fault-injection suite: {'all green' if not failed else f'{failed} FAILED'} (seed {args.seed})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
