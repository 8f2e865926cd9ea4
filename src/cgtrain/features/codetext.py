"""Small functions over Python source text shared by data generation, models and prediction:
a canonical form of a function (`normalise`) and where two versions of it differ (`bug_location`)."""
from __future__ import annotations

import ast
import warnings
from typing import Sequence

import numpy as np


_FUNC_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)


def normalise(func_source: str) -> str:
    """Canonical text of a function: re-unparsed, docstrings removed, `a or (b or c)` flattened."""
    return ast.unparse(_normal_tree(_parse(func_source)))


def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes etc. in old code are not our concern
        return ast.parse(source)


def _normal_tree(tree: ast.AST) -> ast.AST:
    """Strip docstrings and flatten nested same-op BoolOps, in place (one walk: speed)."""
    for node in ast.walk(tree):
        if isinstance(node, (*_FUNC_TYPES, ast.ClassDef)):
            while node.body and _is_string_stmt(node.body[0]):
                node.body.pop(0)
            node.body = node.body or [ast.Pass()]
        elif isinstance(node, ast.BoolOp):
            # An and/or swap can nest a BoolOp in one of the same kind, which unparse prints
            # with parentheses real code rarely has: a label leak. Flatten clean code too.
            node.values = _flat_values(node)
    return tree


def _flat_values(node: ast.BoolOp) -> list[ast.expr]:
    out: list[ast.expr] = []
    for v in node.values:
        same = isinstance(v, ast.BoolOp) and type(v.op) is type(node.op)
        out.extend(_flat_values(v) if same else [v])
    return out


def _is_string_stmt(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


_OPERATOR_CHARS = frozenset("<>=!+-*/%&|^~@")


def _char_class(c: str) -> int:
    return 1 if c.isalnum() or c == "_" else 2 if c in _OPERATOR_CHARS else 0


def bug_location(clean: str, mutant: str) -> tuple[int, int, int]:
    """Where `mutant` differs from `clean`: (1-based line, start, end) with [start, end) character offsets
    into `mutant`, widened to whole names / numbers / operators (`<` -> `<=` marks `<=`)."""
    n = min(len(clean), len(mutant))
    start = next((i for i in range(n) if clean[i] != mutant[i]), n)
    tail = next((i for i in range(n - start) if clean[-1 - i] != mutant[-1 - i]), n - start)
    end = max(start, len(mutant) - tail)
    if start == end:  # a pure deletion: mark the token it cut (`<=` -> `<`), else the next (`not x` -> `x`)
        if not (start > 0 and _char_class(mutant[start - 1])):
            while start < len(mutant) and mutant[start].isspace():
                start += 1
        start = start - 1 if start == len(mutant) or (start > 0 and _char_class(mutant[start - 1])) else start
        start = max(0, start)
        end = min(len(mutant), start + 1)
    while start > 0 and _char_class(mutant[start - 1]) and _char_class(mutant[start - 1]) == _char_class(mutant[start]):
        start -= 1
    while end < len(mutant) and _char_class(mutant[end]) and _char_class(mutant[end]) == _char_class(mutant[end - 1]):
        end += 1
    while start < end and mutant[start].isspace():
        start += 1
    while end > start and mutant[end - 1].isspace():
        end -= 1
    return mutant.count("\n", 0, start) + 1, start, end


def find_twins(codes: Sequence[str], y: np.ndarray) -> dict[int, int]:
    """flawed row -> its clean twin: same line count, exactly one line different."""
    lines = [c.split("\n") for c in codes]
    hashes = [[hash(s) for s in ls] for ls in lines]
    clean_keys: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(y == 0):
        h = hashes[i]
        for j in range(len(h)):
            clean_keys.setdefault((len(h), j, tuple(h[:j]), tuple(h[j + 1:])), []).append(int(i))
    twins = {}
    for i in np.flatnonzero(y == 1):
        h = hashes[i]
        found = [(_shared(lines[c][j], lines[i][j]), -c) for j in range(len(h))
                 for c in clean_keys.get((len(h), j, tuple(h[:j]), tuple(h[j + 1:])), ()) if lines[c][j] != lines[i][j]]
        if found:  # several clean rows fit (functions alike but for that line): the closest line wins
            twins[int(i)] = -max(found)[1]
    return twins


def _shared(a: str, b: str) -> int:
    """Length of the common prefix plus the common suffix of two lines."""
    n = min(len(a), len(b))
    p = next((k for k in range(n) if a[k] != b[k]), n)
    s = next((k for k in range(n - p) if a[-1 - k] != b[-1 - k]), n - p)
    return p + s
