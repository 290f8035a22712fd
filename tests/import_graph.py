"""The suite's import graph, counting imports inside functions (issue 15's one-way rule).

    python tests/import_graph.py           # layers, cycles and one-way violations, a line each

Nodes are the modules of nuwa/, baselines/ and metrics/ (a package is its ``__init__``); an edge
a -> b means module a imports b somewhere in its source, at the top or inside a function. Rules:

* no cycles (strongly connected components of more than one module);
* every module lives in a room (:func:`room`) and imports only the rooms ``ALLOWED`` to it: the
  shared core (nuwa/core/) nothing but itself; NUWA-Infinity (nuwa/model/), baselines/ and metrics/
  only the core and themselves; the rest of nuwa/ (commands, data, tokenizer, report, bench, the
  workflow plan) sits on top and may import any room.

tests/test_architecture.py holds the current violations as an explicit list, so a new one fails
the tests, and so does one that was fixed without taking it off the list.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nuwa", "baselines", "metrics")
# room -> the rooms its modules may import; "top" (commands, data, tokenizer, report, bench, plan) may import all
ALLOWED = {
    "core": {"core"},             # nuwa/core/: errors, io, config, checkpoint, trainer, family protocol,
    #                               sampling, text, sample folders, the one transformer core
    "model": {"core", "model"},   # nuwa/model/: NUWA-Infinity as the paper names it
    "baselines": {"core", "baselines"},
    "metrics": {"core", "metrics"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
            if "vendor" not in p.relative_to(ROOT).parts}


def resolve(name: str, known: set[str]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules (``a.b.c`` may be module a.b's member c)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``module`` imports anywhere in its source; in a module that calls
    ``importlib.import_module``, every string constant naming one of our submodules counts too
    (registries of commands and model families)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    dynamic = any(isinstance(n, ast.Attribute | ast.Name) and getattr(n, "attr", getattr(n, "id", "")) == "import_module"
                  for n in ast.walk(tree))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {resolve(a.name, known) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
            # `from a import b`: submodule a.b when there is one, else module a
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else resolve(base, known) for a in node.names}
        elif dynamic and isinstance(node, ast.Constant) and node.value in known and "." in node.value:
            found.add(node.value)
    found.discard(None)
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(m, p, known) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(g)))
    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(found)


def room(module: str) -> str:
    """core, model, baselines, metrics, or top (the rest of nuwa/)."""
    for prefix, name in (("nuwa.core", "core"), ("nuwa.model", "model"), ("baselines", "baselines"),
                         ("metrics", "metrics")):
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "top"


def violations(g: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Edges that break the one-way rule: a module importing a room its own room may not import."""
    return {(a, b) for a, targets in g.items() for b in targets
            if room(a) in ALLOWED and room(b) not in ALLOWED[room(a)]}


def main() -> int:
    g = graph()
    found_cycles, bad = cycles(g), violations(g)
    print(f"{len(g)} modules, {sum(map(len, g.values()))} imports")
    for c in found_cycles:
        print("cycle:", " <-> ".join(c))
    for a, b in sorted(bad):
        print(f"one-way violation: {a} -> {b}")
    return 1 if found_cycles or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
