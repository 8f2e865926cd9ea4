"""The package's shape, checked: imports flow one way (docs/ARCHITECTURE.md), and modules stay small.

Every import counts, including those inside functions: an import hidden in a function is still a
dependency, and hiding one to dodge a cycle is what this test exists to stop.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "cgtrain"

# Lowest first. A module may import its own layer's modules (without cycles) and any lower layer's.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "extras", "fsutil", "plugins", "interrupts", "rundir", "rundir_lock", "quiet"),
    ("features", "engine", "evaluate"),  # building blocks that know nothing of a request
    ("models", "artifacts"),  # model families; safe model files (audited skops)
    ("request",),  # the request schema validates families by their declarations
    ("data",),
    ("core", "serve"),  # prepare / fit / held-out; predictor, inputs, decisions
    ("tune", "registry", "export", "track"),
    ("qa", "report"),
    ("flows", "pretrain"),  # recipes: supervised, unsupervised, automl, compare; pre-training
    ("service", "api", "cli", "__main__", ""),  # entry points ("" is the package's __init__)
]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the cgtrain modules it imports (anywhere in the file)."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                if not t.startswith("cgtrain"):
                    continue
                r = _resolve(t, mods)
                if r and r != mod and not mod.startswith(r + "."):
                    edges[mod].add(r)
    return edges


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_architecture.py LAYERS; place it there and in "
                         f"docs/ARCHITECTURE.md")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
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


def test_the_import_graph_has_no_cycle():
    assert _cycles(import_graph()) == []


def test_every_import_goes_to_the_same_or_a_lower_layer():
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                    for m, targets in import_graph().items() for t in targets if layer_of(t) > layer_of(m))
    assert upward == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The graph would be worthless if a function-level import escaped it."""
    edges = import_graph()
    assert "cgtrain.flows.supervised" in edges["cgtrain.cli.main"]  # imported inside the `train` command


@pytest.mark.parametrize("limit", [MAX_MODULE_LINES])
def test_no_module_is_over_400_lines(limit):
    long = sorted(f"{p.relative_to(ROOT)}: {n}" for p in ROOT.rglob("*.py")
                  if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit)
    assert long == []


def test_no_function_is_over_50_lines():
    long = []
    for p in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert sorted(long) == []
