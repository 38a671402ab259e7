"""The layout's rules, measured on the source (issue 25): small modules, no import cycle, no type
switch on concrete problem or model classes outside the files that define them, warnings
silenced in one place.

Import edges count function-local imports and ``from . import name`` of a re-exported name
(an internal that reaches a name through the package facade imports the facade, whose own
imports then close a cycle); ``from . import submodule`` is an edge to that submodule only,
and imports under ``if TYPE_CHECKING:`` do not run and do not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "rankbias"
MAX_LINES = 600
#: Concrete problem and model classes, and the files allowed to switch on them (their own).
CONCRETE = {
    "MatrixCompletion": "problems",
    "MatrixSensing": "problems",
    "MatrixEstimation": "problems",
    "CustomLoss": "problems",
    "SparseCompletion": "dynamics/_sparse",
    "DeepFactorization": "models",
    "SymmetricFactorization": "models",
}
MAX_SIMPLEFILTER = 3


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            out[".".join(parts[:-1])] = (p, True)
        else:
            out[".".join(parts)] = (p, False)
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for n in node.body:
                skip.update(id(k) for k in ast.walk(n))
    return skip


def _edges() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        here = m if is_pkg else m.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for a in node.names:
                    if f"{mod}.{a.name}" in mods:
                        targets.append(f"{mod}.{a.name}")
                    elif mod not in targets:
                        targets.append(mod)
            for t in targets:
                if not t.startswith("rankbias"):
                    continue
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    q = ".".join(parts[:i])
                    # importing a.b.c runs a and a.b first; an ancestor of m is already running
                    if q in mods and q != m and not (i < len(parts) and m.startswith(q + ".")):
                        edges[m].add(q)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_module_is_over_600_lines():
    long = {
        m: n
        for m, (p, _) in _modules().items()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_no_import_cycle():
    cycles = _cycles(_edges())
    assert not cycles, f"import cycles (internals import defining modules): {cycles}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_type_switch_on_concrete_problem_or_model_classes():
    pattern = re.compile(r"isinstance\([^)]*\b(" + "|".join(CONCRETE) + r")\b")
    found = []
    for p, _ in _modules().values():
        rel = str(p.relative_to(PKG).with_suffix(""))
        for i, line in enumerate(p.read_text().splitlines(), 1):
            for cls in pattern.findall(line):
                if not rel.startswith(CONCRETE[cls]):
                    found.append(f"{rel}.py:{i}: {line.strip()}")
    assert not found, "ask the object (a problem or model method) instead:\n" + "\n".join(found)


def test_warnings_are_silenced_in_one_place():
    calls = {
        str(p.relative_to(PKG)): n
        for p, _ in _modules().values()
        if (n := p.read_text().count("simplefilter("))
    }
    assert sum(calls.values()) <= MAX_SIMPLEFILTER, calls
