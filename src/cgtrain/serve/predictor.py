"""Predictions from a trained run: probability and label per function (per table row, a value,
an anomaly score or a cluster id for the other tasks: see `cgtrain.predict_rows`)."""
from __future__ import annotations

import ast
import gzip
import json
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from cgtrain.errors import PredictInputError
from cgtrain.artifacts.files import UnsafeModelError, load_model, load_run_model
from cgtrain import rundir
from cgtrain.features.codetext import normalise
from cgtrain.serve.rows import needs_rows
from cgtrain.serve.rows import predict_rows
from cgtrain.serve.rows import read_table_rows
from cgtrain.serve.rows import table_featurizer

STDIN = "-"
DEFAULT_MAX_CODE_CHARS = 200_000  # DatasetConfig's default, for a model file without its run's request
BYTES_PER_CHAR = 4  # a file over 4 bytes per allowed char is surely too long: not read (as in training)
TABLE_FILE_FACTOR = 1000  # a table file may hold many rows; bounded all the same
SOURCE_SUFFIXES = {".py", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".java", ".js", ".ts", ".go", ".rs", ".cs",
                   ".php", ".rb", ".kt", ".swift", ".scala"}


@dataclass(frozen=True)
class Predictor:
    model: Any
    classes: list
    code_column: str | None = "code"
    id_column: str | None = "id"
    task: str | None = None  # None: told by the model (classifier, regressor, anomaly detector, clusterer)
    max_code_chars: int = DEFAULT_MAX_CODE_CHARS  # the training run's dataset.max_code_chars
    decision: Any = None  # cgtrain.serve.decision.Decision: QA's calibrator + threshold (binary), served as reported
    raw: bool = False  # True: the model's own probabilities and argmax labels (--raw), the decision unused

    def _decides(self, proba: np.ndarray) -> bool:
        return self.decision is not None and not self.raw and not self.decision.identity \
            and proba.ndim == 2 and proba.shape[1] == 2

    def served(self, proba: np.ndarray) -> np.ndarray:
        """The model's class probabilities as served: calibrated by QA's decision (unless raw)."""
        proba = np.asarray(proba, dtype=float)
        return self.decision.apply(proba)[0] if self._decides(proba) else proba

    def labels(self, proba: np.ndarray) -> list:
        """Labels from served probabilities: `p >= threshold` under a decision, else argmax."""
        proba = np.asarray(proba, dtype=float)
        if self._decides(proba):
            return [self.classes[int(v)] for v in proba[:, 1] >= self.decision.threshold]
        return [self.classes[int(i)] for i in proba.argmax(axis=1)]

    def inputs(self, X: Any) -> Any:
        """What the pipeline reads, from a list of code strings or a DataFrame: code strings for a
        code model (a frame's code column), the frame itself for a model over table columns."""

        if isinstance(X, str):
            raise TypeError("pass a list of code strings (or a DataFrame), not one string")
        is_frame = hasattr(X, "columns")
        if table_featurizer(self.model) is not None:
            if not is_frame:
                raise TypeError("this model reads table columns: pass a pandas DataFrame")
            return X
        if is_frame:
            column = self.code_column or "code"
            if column not in X.columns:
                raise KeyError(f"the frame has no {column!r} column (the code this model reads)")
            return X[column].astype(str).tolist()
        return [str(c) for c in X]

    def decide(self, inputs: Any) -> list:
        """Labels as served (QA's threshold on calibrated probabilities), or values for a regressor /
        cluster ids for a clusterer, for inputs as `inputs` makes them."""
        if not hasattr(self.model, "predict_proba") or self.task in ("regression", "clustering"):
            return np.asarray(self.model.predict(inputs)).tolist()
        return self.labels(self.served(self.model.predict_proba(inputs)))

    def predict(self, items: list[dict]) -> Iterable[dict]:
        """One output per item, in order; an item read with an "error" is passed on as {"id", "error"}."""
        if not items:
            return []

        if needs_rows(self):
            return predict_rows(self, items)
        ok = [it for it in items if "error" not in it]
        proba = self.served(self.model.predict_proba([it["code"] for it in ok])) if ok else \
            np.zeros((0, len(self.classes)))
        rows = iter(self.class_rows(proba))
        return [{"id": it["id"], "error": it["error"]} if "error" in it else {"id": it["id"], **next(rows)}
                for it in items]

    def class_rows(self, proba: np.ndarray) -> list[dict]:
        """Output rows from served probabilities (see `served`)."""
        rows = []
        for p, label in zip(proba, self.labels(proba) if len(proba) else []):
            row = {"label": label}
            if len(self.classes) == 2:
                row["probability"] = round(float(p[1]), 6)  # of the positive ("flawed") class
            else:
                row["probabilities"] = {str(c): round(float(v), 6) for c, v in zip(self.classes, p)}
            rows.append(row)
        return rows

    def read(self, source: Path) -> list[dict]:
        """The items to predict: table rows (CSV/JSONL/Parquet) for a model over table columns,
        else functions (see `read_functions`)."""

        if table_featurizer(self.model) is not None:
            if str(source) == STDIN:
                with stdin_as_file(self.max_code_chars) as path:
                    return read_table_rows(path, self.id_column, self.code_column)
            check_input_file(Path(source), self.max_code_chars, table=True)
            return read_table_rows(source, self.id_column, self.code_column)
        return read_functions(source, self.code_column or "code", self.id_column, self.max_code_chars)


def load_predictor(run_dir: Path | None = None, model_path: Path | None = None,
                   trust: Iterable[str] = ()) -> Predictor:
    """The model of a run directory or a model file, through the one audited loader
    (`registry.artifacts`); `trust`: exact type names the user vouches for (--trust)."""
    if run_dir is not None:
        model, manifest = load_run_model(run_dir, trust=trust)
        from cgtrain.request import load_yaml  # size, depth and alias limits: a run dir may come from anyone

        request = load_yaml((Path(run_dir) / rundir.REQUEST).read_bytes()[:1 << 20].decode("utf-8", "replace")) or {}
        ds = request.get("dataset", {})
        from cgtrain.serve.decision import read_decision

        return Predictor(model, manifest.classes, ds.get("code_column", "code"), ds.get("id_column", "id"),
                         manifest.task, int(ds.get("max_code_chars") or DEFAULT_MAX_CODE_CHARS),
                         read_decision(run_dir, manifest.sha256))
    model = load_model(model_path, expected_sha256=None, trust=trust)
    classes = [c.item() if hasattr(c, "item") else c for c in getattr(model, "classes_", [0, 1])]
    return Predictor(model, classes)


def check_output(output: Path, run_dir: Path | None = None, model: Path | None = None,
                 source: Path | None = None) -> None:
    """`--out` never replaces the model, the input, or any file inside a run directory."""
    out = Path(output).expanduser().resolve()
    if out.is_dir():
        raise PredictInputError(f"--out {output} is a directory; give a file name, e.g. {Path(output) / 'preds.jsonl'}")
    for what, path in (("the model file", model), ("the input", None if str(source) == STDIN else source)):
        if path is not None and Path(path).exists() and out == Path(path).expanduser().resolve():
            raise PredictInputError(f"--out {output} is {what}; write the predictions to another file")
    runs = [Path(run_dir).resolve()] if run_dir is not None else []
    runs += [p for p in out.parents if (p / rundir.MODEL_JSON).is_file() or (p / rundir.STUDY_DB).is_file()]
    for run in runs:
        if out.is_relative_to(run):
            raise PredictInputError(f"--out {output} is inside the run directory {run}; a run's files are never "
                                    f"overwritten by predict: write the predictions outside it")


def _too_long(n_chars: int, max_chars: int) -> str:
    return (f"{n_chars} chars > max_code_chars={max_chars} (the model's training limit, "
            f"dataset.max_code_chars); not scored")


def _code_error(code: Any, max_chars: int, column: str = "code") -> str | None:
    """Why an item cannot be scored (as training would quarantine it), else None."""
    if not isinstance(code, str):
        return f"no '{column}' string in this row"
    if not code.strip():
        return "empty code"
    if "\x00" in code:
        return "code contains NUL bytes (binary data?)"
    if len(code) > max_chars:
        return _too_long(len(code), max_chars)
    return None


def check_input_file(path: Path, max_chars: int, table: bool = False) -> None:
    """The input exists and is a regular file (not a FIFO or device), and a table is not absurdly large."""
    if not path.exists():
        raise PredictInputError(f"input not found: {path}; give a source file, a directory of them, a JSONL of "
                                f"functions (a CSV / JSONL / Parquet of rows for a table model), or - for stdin")
    if not path.is_file() and not (path.is_dir() and not table):
        raise PredictInputError(f"input {path} is not a regular file; give a file, a directory, or - for stdin")
    cap = BYTES_PER_CHAR * max_chars * TABLE_FILE_FACTOR
    if table and path.stat().st_size > cap:
        raise PredictInputError(f"input {path} is {path.stat().st_size} bytes, over the {cap}-byte cap for a table "
                                f"(1000 x 4 x max_code_chars); split it into smaller files")


def read_functions(source: Path | str, code_column: str = "code", id_column: str | None = "id",
                   max_chars: int = DEFAULT_MAX_CODE_CHARS) -> list[dict]:
    """Functions to score: rows of a JSONL file, functions of a .py file, whole source files, or stdin ("-").

    Bounded and contained like training: nothing longer than `max_chars` is scored, a file over
    4 bytes per allowed char is not read, a directory walk stays inside the directory. What cannot be
    scored becomes {"id", "error"} (its line, the reason), never silently dropped."""
    if str(source) == STDIN:
        return read_stdin(code_column, id_column, max_chars)
    source = Path(source)
    check_input_file(source, max_chars)
    if source.is_dir():
        return _dir_functions(source, max_chars)
    if source.name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as fh:
            return _jsonl_functions(fh, code_column, id_column, max_chars)
    return _file_functions(source, source.name, max_chars)


def _dir_functions(root: Path, max_chars: int) -> list[dict]:
    base, items = root.resolve(), []
    for path in sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES):
        name = str(path.relative_to(root))
        target = path.resolve()
        if not target.is_relative_to(base):  # a symlink out of the directory: not followed
            items.append({"id": name, "error": f"a link to {target}, outside {base}; not read"})
        elif target.is_file():
            items.extend(_file_functions(target, name, max_chars))
        elif not target.is_dir():
            items.append({"id": name, "error": "not a regular file (FIFO, device or dangling link); not read"})
    return items


def _bounded_lines(fh, limit: int) -> Iterable[tuple[int, bytes | None]]:
    """(line number, bytes) per line; None for a line over `limit` bytes (read past, never held whole)."""
    n = 0
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        n += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield n, None
            continue
        yield n, line


def _jsonl_functions(fh, code_column: str, id_column: str | None, max_chars: int,
                     first: list[tuple[int, bytes | None]] = ()) -> list[dict]:
    items, limit = [], BYTES_PER_CHAR * max_chars + 4096
    lines = [*first, *_bounded_lines(fh, limit)] if first else _bounded_lines(fh, limit)
    for line_no, raw in lines:
        where = f"line:{line_no}"
        if raw is None:
            items.append({"id": where, "error": f"line over {limit} bytes (max_code_chars={max_chars}); not read"})
            continue
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8", errors="replace"))
        except (json.JSONDecodeError, RecursionError) as exc:
            items.append({"id": where, "error": f"unparseable JSON on line {line_no}: {str(exc)[:120]}"})
            continue
        if not isinstance(row, dict):
            items.append({"id": where, "error": f"line {line_no} is JSON {type(row).__name__}, not an object"})
            continue
        ident = row.get(id_column) if id_column else None
        item_id = str(ident) if ident is not None else where
        problem = _code_error(row.get(code_column), max_chars, code_column)
        items.append({"id": item_id, "error": f"line {line_no}: {problem}"} if problem else
                     {"id": item_id, "code": row[code_column]})
    return items


def _file_functions(path: Path, name: str, max_chars: int = DEFAULT_MAX_CODE_CHARS) -> list[dict]:
    size = path.stat().st_size
    if size > BYTES_PER_CHAR * max_chars:
        return [{"id": name, "error": f"{size} bytes, over 4 x max_code_chars={max_chars}; not read"}]
    with open(path, "rb") as fh:
        data = fh.read(BYTES_PER_CHAR * max_chars + 1)
    return _text_functions(data.decode("utf-8", errors="replace"), name, max_chars,
                           python=path.suffix == ".py")


def _text_functions(text: str, name: str, max_chars: int, python: bool | None) -> list[dict]:
    """Items of one source text; python=None: Python if it parses (stdin), else one block."""
    if not text.strip():
        return [{"id": name, "error": "empty file; not scored"}]
    if "\x00" in text:
        return [{"id": name, "error": "binary file (NUL bytes); not scored"}]
    if python is not False:
        try:
            funcs = python_functions(text)
        except SyntaxError as exc:
            if python:
                return [{"id": name, "error": f"Python syntax error at line {exc.lineno}: {exc.msg}; not scored"}]
            funcs = []
        if funcs:
            return [{"id": f"{name}:{qual}", "code": code} if len(code) <= max_chars else
                    {"id": f"{name}:{qual}", "error": _too_long(len(code), max_chars)} for qual, code in funcs]
    if len(text) > max_chars:
        return [{"id": name, "error": _too_long(len(text), max_chars)}]
    return [{"id": name, "code": text}]


def read_stdin(code_column: str = "code", id_column: str | None = "id",
               max_chars: int = DEFAULT_MAX_CODE_CHARS, stream=None) -> list[dict]:
    """Standard input: JSONL rows when the first non-blank line starts with "{", else one source text."""
    fh = stream if stream is not None else sys.stdin.buffer
    limit = BYTES_PER_CHAR * max_chars
    head: list[tuple[int, bytes | None]] = []
    for line_no, raw in _bounded_lines(fh, limit + 4096):
        head.append((line_no, raw))
        if raw is None or raw.strip():
            break
    first = next((raw for _, raw in reversed(head) if raw is not None and raw.strip()), None)
    if first is None and not any(raw is None for _, raw in head):
        raise PredictInputError("standard input is empty; pipe JSONL rows or source code into `cgtrain predict -`")
    if first is not None and first.lstrip().startswith(b"{"):
        return _jsonl_functions(fh, code_column, id_column, max_chars, first=head)
    if any(raw is None for _, raw in head):
        return [{"id": "<stdin>", "error": f"over {limit} bytes (4 x max_code_chars={max_chars}); not read"}]
    data = b"".join(raw for _, raw in head) + fh.read(limit + 1)
    if len(data) > limit:
        return [{"id": "<stdin>", "error": f"over {limit} bytes (4 x max_code_chars={max_chars}); not read"}]
    return _text_functions(data.decode("utf-8", errors="replace"), "<stdin>", max_chars, python=None)


@contextmanager
def stdin_as_file(max_chars: int):
    """Standard input in a temp file for the table readers (.jsonl when it starts with "{", else .csv)."""
    cap = BYTES_PER_CHAR * max_chars * TABLE_FILE_FACTOR
    data = sys.stdin.buffer.read(cap + 1)
    if len(data) > cap:
        raise PredictInputError(f"standard input is over the {cap}-byte cap for a table; give a file instead")
    if not data.strip():
        raise PredictInputError("standard input is empty; pipe CSV or JSONL rows into `cgtrain predict -`")
    suffix = ".jsonl" if data.lstrip().startswith(b"{") else ".csv"
    with tempfile.TemporaryDirectory(prefix="cgtrain-stdin-") as tmp:
        path = Path(tmp) / f"stdin{suffix}"
        path.write_bytes(data)
        yield path


def python_functions(text: str) -> list[tuple[str, str]]:
    """(qualified name, normalised source) of each function, as the training corpus normalises them.

    Raises SyntaxError (also for source too deeply nested to parse)."""

    try:
        tree = ast.parse(text)
    except (RecursionError, MemoryError, ValueError) as exc:
        raise SyntaxError(f"cannot parse ({type(exc).__name__})") from None
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((prefix + child.name, normalise(ast.unparse(child))))
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    try:
        visit(tree, "")
    except RecursionError:
        raise SyntaxError("too deeply nested to unparse") from None
    return found
