"""Syntax-tree context of each token of a Python function, for bug spotting (standard library `ast`).

A token's neighbours in the text say little about what it stands between when the operands are long:
in `if self.count + offset < len(items):` the `<` compares a sum with a call to `len`, whatever the
tokens right beside it. Each token is placed in the tree: the node it belongs to (for a name or a
constant, its parent node, and which field of it the name fills: `Compare.left`, `Call.args#1`,
`Subscript.slice`, ...), where that node hangs in its own parent (`If.test`, `Return.value`), and a
short description of the operands to its left and right (`Call:len`, `Name`, `Constant:0`,
`BinOp`). The descriptions are of the tree's shape, never of a bug: they read the same in any code.
Code that does not parse gets no tree context (the other features still describe it).
"""
from __future__ import annotations

import ast
import bisect
import warnings
from typing import Sequence

NONE = ("", "", "", "", "")  # no tree context: (node, field, node's place, left operand, right operand)
_SMALL = {0, 1, 2, -1, True, False, None, ""}


def _parse(code: str) -> ast.AST | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None


def describe(node: ast.AST | None) -> str:
    """A short, name-free description of an operand: its node type, a call's callee, a small constant."""
    if node is None:
        return "^"
    if isinstance(node, ast.Call):
        f = node.func
        return "Call:" + (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "?")
    if isinstance(node, ast.Constant):
        v = node.value
        small = isinstance(v, (int, bool, str, type(None))) and not isinstance(v, float) and v in _SMALL
        return f"Constant:{v!r}" if small else f"Constant:{type(v).__name__}"
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return "Constant:neg"
    return type(node).__name__


class _Spans:
    """Character spans of nodes (ast gives line numbers and UTF-8 byte columns)."""

    def __init__(self, code: str):
        self.lines = code.splitlines(keepends=True) or [""]
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, line: int, col: int) -> int:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if not text.isascii():
            col = len(text.encode("utf-8")[:col].decode("utf-8", errors="ignore"))
        return self.starts[min(max(line - 1, 0), len(self.lines))] + col

    def span(self, node: ast.AST) -> tuple[int, int] | None:
        if getattr(node, "end_lineno", None) is None or getattr(node, "lineno", None) is None:
            return None
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)


def _links(tree: ast.AST, spans: _Spans):
    """Each positioned node's span, parent and field name (`args#1` for the second argument)."""
    span, parent, field = {}, {}, {}
    for node in ast.walk(tree):
        s = spans.span(node)
        if s is not None:
            span[node] = s
        for name, value in ast.iter_fields(node):
            items = value if isinstance(value, list) else [value]
            for k, child in enumerate(items):
                if isinstance(child, ast.AST):
                    parent[child], field[child] = node, f"{name}#{min(k, 3)}" if isinstance(value, list) else name
    return span, parent, field


def _children(node: ast.AST, span: dict) -> list[ast.AST]:
    return sorted((c for c in ast.iter_child_nodes(node) if c in span), key=lambda c: span[c])


def _context(x: ast.AST, s: int, e: int, span, parent, field) -> tuple[str, str, str, str, str]:
    if span[x] == (s, e) and x in parent:  # a whole leaf (a name, a constant): seen from its parent
        c, fld = parent[x], field[x]
        sibs = _children(c, span)
        k = sibs.index(x) if x in sibs else -1
        left = sibs[k - 1] if k > 0 else None
        right = sibs[k + 1] if 0 <= k < len(sibs) - 1 else None
    else:  # an operator or keyword of x itself, between two of its children
        c, fld = x, "op"
        kids = _children(x, span)
        left = next((k for k in reversed(kids) if span[k][1] <= s), None)
        right = next((k for k in kids if span[k][0] >= e), None)
    up = f"{type(parent[c]).__name__}.{field[c]}" if c in parent else "^"
    return type(c).__name__, fld, up, describe(left), describe(right)


def tree_contexts(code: str, bounds: Sequence[tuple[int, int]]) -> list[tuple[str, str, str, str, str]]:
    """Per token (given by its character span in `code`): (node type, field, the node's place in its
    parent, left operand, right operand), or `NONE` where the code does not parse."""
    tree = _parse(code)
    if tree is None or not bounds:
        return [NONE] * len(bounds)
    spans = _Spans(code)
    span, parent, field = _links(tree, spans)
    starts = [s for s, _ in bounds]
    deepest: list[ast.AST | None] = [None] * len(bounds)
    for node in ast.walk(tree):  # breadth first: a deeper node overwrites its ancestors
        if node not in span or isinstance(node, (ast.Module, ast.expr_context)):
            continue
        s, e = span[node]
        for k in range(bisect.bisect_left(starts, s), len(bounds)):
            if bounds[k][0] >= e:
                break
            if bounds[k][1] <= e:
                deepest[k] = node
    return [NONE if x is None else _context(x, s, e, span, parent, field)
            for x, (s, e) in zip(deepest, bounds)]


def tree_strings(context: tuple[str, ...], text: str, role: str) -> list[str]:
    """The features of a token `text` (of role `role`) at a place with this tree context."""
    node, fld, up, left, right = context
    if not node:
        return []
    return [f"tn={node}|{fld}|{text}", f"tu={up}|{node}|{fld}|{role}", f"tlr={left}|{text}|{right}",
            f"tlrR={node}|{left}|{role}|{right}", f"tl={node}|{left}|{text}", f"tr={node}|{text}|{right}"]
