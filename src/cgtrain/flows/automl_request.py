"""`cgtrain automl DATA --budget 300 --metric f1`: a training request from a dataset, a metric and a budget.

The request it builds searches every registered family that fits the task and the data
(code or table), cheap families and low fidelities first, inside `hpo.budget_s` (see
`cgtrain.tune.automl`), tries a voting / stacking ensemble of the top trials, and warm-starts
from earlier AutoML runs of the same dataset in sibling run directories. What it infers
(task, columns) can be overridden with `key=value` arguments, as for `cgtrain train`.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pandas as pd

from cgtrain.data.formats import csv_delimiter, detect_format
from cgtrain.models import FAMILIES
from cgtrain.models.linear import TEXT_ONLY
from cgtrain.request import RequestError, TrainingRequest, apply_overrides, parse_request

SAMPLE_ROWS = 20_000  # rows read to infer the task and the columns
AUTOML_FOLDS = 3
# A small table is cross-validated with 5 folds: its fits take a fraction of a second, and with 3 folds of a few
# dozen rows each the choice between families that differ by one row is noise (under 100 rows: 3 folds).
SMALL_TABLE_ROWS, SMALL_TABLE_FOLDS = 5_000, 5
ID_LIKE = ("id", "group")


def peek(path: Path) -> pd.DataFrame:
    """The first rows of a CSV / Parquet / JSONL(.gz) file (a directory of sources: an empty frame)."""
    try:
        fmt = detect_format(path)  # the loader's own choice of format and delimiter
        if fmt == "csv":
            return pd.read_csv(path, nrows=SAMPLE_ROWS, sep=csv_delimiter(path))
        if fmt == "parquet":
            return pd.read_parquet(path).head(SAMPLE_ROWS)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, nrows=SAMPLE_ROWS, compression="infer")
    except Exception:  # the loader reports a broken file properly; inference just stays silent
        pass
    return pd.DataFrame()


STRAY_LABEL_SHARE = 0.01  # numeric labels with at most this share of other values: those are bad rows, not classes


def infer_task(labels: pd.Series) -> str:
    values = labels.dropna()
    if values.empty:
        return "binary"
    if not pd.api.types.is_numeric_dtype(values) and not values.map(lambda v: isinstance(v, bool)).any():
        numbers = pd.to_numeric(values, errors="coerce")  # 0 / 1 and one stray "maybe": binary, "maybe" quarantined
        if 0 < numbers.isna().sum() <= max(1, STRAY_LABEL_SHARE * len(values)) and numbers.notna().any():
            values = numbers.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "binary" if values.astype(str).str.strip().nunique() <= 2 else "multiclass"
    if pd.api.types.is_float_dtype(values) and not (values == values.round()).all():
        return "regression"
    if values.nunique() > 20:
        return "regression"
    return "binary" if values.nunique() <= 2 else "multiclass"


NA_TEXT = {"", "na", "n/a", "nan", "nat", "null", "none", "?", "-"}
BOOLEAN_WORDS = {"true", "false", "yes", "no", "t", "f", "y", "n"}
DATE_SHAPE = r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"


def column_kind(values: pd.Series) -> str | None:
    """numeric | categorical | datetime | text, or None for a column that carries nothing (empty, constant
    or an id: a different value on every row) as read from the first rows of the file."""
    if pd.api.types.is_bool_dtype(values):
        return "categorical"  # True/False: two levels, never a number that fails to parse
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(values):
        return "numeric" if present.nunique() > 1 else None
    text = present.astype(str).str.strip()
    text = text[~text.str.lower().isin(NA_TEXT)]
    if text.nunique() <= 1:
        return None
    if set(text.str.lower().unique()) <= BOOLEAN_WORDS:
        return "categorical"
    if pd.to_numeric(text, errors="coerce").notna().all():
        return "numeric"
    sample = text.head(500)
    if sample.str.match(DATE_SHAPE).mean() >= 0.9:
        return "datetime"
    words = sample.str.count(r"\s+") + 1
    if words.mean() >= 4 and text.nunique() > 0.3 * len(text):
        return "text"
    if text.nunique() == len(text) and len(text) >= 50:
        return None  # an identifier (name, ticket number): a level per row teaches nothing
    return "categorical"


def infer_dataset(path: Path, label: str = "label") -> dict[str, Any]:
    """dataset.* fields: a code dataset as is; a table without a `code` column gets its feature columns
    by kind (numeric, categorical incl. booleans, date-time, free text); the label column never is one."""
    frame = peek(path)
    dataset: dict[str, Any] = {"path": str(path), "label_column": label}
    if frame.empty or "code" in frame.columns:
        return dataset
    if label not in frame.columns:
        from cgtrain.plugins import did_you_mean

        columns = list(map(str, frame.columns))
        raise RequestError([f"--label: column '{label}' is not in {path}{did_you_mean(label, columns)}; columns: "
                            f"{', '.join(columns)}; name the target with --label COLUMN"], "automl")
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": [], "datetime": [], "text": []}
    for c in frame.columns:
        if c != label and c not in ID_LIKE:
            kind = column_kind(frame[c])
            if kind:
                kinds[kind].append(str(c))
    if not any(kinds.values()):
        skipped = [str(c) for c in frame.columns if c != label]
        why = (f"{', '.join(skipped[:20])} {'is' if len(skipped) == 1 else 'are'} empty, constant or an identifier "
               "(a different value on every row)" if skipped else "the file has no other column")
        raise RequestError([f"{path}: no column to learn {label!r} from: {why}; add feature columns, or name them "
                            "in a request file (dataset.numeric_columns, ...)"], "automl")
    dataset.update({
        "code_column": None,
        **{f"{kind}_columns": cols for kind, cols in kinds.items()},
        "id_column": "id" if "id" in frame.columns else None,
        "group_column": "group" if "group" in frame.columns else None,
    })
    return dataset


def label_of(label: str | None, overrides: list[str]) -> str:
    """The target column: --label, else a `dataset.label_column=` override, else `label`."""
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() == "dataset.label_column" and value.strip():
            return value.strip()
    return label or "label"


def families_for(task: str, tabular: bool, only: list[str] | None) -> list[str]:
    """Every registered family that learns the task from this kind of input (or the ones named)."""
    names = only or FAMILIES.names()
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        from cgtrain.plugins import did_you_mean

        raise RequestError([f"--families: unknown family '{unknown[0]}'{did_you_mean(unknown[0], FAMILIES.names())}"
                            f"; choose from: {', '.join(FAMILIES.names())}"])
    fits = []
    for name in names:
        fam = FAMILIES.get(name)
        if fam.missing():  # its extra is not installed: left out of the plan, or said when named
            if only:
                fam.check_available()
            continue
        supports = fam.supports(task) if hasattr(fam, "supports") else task in ("binary", "multiclass")
        if supports and (fam.input == "features" or not tabular) and not (tabular and name in TEXT_ONLY):
            fits.append(name)
    return fits


# Code text: featurisation is searched with the model (cgtrain.tune.automl starts from its baseline's).
CODE_FEATURE_SPACE = {
    "kind": {"type": "categorical", "choices": ["tfidf", "hashing"]},
    "ngram_max": {"type": "int", "low": 1, "high": 4},
    "min_df": {"type": "int", "low": 2, "high": 5},  # >= 2: every fold shares one n-gram count pass
    "max_features": {"type": "categorical", "choices": [None, 50_000, 200_000]},
    "split_names": {"type": "categorical", "choices": [False, True]},
    "string_words": {"type": "categorical", "choices": [False, True]},
    "ordinal_names": {"type": "categorical", "choices": [True, False]},
    "name_flow": {"type": "categorical", "choices": [True, False]},
    "sublinear_tf": {"type": "categorical", "choices": [True, False]},
    "metrics": {"type": "categorical", "choices": [False, True]},
}
# The featurisation a code request starts from: the anytime baseline's (cgtrain.tune.defaults.BASELINE_FEATURES)
CODE_FEATURES = {"ngram_max": 3, "min_df": 3, "max_features": None, "split_names": False, "string_words": True,
                 "ordinal_names": True, "name_flow": True, "metrics": False}
# chi² columns a tree family sees on code text: a LightGBM tree's cost grows with the columns (Juliet, 60k rows,
# 200 trees: 3k columns 31 s CPU, F1 0.899; 8k 50 s, 0.921; all 14.6k 81 s, 0.921)
TREE_SELECT_K = 8_000
TREE_MAX_BIN = 15  # histogram bins per column of a LightGBM trial on code text (TF-IDF values: few distinct)
LARGE_CODE_ROWS = SAMPLE_ROWS  # a code dataset this large (or larger) is cross-validated with 2 folds, not 3:
LARGE_CODE_FOLDS = 2  # a tree trial at full fidelity then costs half as much (FLAML uses a holdout there)
CODE_GROUP_COLUMNS = ("group", "family")  # the grouping column of a code dataset, when one is present


def code_candidate(family: str) -> dict[str, Any]:
    """A code-text candidate: one thread; tree families read the chi² top columns, not every n-gram."""
    cand = single_threaded(family)
    if "select_k" in FAMILIES.get(family).param_names():
        cand["params"] = {**cand.get("params", {}), "select_k": TREE_SELECT_K}
    if "max_bin" in FAMILIES.get(family).param_names():
        cand["params"] = {**cand.get("params", {}), "max_bin": TREE_MAX_BIN}
    if family == "logreg":  # lbfgs: 1.4 s CPU at C=10 on 40k rows of n-grams, saga 21 s, liblinear 12 s (same optimum)
        cand["params"] = {**cand.get("params", {}), "solver": "lbfgs"}
    return cand


# Tables have few columns and rows of every size: the code-text spaces (a few % of a wide sparse matrix per tree,
# sqrt of the columns per split) would starve a tree of a 9-column table. These replace them on tables.
TABLE_SPACES: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "n_estimators": {"type": "int", "low": 50, "high": 600, "step": 50},
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "num_leaves": {"type": "int", "low": 4, "high": 127, "log": True},
        "min_child_samples": {"type": "int", "low": 2, "high": 100, "log": True},
        "colsample_bytree": {"type": "float", "low": 0.4, "high": 1.0},
        "reg_lambda": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
    },
    "random_forest": {
        "n_estimators": {"type": "int", "low": 100, "high": 400, "step": 100},
        "max_depth": {"type": "categorical", "choices": [None, 10, 20]},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 10, "log": True},
        "max_features": {"type": "categorical", "choices": ["sqrt", 0.5, 1.0]},
    },
}


def table_candidate(family: str) -> dict[str, Any]:
    """A table candidate: one thread, and the table space where the family has one."""
    cand = single_threaded(family)
    if family in TABLE_SPACES:
        cand["space"] = copy.deepcopy(TABLE_SPACES[family])  # overrides edit the request, never the constant
    return cand


def single_threaded(family: str) -> dict[str, Any]:
    """A candidate entry; families with a thread count get one thread: many short trials on a small or shared
    machine lose far more to OpenMP threads waiting on each other than they gain (LightGBM: 20x on 2 busy cores)."""
    params = {"n_jobs": 1} if "n_jobs" in FAMILIES.get(family).param_names() else {}
    return {"family": family, **({"params": params} if params else {})}


def automl_folds(tabular: bool, rows_seen: int) -> int:
    """CV folds: 2 on large code sets (full-fidelity tree trials fit the budget), 5 on small tables, else 3."""
    if not tabular:
        return LARGE_CODE_FOLDS if rows_seen >= LARGE_CODE_ROWS else AUTOML_FOLDS
    return SMALL_TABLE_FOLDS if 100 <= rows_seen < SMALL_TABLE_ROWS else AUTOML_FOLDS  # a tiny one keeps 3


def build_request(data: Path, budget_s: float, metric: str | None = None, task: str | None = None,
                  families: list[str] | None = None, overrides: list[str] | None = None, seed: int = 0,
                  qa: bool = False, label: str | None = None) -> TrainingRequest:
    data = Path(data)
    if not data.exists():
        raise RequestError([f"dataset not found: {data}; give a JSONL/CSV/Parquet file or a directory"], "automl")
    label = label_of(label, overrides or [])
    frame = peek(data)
    task = task or (infer_task(frame[label]) if label in frame.columns else "binary")
    dataset = infer_dataset(data, label)
    tabular = dataset.get("code_column", "code") is None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"automl-{data.name.split('.')[0]}")[:80] or "automl"
    if not tabular:  # code text: group k-fold by the dataset's grouping column, features searched
        group = next((c for c in CODE_GROUP_COLUMNS if c in frame.columns), None)
        dataset.setdefault("group_column", group)
        dataset.setdefault("label_conflicts", "drop")  # the same code with both labels teaches nothing
    request: dict[str, Any] = {
        "name": name, "task": task, "seed": seed, "dataset": dataset,
        **({} if tabular else {"features": {"space": CODE_FEATURE_SPACE, **CODE_FEATURES}}),
        "candidates": [(table_candidate if tabular else code_candidate)(f) for f in families_for(task, tabular, families)],
        "hpo": {"sampler": "tpe", "n_trials": 100_000, "budget_s": float(budget_s), "ensemble": "auto",
                "warm_start": True},
        "validation": {"folds": automl_folds(tabular, len(frame)),
                       **({"metric": metric} if metric else {}),
                       **({} if tabular else {"final_fit": "all"})},
        # binary F1: the served decision threshold is the one that maximises out-of-fold F1 (qa/decision.py)
        "qa": {"enabled": qa, **({"threshold": "max_f1"} if task == "binary" and (metric or "f1") == "f1" else {})},
    }
    request = apply_overrides(request, overrides or [])
    if not request["candidates"]:
        raise RequestError([f"no registered family learns task '{task}' from this data; see `cgtrain families`"],
                           "automl")
    return parse_request(request, f"automl {data}")
