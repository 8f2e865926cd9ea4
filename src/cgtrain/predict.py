"""Predictions from a trained run: probability and label per function (per table row, a value,
an anomaly score or a cluster id for the other tasks: see `cgtrain.predict_rows`)."""
from __future__ import annotations

import ast
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from cgtrain.registry.artifacts import UnsafeModelError, load_model

SOURCE_SUFFIXES = {".py", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".java", ".js", ".ts", ".go", ".rs", ".cs",
                   ".php", ".rb", ".kt", ".swift", ".scala"}


@dataclass(frozen=True)
class Predictor:
    model: Any
    classes: list
    code_column: str | None = "code"
    id_column: str | None = "id"
    task: str | None = None  # None: told by the model (classifier, regressor, anomaly detector, clusterer)

    def predict(self, items: list[dict]) -> Iterable[dict]:
        if not items:
            return []
        from cgtrain.predict_rows import needs_rows, predict_rows

        if needs_rows(self):
            return predict_rows(self, items)
        proba = np.asarray(self.model.predict_proba([it["code"] for it in items]), dtype=float)
        return [{"id": item["id"], **row} for item, row in zip(items, self.class_rows(proba))]

    def class_rows(self, proba: np.ndarray) -> list[dict]:
        rows = []
        for p in proba:
            row = {"label": self.classes[int(p.argmax())]}
            if len(self.classes) == 2:
                row["probability"] = round(float(p[1]), 6)  # of the positive ("flawed") class
            else:
                row["probabilities"] = {str(c): round(float(v), 6) for c, v in zip(self.classes, p)}
            rows.append(row)
        return rows

    def read(self, source: Path) -> list[dict]:
        """The items to predict: table rows (CSV/JSONL/Parquet) for a model over table columns,
        else functions (see `read_functions`)."""
        from cgtrain.predict_rows import read_table_rows, table_featurizer

        if table_featurizer(self.model) is not None:
            return read_table_rows(source, self.id_column, self.code_column)
        return read_functions(source, self.code_column or "code", self.id_column)


def load_predictor(run_dir: Path | None = None, model_path: Path | None = None) -> Predictor:
    if run_dir is not None:
        manifest_path = Path(run_dir) / "model.json"
        if not manifest_path.is_file():
            raise UnsafeModelError(f"{run_dir}: no model.json; is this a finished `cgtrain train` run directory?")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        model = load_model(Path(run_dir) / manifest["file"], manifest["sha256"])
        request = yaml.safe_load((Path(run_dir) / "request.yaml").read_text(encoding="utf-8"))
        ds = request.get("dataset", {})
        return Predictor(model, manifest["classes"], ds.get("code_column", "code"), ds.get("id_column", "id"),
                         manifest.get("task"))
    model = load_model(model_path, expected_sha256=None)
    classes = [c.item() if hasattr(c, "item") else c for c in getattr(model, "classes_", [0, 1])]
    return Predictor(model, classes)


def read_functions(source: Path, code_column: str = "code", id_column: str | None = "id") -> list[dict]:
    """Functions to score: rows of a JSONL file, functions of a .py file, or whole source files."""
    source = Path(source)
    if not source.exists():
        raise UnsafeModelError(f"input not found: {source}")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file())
        return [item for f in files for item in _file_functions(f, str(f.relative_to(source)))]
    if source.name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return _jsonl_functions(source, code_column, id_column)
    return _file_functions(source, source.name)


def _jsonl_functions(path: Path, code_column: str, id_column: str | None) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    items = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # predict on what parses; training-time validation is where rows are audited
            if isinstance(row, dict) and isinstance(row.get(code_column), str):
                ident = row.get(id_column) if id_column else None
                items.append({"id": str(ident) if ident is not None else f"line:{line_no}", "code": row[code_column]})
    return items


def _file_functions(path: Path, name: str) -> list[dict]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".py":
        funcs = python_functions(text)
        if funcs:
            return [{"id": f"{name}:{qual}", "code": code} for qual, code in funcs]
    return [{"id": name, "code": text}]


def python_functions(text: str) -> list[tuple[str, str]]:
    """(qualified name, normalised source) of each function, as the training corpus normalises them."""
    from cgtrain.data.synth_bugs import normalise

    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((prefix + child.name, normalise(ast.unparse(child))))
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found
