"""The one-way import rule (issue 15): no import cycles, counting imports inside functions, and every
module imports only the rooms its own room may (tests/import_graph.py computes the graph;
`python tests/import_graph.py` prints it)."""
from __future__ import annotations

from pathlib import Path

import import_graph as ig
import pytest


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return ig.graph()


def test_the_suite_has_no_import_cycle(graph):
    assert ig.cycles(graph) == []


def test_every_import_goes_one_way(graph):
    assert ig.violations(graph) == set()


def test_the_rooms_are_where_the_layout_says(graph):
    assert {ig.room(m) for m in graph} == {"core", "model", "baselines", "metrics", "top"}
    assert ig.room("nuwa.core.transformer") == "core" and ig.room("nuwa.model.ncp") == "model"
    assert ig.room("nuwa.commands.cli") == "top" and ig.room("nuwa.plan") == "top"
    assert ig.room("nuwa.corelike") == "top"  # a prefix of a name is not its package


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


def test_a_room_importing_a_room_it_may_not_is_a_violation():
    g = {"nuwa.core.errors": {"nuwa.model.adc"}, "nuwa.model.adc": {"nuwa.core.errors"},
         "nuwa.model.ncp": {"baselines.common", "nuwa.commands.cli"}, "metrics.fid": {"nuwa.core.errors"},
         "baselines.common": {"nuwa.model.decoder", "metrics.fid"}, "nuwa.commands.cli": {"metrics.fid", "nuwa.model.adc"}}
    assert ig.violations(g) == {("nuwa.core.errors", "nuwa.model.adc"), ("nuwa.model.ncp", "baselines.common"),
                                ("nuwa.model.ncp", "nuwa.commands.cli"), ("baselines.common", "nuwa.model.decoder"),
                                ("baselines.common", "metrics.fid")}
