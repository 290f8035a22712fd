"""The one-way import rule (issue 15), as a ratchet: the known cycles and violations are listed here,
so a new one fails, and so does one fixed without taking it off the list (then shrink the list).
tests/import_graph.py computes the graph; `python tests/import_graph.py` prints it."""
from __future__ import annotations

from pathlib import Path

import import_graph as ig
import pytest

# what issue 15 is to remove; empty lists when it is resolved
KNOWN_CYCLES = [
    ["baselines.common", "baselines.maskgit", "baselines.taming", "nuwa.family", "nuwa.local", "nuwa.nuwa_family"],
    ["metrics.backbones", "metrics.clip", "metrics.i3d", "metrics.inception", "metrics.proxies"],
    ["metrics.cli", "nuwa.bench", "nuwa.bench.ncp_scaling", "nuwa.bench.sampling_speed", "nuwa.cli",
     "nuwa.config_cli", "nuwa.data.cli", "nuwa.generate", "nuwa.report.cli", "nuwa.tokenizer.cli", "nuwa.train"],
]
KNOWN_VIOLATIONS = {
    ("baselines.config", "nuwa.settings"), ("baselines.timing", "nuwa.bench.sampling_speed"),
    ("metrics.cli", "nuwa.cli"), ("metrics.io", "nuwa.inputs"), ("metrics.io", "nuwa.samples"),
    ("nuwa.family", "baselines.maskgit"), ("nuwa.family", "baselines.taming"), ("nuwa.family", "nuwa.nuwa_family"),
}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return ig.graph()


def test_import_cycles_are_the_known_ones(graph):
    assert ig.cycles(graph) == KNOWN_CYCLES


def test_one_way_violations_are_the_known_ones(graph):
    assert ig.violations(graph) == KNOWN_VIOLATIONS


def _graph_of(tmp_path: Path, monkeypatch, files: dict[str, str]) -> dict[str, set[str]]:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    monkeypatch.setattr(ig, "ROOT", tmp_path)
    return ig.graph()


def test_graph_counts_imports_inside_functions_relative_and_registry_strings(tmp_path, monkeypatch):
    g = _graph_of(tmp_path, monkeypatch, {
        "nuwa/__init__.py": "",
        "nuwa/errors.py": "",
        "nuwa/a.py": "def f():\n    from nuwa.b import x\n",
        "nuwa/b.py": "from . import errors\nfrom .errors import UserError\n",
        "nuwa/reg.py": "import importlib\nREG = {'m': 'metrics.m'}\nimportlib.import_module(REG['m'])\n",
        "metrics/__init__.py": "",
        "metrics/m.py": "import nuwa.a\n",
        "baselines/__init__.py": "",
    })
    assert g["nuwa.a"] == {"nuwa.b"}
    assert g["nuwa.b"] == {"nuwa.errors"}
    assert g["nuwa.reg"] == {"metrics.m"}
    assert ig.violations(g) == {("metrics.m", "nuwa.a")}
    assert ig.cycles(g) == []
    g["nuwa.b"].add("nuwa.a")
    assert ig.cycles(g) == [["nuwa.a", "nuwa.b"]]


def test_core_importing_outside_core_is_a_violation():
    g = {"nuwa.errors": {"nuwa.model"}, "nuwa.model": {"nuwa.errors"}, "metrics.fid": {"nuwa.errors"}}
    assert ig.violations(g) == {("nuwa.errors", "nuwa.model")}
