"""Deterministic synthetic bug-detection data from real Python source (DeepBugs/BugLab style).

Every real function yields a clean row (label 0) and one copy with exactly one injected bug
(label 1). Both go through the same normaliser, so formatting, comments and docstrings carry
no label information. Both rows share `pair` (the function's id); a mutant records where the
bug is: `bug_line` (1-based) and `bug_start` / `bug_end` (character offsets into its `code`,
widened to whole tokens); they are null on clean rows. Sources: one directory or several
(`--source DIR --source DIR2`), by default the standard library.

This module finds the functions and writes the rows; the bug kinds and their injection live in
`cgtrain.data.synth_mutations` (its public names are importable from here too).
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import math
import os
import random
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from cgtrain.data.synth_mutations import (  # the public names live on here too
    BUG_KINDS, _FUNC_TYPES, _Site, _collect_sites, _compiles, _inject, _is_string_stmt, _normal_tree,
    _parse, _parse_func, applicable_kinds, mutate, normalise,
)
from cgtrain.features.codetext import bug_location
from cgtrain.fsutil import atomic_write_text

__all__ = ["BUG_KINDS", "SynthStats", "applicable_kinds", "bug_location", "generate_rows", "mutate", "normalise",
           "write_dataset"]

_SKIP_DIRS = frozenset({"site-packages", "test", "tests", "idle_test", "__pycache__"})
_MIN_BODY_LINES, _MAX_BODY_LINES = 3, 80


@dataclass(frozen=True)
class SynthStats:
    n_functions: int      # clean functions written
    n_buggy: int          # mutated functions written
    n_files_read: int
    n_files_skipped: int  # unreadable / unparsable source files
    by_kind: dict[str, int]


@dataclass
class _Counts:
    n_functions: int = 0
    n_buggy: int = 0
    n_files_read: int = 0
    n_files_skipped: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {k: 0 for k in BUG_KINDS})


@dataclass(frozen=True)
class _Candidate:
    id: str       # "<module>:<qualname>"
    group: str    # dotted module name
    source: str   # file path relative to the source root
    segment: str  # the function's source lines, decorators included, still indented


def _resolve_roots(source_dir) -> list[tuple[Path, list[Path]]]:
    """(root, its source files) per directory; `source_dir` is one directory, several, or None (the stdlib)."""
    if isinstance(source_dir, (list, tuple)):
        if not source_dir:
            return [_resolve_root(None)]
        return [_resolve_root(d) for d in dict.fromkeys(Path(d) for d in source_dir)]
    return [_resolve_root(source_dir)]


def _resolve_root(source_dir: str | Path | None) -> tuple[Path, list[Path]]:
    root = Path(source_dir) if source_dir is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise ValueError(f"source directory does not exist or is not a directory: {root}")
    files = _source_files(root)
    if not files:
        raise ValueError(f"no Python source files found under {root}")
    return root, files


def _source_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)  # sorted: deterministic
        files += [Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return files


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _candidates(root: Path, files: list[Path], counts: _Counts, seen: set[str]) -> list[_Candidate]:
    out: list[_Candidate] = []
    for path in files:
        try:
            text = importlib.util.decode_source(path.read_bytes())  # PEP 263 + newlines
            tree = _parse(text)
        except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
            counts.n_files_skipped += 1
            continue
        counts.n_files_read += 1
        lines = text.split("\n")
        rel = path.relative_to(root)
        group = _module_name(rel)
        for qualname, node in _functions(tree):
            if not _size_ok(node):
                continue
            cid, k = f"{group}:{qualname}", 2
            while cid in seen:  # redefinitions (e.g. property setters) share a qualname
                cid, k = f"{group}:{qualname}#{k}", k + 1
            seen.add(cid)
            # Keep source text, not the AST: millions of live AST nodes make every later
            # cyclic-GC pass crawl (measured ~7x slower parsing in the row phase).
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            segment = "\n".join(lines[start - 1:node.end_lineno])
            out.append(_Candidate(cid, group, rel.as_posix(), segment))
    return out


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in tree.body:
        if isinstance(node, _FUNC_TYPES):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, _FUNC_TYPES):
                    yield f"{node.name}.{item.name}", item


def _size_ok(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    body = node.body[1:] if _is_string_stmt(node.body[0]) else node.body
    if not body:
        return False
    lines = body[-1].end_lineno - body[0].lineno + 1
    return _MIN_BODY_LINES <= lines <= _MAX_BODY_LINES


def _func_rng(seed: int, cid: str) -> random.Random:
    # sha256, not hash(): str hashes are salted per process.
    digest = hashlib.sha256(f"{seed}:{cid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _clean_func(segment: str) -> tuple[str, ast.AST] | None:
    # A method is indented: parsing it inside `if 1:` keeps its text intact, where
    # textwrap.dedent would mangle multi-line strings. unparse then emits a top-level def.
    wrapped = segment[:1] in (" ", "\t")
    try:
        body = _parse(f"if 1:\n{segment}" if wrapped else segment).body
        node = body[0].body[0] if wrapped else body[0]
        clean = ast.unparse(_normal_tree(node))
        func = _parse_func(clean)
    except (SyntaxError, ValueError, RecursionError, IndexError, AttributeError):
        return None
    # A mutant takes one more parse/unparse round trip than its clean text; require a fixed
    # point so that round trip cannot change formatting elsewhere and leak the label.
    if ast.unparse(func) != clean or not _compiles(func):
        return None
    return clean, func


def _pick_mutant(clean: str, func: ast.AST, rng: random.Random, by_kind: dict[str, int],
                 seen: set[str]) -> tuple[str, str] | None:
    sites: dict[str, list[_Site]] | None = _collect_sites(func)
    kinds = [k for k in BUG_KINDS if sites[k]]
    # Weighted shuffle (Efraimidis-Spirakis, in log space), weight 1/(1 + uses so far)**2:
    # kinds that apply almost everywhere (variable_misuse) would otherwise crowd out the rest.
    order = sorted(kinds, key=lambda k: math.log(1.0 - rng.random()) * (1 + by_kind[k]) ** 2,
                   reverse=True)
    for kind in order:  # later kinds are fallbacks when a mutant is a duplicate
        if sites is None:  # the previous attempt mutated the tree in place
            func = _parse_func(clean)
            sites = _collect_sites(func)
        mutant = _inject(clean, func, sites[kind], rng)
        sites = None
        if mutant is not None and mutant not in seen:
            return kind, mutant
    return None


def _rows(seed: int, max_functions: int, roots: list[tuple[Path, list[Path]]],
          counts: _Counts) -> Iterator[dict]:
    ids: set[str] = set()  # shared: two roots with a module of the same name get distinct ids
    candidates = [c for root, files in roots for c in _candidates(root, files, counts, ids)]
    random.Random(seed).shuffle(candidates)  # unbiased pick from ALL candidates
    seen: set[str] = set()
    for cand in candidates:
        if counts.n_functions >= max_functions:
            return
        pair = _clean_func(cand.segment)
        if pair is None or pair[0] in seen:
            continue
        clean, func = pair
        picked = _pick_mutant(clean, func, _func_rng(seed, cand.id), counts.by_kind, seen)
        if picked is None:
            continue  # no usable mutant: drop the clean row too, keeping labels balanced
        kind, mutant = picked
        seen.update((clean, mutant))
        counts.n_functions += 1
        counts.n_buggy += 1
        counts.by_kind[kind] += 1
        base = {"group": cand.group, "source": cand.source, "pair": cand.id}
        line, start, end = bug_location(clean, mutant)
        yield {"id": f"{cand.id}:clean", "code": clean, "label": 0, "bug_kind": "none", **base,
               "bug_line": None, "bug_start": None, "bug_end": None}
        yield {"id": f"{cand.id}:{kind}:0", "code": mutant, "label": 1, "bug_kind": kind, **base,
               "bug_line": line, "bug_start": start, "bug_end": end}


def generate_rows(seed: int = 0, max_functions: int = 5000,
                  source_dir: str | Path | Sequence[str | Path] | None = None) -> Iterator[dict]:
    """Clean/mutant row pairs; `max_functions` caps the clean functions. Raises ValueError
    immediately (not on first iteration) for a missing or Python-free `source_dir`."""
    return _generate(seed, max_functions, source_dir, _Counts())


def _generate(seed: int, max_functions: int, source_dir: str | Path | None,
              counts: _Counts) -> Iterator[dict]:
    if max_functions < 0:
        raise ValueError(f"max_functions must be >= 0, got {max_functions}")
    return _rows(seed, max_functions, _resolve_roots(source_dir), counts)


def write_dataset(out_path: str | Path, seed: int = 0, max_functions: int = 5000,
                  source_dir: str | Path | Sequence[str | Path] | None = None) -> SynthStats:
    """Write the rows as JSONL atomically (temp file + fsync + rename) and return stats."""
    counts = _Counts()
    lines = [json.dumps(row, ensure_ascii=False) + "\n"
             for row in _generate(seed, max_functions, source_dir, counts)]
    atomic_write_text(out_path, "".join(lines))
    return SynthStats(**asdict(counts))