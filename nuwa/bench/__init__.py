"""`nuwa bench ...`: performance benchmarks (docs/benchmarks.md).

* ``sampling-speed`` (nuwa.bench.sampling_speed): seconds per image and tokens per second of Taming,
  MaskGIT and NUWA-Infinity (each local decoder) in one job, batch 1 and 16;
* ``ncp-scaling`` (nuwa.bench.ncp_scaling): seconds per patch and peak memory as the canvas widens,
  NCP against full context;
* ``nuwa/bench/gpu.sh`` (nuwa.bench.gpu): the GPU figures -- training MFU, decode roofline, and the two above.
"""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from nuwa.bench import ncp_scaling, sampling_speed

    parser = subparsers.add_parser("bench", help="performance benchmarks")
    sub = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    sampling_speed.register(sub)
    ncp_scaling.register(sub)
