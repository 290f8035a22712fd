"""`python -m baselines.timing`: kept as an alias of `nuwa bench sampling-speed --preset embedded` at batch 1.

    python -m baselines.timing [--taming CKPT] [--maskgit CKPT] [--nuwa CKPT] [--n 3] [--width-factor 4]
                               [--seed 0] [--json OUT] [--config YAML] [--set KEY=VALUE]

``--n`` is ``--repeats`` and ``--width-factor`` is ``--widths`` there; see nuwa.bench.sampling_speed.
"""
from __future__ import annotations

import argparse

from nuwa.bench import sampling_speed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baselines.timing", description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="3")
    parser.add_argument("--width-factor", default="4")
    known, rest = parser.parse_known_args(argv)
    return sampling_speed.main(["--preset", "embedded", "--batches", "1", "--repeats", known.n,
                                "--widths", known.width_factor, *rest])


if __name__ == "__main__":
    raise SystemExit(main())
