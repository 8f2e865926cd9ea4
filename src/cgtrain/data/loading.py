"""Load a dataset into one validated frame; quarantine bad rows instead of crashing.

Every row that cannot be trained on (unparseable, binary junk, empty or huge code,
missing or unknown label, duplicate id) is written to a JSONL quarantine file with
its line number and reason. Too many of them stop the run with `TooManyBadRows`.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cgtrain.data.formats import (
    FORMATS,
    DatasetError,
    RawRow,
    check_exists,
    dataset_fingerprint,
    detect_format,
    file_fingerprint,
)
from cgtrain.plugins import did_you_mean
from cgtrain.request import DatasetConfig

__all__ = ["DatasetError", "LoadedDataset", "TooManyBadRows", "file_fingerprint", "load_dataset"]

log = logging.getLogger(__name__)
BASE_COLUMNS = ("id", "code", "label", "group")
BINARY_ALIASES = {"0": 0, "1": 1, "false": 0, "true": 1}
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class LoadedDataset:
    frame: pd.DataFrame  # id, code, label (class index), group, then segment columns
    classes: tuple  # original label values in class-index order
    n_read: int
    n_bad: int
    bad_reasons: dict[str, int]  # reason -> count
    quarantine_path: Path | None  # None: no bad rows
    fingerprint: str  # "sha256:<hex>" of the raw dataset bytes


class TooManyBadRows(Exception):
    def __init__(self, n_bad: int, n_read: int, threshold: float, quarantine_path: Path, reasons: dict[str, int]):
        self.n_bad, self.n_read, self.quarantine_path = n_bad, n_read, quarantine_path
        self.threshold, self.reasons = threshold, reasons
        top = ", ".join(f"{r}: {c}" for r, c in sorted(reasons.items(), key=lambda kv: -kv[1]))
        super().__init__(
            f"{n_bad} of {n_read} rows ({n_bad / n_read:.2%}) are bad ({top}), above "
            f"dataset.max_bad_fraction={threshold:g} ({threshold:.2%}); each bad row is listed with its line "
            f"and reason in {quarantine_path}; clean the data or raise dataset.max_bad_fraction")


# --- quarantine --------------------------------------------------------------------
class _Quarantine:
    """Streams bad rows to a temp file beside the target; `commit` renames it atomically."""

    def __init__(self, path: Path):
        self.path, self.fh, self.tmp, self.reasons = Path(path), None, None, Counter()

    def add(self, line: int, reason: str, detail: str, raw: str, record: dict | None = None) -> None:
        if self.fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            self.fh = os.fdopen(fd, "w", encoding="utf-8")
        self.reasons[reason] += 1
        excerpt = raw[:EXCERPT_CHARS] if raw else json.dumps(record, default=str)[:EXCERPT_CHARS]
        entry = {"line": line, "reason": reason, "detail": detail, "excerpt": excerpt}
        self.fh.write(json.dumps(entry) + "\n")  # ASCII escapes: lone surrogates can't break the write

    def commit(self) -> Path | None:
        if self.fh is None:
            return None
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
            Path(self.tmp).unlink(missing_ok=True)


# --- labels ------------------------------------------------------------------------
def _label_key(value: Any) -> str | None:
    """Canonical text of a label: 1, 1.0, "1" -> "1"; True, "TRUE" -> "true"; None: not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        text = value.strip()
        return text.lower() if text.lower() in ("true", "false") else text
    return None


class _LabelCoder:
    """Maps raw labels to class indices; for multiclass without classes, learns them from the data."""

    def __init__(self, cfg: DatasetConfig, task: str):
        if task not in ("binary", "multiclass"):
            raise DatasetError(f"unknown task '{task}'; choose binary or multiclass")
        self.learn = task == "multiclass" and cfg.classes is None
        if self.learn:
            self.classes, self.mapping = None, {}
        elif cfg.classes is None:
            self.classes, self.mapping = (0, 1), dict(BINARY_ALIASES)
        else:
            self.classes, self.mapping = tuple(cfg.classes), self._mapping(cfg.classes, task)
        self.allowed = "any value" if self.learn else ", ".join(repr(c) for c in self.classes)

    @staticmethod
    def _mapping(classes: list, task: str) -> dict[str, int]:
        if task == "binary" and len(classes) != 2:
            raise DatasetError(f"dataset.classes lists {len(classes)} labels, a binary task needs exactly 2 "
                               f"([negative, positive]); list two or set task: multiclass")
        if len(classes) < 2:
            raise DatasetError(f"dataset.classes lists {len(classes)} label; a model needs at least 2")
        keys = [_label_key(c) for c in classes]
        if len(set(keys)) != len(keys):
            raise DatasetError(f"dataset.classes {classes!r} lists the same label twice; list each once")
        return {k: i for i, k in enumerate(keys)}

    def encode(self, value: Any) -> int | None:
        key = _label_key(value)
        idx = self.mapping.get(key)
        if idx is None and self.learn and key is not None:
            idx = self.mapping[key] = len(self.mapping)
        return idx

    def finish(self, labels: np.ndarray) -> tuple[tuple, np.ndarray]:
        if not self.learn:
            return self.classes, labels
        keys = sorted(self.mapping)  # class index order: sorted label text
        remap = np.empty(len(keys), dtype=np.int64)
        for new, key in enumerate(keys):
            remap[self.mapping[key]] = new
        return tuple(keys), remap[labels] if len(labels) else labels


# --- row validation ------------------------------------------------------------------
def _present(value: Any) -> bool:
    return value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _code_problem(code: Any, max_chars: int) -> tuple[str, str] | None:
    if code is None:
        return "missing_code", "no code"
    if isinstance(code, (bytes, bytearray)):
        return "non_utf8", "code is bytes that are not valid UTF-8"
    if not isinstance(code, str):
        return "code_not_text", f"code is {type(code).__name__}, not text"
    if not code or code.isspace():
        return "empty_code", "code is empty or whitespace only"
    if not code.isascii() and not _encodable(code):
        return "non_utf8", "code holds unpaired surrogates (e.g. a JSON \\ud800 escape), not valid Unicode"
    if "\x00" in code:
        return "nul_bytes", "code contains NUL bytes (binary data?)"
    if len(code) > max_chars:
        return "code_too_long", f"{len(code)} chars > dataset.max_code_chars={max_chars}"
    return None


class _ColumnCheck:
    """A code/label column absent from all of the first records is a config error, not bad rows."""

    LOOK = 100  # records; more than one so a single broken first record doesn't mislead

    def __init__(self, cfg: DatasetConfig, path: Path):
        self.cfg, self.path, self.seen, self.columns = cfg, path, 0, []
        self.need = {cfg.code_column, cfg.label_column}

    @property
    def active(self) -> bool:
        return bool(self.need) and self.seen < self.LOOK

    def see(self, record: dict) -> None:
        if not self.columns:
            self.columns = list(record)
        self.need -= record.keys()
        self.seen += 1
        if self.seen >= self.LOOK:
            self.verify()

    def verify(self) -> None:
        for name, key in ((self.cfg.code_column, "code_column"), (self.cfg.label_column, "label_column")):
            if self.seen and name in self.need:
                raise DatasetError(
                    f"{key.split('_')[0]} column '{name}' not found in {self.path}"
                    f"{did_you_mean(name, self.columns)}; columns present: {', '.join(map(str, self.columns))}; "
                    f"set dataset.{key} to one of them")


class _Rows:
    """The good rows' columns. Text goes to Arrow every CHUNK rows so that Python str
    objects never pile up (peak memory ~ the final frame, not twice it)."""

    CHUNK = 8192

    def __init__(self, segments: list[str]):
        self.text: dict[str, list[str]] = {name: [] for name in ("id", "code", "group", *segments)}
        self.chunks: dict[str, list[pa.Array]] = {name: [] for name in self.text}
        self.labels: list[int] = []
        self.seen_ids: dict[str, int] = {}
        self.n_read = 0

    def flush(self) -> None:
        for name, values in self.text.items():
            if values:
                self.chunks[name].append(_arrow_text(values))
                values.clear()

    def columns(self, labels: np.ndarray) -> dict[str, Any]:
        """Frame order: id, code, label, group, segments; text as Arrow chunked arrays."""
        self.flush()
        text = {name: pa.chunked_array(chunks, type=pa.large_string()) for name, chunks in self.chunks.items()}
        return {"id": text.pop("id"), "code": text.pop("code"), "label": labels, "group": text.pop("group"), **text}


def _arrow_text(values: list[str]) -> pa.Array:
    try:
        return pa.array(values, type=pa.large_string())
    except UnicodeEncodeError:  # a lone surrogate in an id/group/segment value: replace, don't crash
        return pa.array([v.encode("utf-8", "replace").decode("utf-8") for v in values], type=pa.large_string())


def _read(rows: Iterator[RawRow], cfg: DatasetConfig, coder: _LabelCoder, qua: _Quarantine, path: Path) -> _Rows:
    out, check, use_id = _Rows(cfg.segment_columns), _ColumnCheck(cfg, path), None
    code_col, label_col, max_chars = cfg.code_column, cfg.label_column, cfg.max_code_chars
    for row in rows:
        out.n_read += 1
        rec = row.record
        if rec is None:
            qua.add(row.line, row.reason, row.error or "", row.raw)
            continue
        if check.active:
            check.see(rec)
        if use_id is None:  # decided once, on the first parsed record
            use_id = cfg.id_column is not None and cfg.id_column in rec
            _warn_absent(cfg, rec, path)
        code = rec.get(code_col)
        if isinstance(code, (bytes, bytearray)):  # Parquet binary columns
            code = _bytes_code(code)
        rid = str(rec[cfg.id_column]) if use_id and _present(rec.get(cfg.id_column)) else str(row.line)
        problem = _code_problem(code, max_chars)
        if problem is None and rid in out.seen_ids:  # before the label: a duplicate must not add a class
            problem = "duplicate_id", f"id {rid!r} first seen on line {out.seen_ids[rid]}"
        if problem is None:
            label, problem = _label_of(rec.get(label_col), coder)
        if problem is not None:
            qua.add(row.line, problem[0], problem[1], row.raw, rec)
            continue
        out.seen_ids[rid] = row.line
        _keep(out, rec, rid, code, label, cfg)
    check.verify()
    return out


def _bytes_code(code: bytes) -> Any:
    try:
        return bytes(code).decode("utf-8")
    except UnicodeDecodeError:
        return code  # stays bytes -> reported as non_utf8


def _warn_absent(cfg: DatasetConfig, record: dict, path: Path) -> None:
    # not errors (ids fall back to line numbers, groups to rows), but a misspelt
    # group column silently turns a group split into a leaky row split: say so
    cols = [str(c) for c in record]
    for key in ("id_column", "group_column"):
        name = getattr(cfg, key)
        if name is not None and name not in record:
            log.warning("%s: dataset.%s '%s' is not in the first record%s; %s", path, key, name,
                        did_you_mean(name, cols), "ids are line numbers" if key == "id_column"
                        else "every row is its own group")


def _label_of(label: Any, coder: _LabelCoder) -> tuple[int, None] | tuple[None, tuple[str, str]]:
    if not _present(label) or (isinstance(label, str) and label.isspace()):
        return None, ("missing_label", "no label")
    idx = coder.encode(label)
    if idx is None:
        return None, ("unknown_label", f"label {label!r} is not one of: {coder.allowed}")
    return idx, None


def _keep(out: _Rows, rec: dict, rid: str, code: str, label: int, cfg: DatasetConfig) -> None:
    text = out.text
    text["id"].append(rid)
    text["code"].append(code)
    out.labels.append(label)
    group = rec.get(cfg.group_column) if cfg.group_column else None
    text["group"].append(str(group) if _present(group) else f"row:{rid}")
    for name in cfg.segment_columns:
        value = rec.get(name)
        text[name].append(str(value) if _present(value) else "(missing)")
    if len(out.labels) % out.CHUNK == 0:
        out.flush()


# --- the frame, sampling -------------------------------------------------------------
def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    # pd.array over Arrow chunks wraps them without a copy
    return pd.DataFrame({k: v if isinstance(v, np.ndarray) else pd.array(v, dtype="str") for k, v in columns.items()})


def _sample_groups(columns: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
    """Whole groups in a seeded random order until at least `n` rows: a group is never split."""
    groups = pd.Series(pd.array(columns["group"], dtype="str"))
    sizes = groups.value_counts().sort_index()  # sorted first: independent of row order
    order = np.random.default_rng(seed).permutation(len(sizes))
    take = int(np.searchsorted(np.cumsum(sizes.to_numpy()[order]), n)) + 1
    mask = groups.isin(sizes.index.to_numpy()[order[:take]]).to_numpy()
    keep = pa.array(mask)  # Arrow's filter keeps the chunks: no full copy of the code column
    return {k: v[mask] if isinstance(v, np.ndarray) else v.filter(keep) for k, v in columns.items()}


def _check_classes(labels: np.ndarray, classes: tuple, path: Path, after: str = "") -> None:
    present = np.unique(labels)
    if len(present) < 2:
        found = ", ".join(repr(classes[i]) for i in present) or "none"
        raise DatasetError(f"the good rows of {path}{after} hold {len(present)} class ({found}); a model needs "
                           f"at least 2: check dataset.label_column and dataset.classes")


def _check_segments(cfg: DatasetConfig) -> None:
    clash = [s for s in cfg.segment_columns if s in BASE_COLUMNS]
    if clash:
        raise DatasetError(f"dataset.segment_columns {clash} clash with the loader's own columns "
                           f"{list(BASE_COLUMNS)}; rename the column in the data")


# --- entry point ---------------------------------------------------------------------
def _resolve(cfg: DatasetConfig) -> tuple[Path, str]:
    path = Path(cfg.path).expanduser()
    check_exists(path)
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    FORMATS.get(fmt)
    if path.is_dir() and fmt != "dir":
        raise DatasetError(f"{path} is a directory but dataset.format is '{fmt}'; use format 'dir' (or auto) "
                           f"for a directory of source files, or point dataset.path at a {fmt} file")
    if not path.is_dir() and fmt == "dir":
        raise DatasetError(f"format 'dir' needs a directory, but {path} is a file; set dataset.format to "
                           f"the file's format (or auto), or point dataset.path at the directory")
    return path, fmt


def load_dataset(cfg: DatasetConfig, task: str, quarantine_path: Path, *, seed: int = 0) -> LoadedDataset:
    """Read, validate and (optionally) sample the dataset; bad rows go to `quarantine_path`."""
    path, fmt = _resolve(cfg)
    _check_segments(cfg)
    coder, qua = _LabelCoder(cfg, task), _Quarantine(quarantine_path)
    try:
        out = _read(FORMATS.get(fmt)(path, cfg), cfg, coder, qua, path)
    except (OSError, EOFError, zlib.error) as exc:  # truncated/corrupt gzip, unreadable file
        qua.discard()
        raise DatasetError(f"loading {path} failed: {exc}") from exc
    except BaseException:
        qua.discard()
        raise
    qpath, n_bad = qua.commit(), sum(qua.reasons.values())
    if out.n_read == 0:
        raise DatasetError(f"{path} holds no rows; point dataset.path at a non-empty dataset")
    if n_bad / out.n_read > cfg.max_bad_fraction:
        raise TooManyBadRows(n_bad, out.n_read, cfg.max_bad_fraction, qpath, dict(qua.reasons))
    classes, labels = coder.finish(np.asarray(out.labels, dtype=np.int64))
    n_read, columns = out.n_read, out.columns(labels)
    del out  # drops the id set and the chunk lists
    _check_classes(labels, classes, path)
    if cfg.sample is not None and cfg.sample < len(labels):
        columns = _sample_groups(columns, cfg.sample, seed)
        _check_classes(columns["label"], classes, path, f" (sample of {cfg.sample} rows, seed {seed})")
    return LoadedDataset(frame=_frame(columns), classes=classes, n_read=n_read,
                         n_bad=n_bad, bad_reasons=dict(qua.reasons), quarantine_path=qpath,
                         fingerprint=dataset_fingerprint(path, fmt, cfg))
