"""The unlabelled corpus for pre-training: source files on disk -> documents -> id sequences.

Python files become one document per function (top-level functions and
methods), normalised exactly as `synth-bugs` and `cgtrain predict` normalise
code (re-unparsed, docstrings and comments gone), so the encoder pre-trains on
the text it will later classify. Files in other languages (`extensions`)
become blocks of lines. A dataset file given as a source (`.jsonl`, `.jsonl.gz`: one JSON object
per line) gives one document per row, its `code` field as is: the functions a user trains on,
without their labels (pre-train on the training rows only, never on the rows you test on).
Files are walked in sorted order and, above `max_files`, sampled with the seed (a dataset file
named as a source is always read whole), so one (sources, seed) gives one corpus; the run keeps
it (`save` / `load`), so a resumed run reads the very documents it started with.
"""
from __future__ import annotations

import ast
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import multiprocessing
import os
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from cgtrain.core.threads import usable_cores
from cgtrain.features.codetext import normalise
from cgtrain.fsutil import atomic_write_bytes

CORPUS_FILE = "corpus.json.gz"  # the documents a run started with, so a resume sees the very same
SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", "node_modules", ".tox", ".venv"})
MAX_FILE_BYTES = 1_000_000  # generated tables and vendored bundles teach nothing
MIN_PIECE_TOKENS = 8
PARALLEL_FROM = 400  # files: below this a pool's start costs more than it saves
DATASET_SUFFIXES = (".jsonl", ".jsonl.gz")  # a source file of rows: the `code` field of each is a document
CODE_FIELD = "code"


@dataclass(frozen=True)
class Corpus:
    documents: list[str]
    sources: list[str]       # the roots walked
    n_files: int             # files read
    n_files_skipped: int     # unreadable or unparsable
    n_chars: int


def default_sources() -> list[Path]:
    """The running interpreter's standard library and its site-packages (purelib)."""
    paths = sysconfig.get_paths()
    out = [Path(paths["stdlib"])]
    if paths.get("purelib") and Path(paths["purelib"]).is_dir():
        out.append(Path(paths["purelib"]))
    return out


def source_files(roots: Sequence[Path], extensions: Sequence[str] = ("py",)) -> list[Path]:
    suffixes = tuple(f".{e.lstrip('.')}" for e in extensions)
    files: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            files.append(root)
            continue
        if not root.is_dir():
            raise ValueError(f"--source: {str(root)!r} is not a directory or file; give directories of source code")
        for dirpath, dirnames, filenames in os.walk(root):
            # The stdlib walk must not descend into the site-packages below it (it is its own root).
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and d != "site-packages"
                                 and not d.startswith("."))
            files += [Path(dirpath, f) for f in sorted(filenames) if f.endswith(suffixes)]
    return list(dict.fromkeys(files))


def collect(roots: Sequence[Path], *, max_files: int | None = None, seed: int = 0,
            extensions: Sequence[str] = ("py",), max_lines: int = 120) -> Corpus:
    """Documents from the files under `roots` (duplicates dropped, first seen kept)."""
    datasets = [Path(r) for r in roots if _is_dataset(Path(r))]
    files = source_files([r for r in roots if not _is_dataset(Path(r))], extensions)
    if not files and not datasets:
        raise ValueError(f"--source: no files ending in {', '.join('.' + e for e in extensions)} under "
                         f"{', '.join(map(str, roots))}")
    if max_files is not None and len(files) > max_files:
        files = sorted(random.Random(seed).sample(files, max_files))
    docs, seen, skipped, n_chars = [], set(), 0, 0
    per_file = [_dataset_documents(d) for d in datasets] + _read_all(files, max_lines)
    for got in per_file:
        if got is None:
            skipped += 1
            continue
        for doc in got:
            key = hashlib.sha256(doc.encode("utf-8", "surrogatepass")).digest()
            if key not in seen:
                seen.add(key)
                docs.append(doc)
                n_chars += len(doc)
    if not docs:
        raise ValueError(f"--source: no usable code under {', '.join(map(str, roots))}")
    return Corpus(docs, [str(r) for r in roots], len(files) + len(datasets) - skipped, skipped, n_chars)


def _read_all(files: list[Path], max_lines: int) -> list[list[str] | None]:
    """Each file's documents, in the files' order: parsed by a pool of processes (one per core) when there are
    many files (the parse is pure Python, one core each), so the corpus is the same as a serial read's."""
    workers = min(usable_cores(), 32)
    if workers < 2 or len(files) < PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
        return [_documents(f, max_lines) for f in files]
    # fork: the children need nothing but this module's functions, and nothing has run torch yet
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.starmap(_documents, [(f, max_lines) for f in files], chunksize=16)


def _is_dataset(path: Path) -> bool:
    return path.is_file() and path.name.endswith(DATASET_SUFFIXES)


def _dataset_documents(path: Path) -> list[str]:
    """The non-empty `code` field of each row of a JSON-lines file (gzip by its suffix); a row that is not a
    JSON object with a string `code` is an error naming the file and line: a wrong file, not a bad row."""
    opener = gzip.open if path.name.endswith(".gz") else open
    out = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"--source: {path} line {line_no} is not JSON ({exc.msg}); give a JSON-lines "
                                     f"file with a {CODE_FIELD!r} field per row") from None
                code = row.get(CODE_FIELD) if isinstance(row, dict) else None
                if not isinstance(code, str):
                    raise ValueError(f"--source: {path} line {line_no} has no string {CODE_FIELD!r} field; give a "
                                     f"JSON-lines file with the code of each row in {CODE_FIELD!r}")
                if code.strip():
                    out.append(code.strip())
    except (OSError, UnicodeError, EOFError) as exc:
        raise ValueError(f"--source: {path} cannot be read as {'gzip ' if opener is gzip.open else ''}JSON lines "
                         f"({exc}); give a .jsonl or .jsonl.gz file") from None
    return out


def save(corpus: Corpus, path: Path) -> None:
    atomic_write_bytes(path, gzip.compress(json.dumps(dataclasses.asdict(corpus)).encode("utf-8"), mtime=0))


def load(path: Path) -> Corpus:
    return Corpus(**json.loads(gzip.decompress(path.read_bytes()).decode("utf-8")))


def _documents(path: Path, max_lines: int) -> list[str] | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    if path.suffix != ".py":
        text = raw.decode("utf-8", "replace")
        lines = text.split("\n")
        return [b for b in ("\n".join(lines[i:i + max_lines]).strip() for i in range(0, len(lines), max_lines)) if b]
    try:
        text = importlib.util.decode_source(raw)
        tree = ast.parse(text)
    except (SyntaxError, ValueError, UnicodeError, RecursionError, MemoryError):
        return None
    lines = text.split("\n")
    out = []
    for node in _functions(tree):
        start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        segment = "\n".join(lines[start - 1:node.end_lineno])
        try:
            out.append(normalise(_dedent(segment)))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return out


def _functions(tree: ast.Module) -> Iterable[ast.AST]:
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, kinds):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from (item for item in node.body if isinstance(item, kinds))


def _dedent(segment: str) -> str:
    # A method is indented: parse it inside `if 1:` (as synth-bugs does) and unparse the def alone.
    if segment[:1] not in (" ", "\t"):
        return segment
    return ast.unparse(ast.parse(f"if 1:\n{segment}").body[0].body[0])


# --- documents -> id sequences ---------------------------------------------------------
def to_sequences(tokenizer, documents: Sequence[str], seq_len: int, batch: int = 2000) -> list[torch.Tensor]:
    """[CLS] piece [SEP] rows of at most seq_len ids: a long document is cut into consecutive pieces;
    pieces shorter than MIN_PIECE_TOKENS are dropped."""
    body = seq_len - 2
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out: list[torch.Tensor] = []
    for i in range(0, len(documents), batch):
        ids = tokenizer(list(documents[i:i + batch]), add_special_tokens=False, truncation=False,
                        verbose=False)["input_ids"]
        for row in ids:
            for j in range(0, len(row), body):
                piece = row[j:j + body]
                if len(piece) >= MIN_PIECE_TOKENS:
                    out.append(torch.tensor([cls, *piece, sep], dtype=torch.long))
    return out


def split_held_out(seqs: list[torch.Tensor], fraction: float, seed: int,
                   max_held_out: int = 256) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(train, held-out): a seeded sample of the sequences, at least one when there are two or more."""
    n = len(seqs)
    k = min(max_held_out, int(round(n * fraction))) if n >= 2 else 0
    k = max(k, 1) if n >= 2 and fraction > 0 else k
    held = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist()) if k else set()
    return [s for i, s in enumerate(seqs) if i not in held], [s for i, s in enumerate(seqs) if i in held]
