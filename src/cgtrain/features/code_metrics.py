"""Cheap structural metrics computed from a token doc (see tokenizer.token_doc).

Counts are log1p-scaled so every column stays roughly O(1). Token docs carry no
indentation, so the nesting metrics only see braces/brackets (0 for Python).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

METRIC_NAMES: tuple[str, ...] = (
    "tokens",  # log1p(token count)
    "distinct_ratio",  # distinct tokens / tokens
    "calls",  # name followed by "(" (a C function definition counts once)
    "branches",  # if/else/elif/switch/case/while/for/do and ternary "?"
    "nesting",  # max {} depth
    "bracket_nesting",  # max ()/[] depth
    "comparisons",
    "arithmetic",
    "numbers",  # numeric literals (kept small ints, <num>, <float>)
    "strings",  # <str> and <chr>
    "pointer_ops",  # "*", "->", "["
    "returns",
)

_BRANCH = frozenset("if else elif switch case while for do ?".split())
_COMPARE = frozenset("== != < > <= >= === !== <=>".split())
_ARITH = frozenset("+ - * / % ++ -- += -= *= /= %= ** // << >> <<= >>= **= //=".split())
_POINTER = frozenset("* -> [".split())
_LITERAL_NUM = frozenset(("<num>", "<float>"))
_LITERAL_STR = frozenset(("<str>", "<chr>"))
# Words that precede "(" without being a call.
_NOT_CALL = frozenset(
    """if elif while for switch return sizeof catch and or not in is assert del
    print with except lambda yield await typeof alignof decltype noexcept""".split()
)
_IDX = {name: i for i, name in enumerate(METRIC_NAMES)}
_OPEN = {"{": 0, "(": 1, "[": 1}
_CLOSE = {"}": 0, ")": 1, "]": 1}


def _category_counts(counts: Counter, out: np.ndarray) -> None:
    for tok, n in counts.items():
        if tok in _BRANCH:
            out[_IDX["branches"]] += n
        if tok in _COMPARE:
            out[_IDX["comparisons"]] += n
        if tok in _ARITH:
            out[_IDX["arithmetic"]] += n
        if tok in _POINTER:
            out[_IDX["pointer_ops"]] += n
        if tok in _LITERAL_NUM or tok.isdigit():
            out[_IDX["numbers"]] += n
        elif tok in _LITERAL_STR:
            out[_IDX["strings"]] += n
        elif tok == "return":
            out[_IDX["returns"]] += n


def _max_depths(toks: list[str]) -> tuple[int, int]:
    """Max depth of {} and of ()/[] together; stray closers do not go below 0."""
    depth, best = [0, 0], [0, 0]
    for tok in toks:
        if tok in _OPEN:
            k = _OPEN[tok]
            depth[k] += 1
            best[k] = max(best[k], depth[k])
        elif tok in _CLOSE:
            k = _CLOSE[tok]
            depth[k] = max(depth[k] - 1, 0)
    return best[0], best[1]


def _calls(toks: list[str]) -> int:
    n = 0
    for i, tok in enumerate(toks):
        if tok == "(" and i:
            prev = toks[i - 1]
            if (prev[0].isalpha() or prev[0] == "_") and prev not in _NOT_CALL:
                n += 1
    return n


def token_metrics(doc: str) -> np.ndarray:
    """Metrics of one token doc, float64, in METRIC_NAMES order."""
    out = np.zeros(len(METRIC_NAMES), dtype=np.float64)
    toks = doc.split()
    if not toks:
        return out
    counts = Counter(toks)
    _category_counts(counts, out)
    out[_IDX["tokens"]] = len(toks)
    out[_IDX["calls"]] = _calls(toks)
    brackets = [t for t in toks if t in _OPEN or t in _CLOSE]
    out[_IDX["nesting"]], out[_IDX["bracket_nesting"]] = _max_depths(brackets)
    out = np.log1p(out)
    out[_IDX["distinct_ratio"]] = len(counts) / len(toks)
    return out


def metrics_matrix(docs: Sequence[str]) -> np.ndarray:
    """(n_docs, len(METRIC_NAMES)) float64 matrix of token_metrics."""
    out = np.zeros((len(docs), len(METRIC_NAMES)), dtype=np.float64)
    for i, doc in enumerate(docs):
        out[i] = token_metrics(doc)
    return out
