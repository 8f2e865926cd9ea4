"""Load a dataset into one validated frame; quarantine bad rows instead of crashing.

Every row that cannot be trained on (unparseable, binary junk, empty or huge code, missing
or unknown label, a non-numeric value in a numeric column, duplicate id) is written to a
JSONL quarantine file with its line number and reason. Too many of them stop the run with
`TooManyBadRows`. Label coding per task lives in `labels`, table columns in `table`.
"""
from __future__ import annotations

import errno
import json
import logging
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
    dataset_fingerprint,
    file_fingerprint,
)
from cgtrain.data.check import check_dataset, check_segments as _check_segments, resolve as _resolve
from cgtrain.data.labels import make_coder, present as _present
from cgtrain.data.table import TableRows
from cgtrain.plugins import did_you_mean
from cgtrain.request import DatasetConfig

__all__ = ["DatasetError", "LoadedDataset", "TooManyBadRows", "check_dataset", "current_fingerprint",
           "file_fingerprint", "load_dataset"]

log = logging.getLogger(__name__)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
EXCERPT_CHARS = 200


@dataclass(frozen=True)
class LoadedDataset:
    frame: pd.DataFrame  # id, code ("" without a code column), label, group, then segment columns
    classes: tuple  # original label values in class-index order; () for regression / no labels
    n_read: int
    n_bad: int
    bad_reasons: dict[str, int]  # reason -> count
    quarantine_path: Path | None  # None: no bad rows
    fingerprint: str  # "sha256:<hex>" of the raw dataset bytes
    table: pd.DataFrame | None = None  # numeric (float, NaN = missing) + categorical (str/None) columns, frame order


class TooManyBadRows(DatasetError):
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


# --- row validation ------------------------------------------------------------------
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
    """A code/label/feature column absent from all of the first records is a config error, not bad rows."""

    LOOK = 100  # records; more than one so a single broken first record doesn't mislead

    def __init__(self, cfg: DatasetConfig, path: Path, label_required: bool):
        self.cfg, self.path, self.seen, self.columns = cfg, path, 0, []
        keys = {cfg.code_column: "code_column", **({cfg.label_column: "label_column"} if label_required else {})}
        keys.update({c: "numeric_columns" for c in cfg.numeric_columns})
        keys.update({c: "categorical_columns" for c in cfg.categorical_columns})
        self.keys = {name: key for name, key in keys.items() if name is not None}
        self.need = set(self.keys)

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
        for name, key in self.keys.items():
            if self.seen and name in self.need:
                fix = (f"set dataset.{key} to one of them" if key.endswith("_column")
                       else f"fix or remove '{name}' in dataset.{key}")
                raise DatasetError(
                    f"{key.split('_')[0]} column '{name}' not found in {self.path}"
                    f"{did_you_mean(name, self.columns)}; columns present: {', '.join(map(str, self.columns))}; "
                    f"{fix}")


class _Rows:
    """The good rows' columns. Text goes to Arrow every CHUNK rows so that Python str
    objects never pile up (peak memory ~ the final frame, not twice it)."""

    CHUNK = 8192

    def __init__(self, cfg: DatasetConfig):
        self.text: dict[str, list[str]] = {name: [] for name in ("id", "code", "group", *cfg.segment_columns)}
        self.chunks: dict[str, list[pa.Array]] = {name: [] for name in self.text}
        self.labels: list[int | float] = []
        self.table = TableRows(cfg)
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


def _read(rows: Iterator[RawRow], cfg: DatasetConfig, coder, qua: _Quarantine, path: Path) -> _Rows:
    out, check, use_id = _Rows(cfg), _ColumnCheck(cfg, path, not coder.optional), None
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
        code = rec.get(code_col) if code_col is not None else ""
        if isinstance(code, (bytes, bytearray)):  # Parquet binary columns
            code = _bytes_code(code)
        rid = str(rec[cfg.id_column]) if use_id and _present(rec.get(cfg.id_column)) else str(row.line)
        problem = _code_problem(code, max_chars) if code_col is not None else None
        if problem is None and rid in out.seen_ids:  # before the label: a duplicate must not add a class
            problem = "duplicate_id", f"id {rid!r} first seen on line {out.seen_ids[rid]}"
        values = []
        if problem is None:
            values, problem = out.table.parse(rec)
        if problem is None:
            label, problem = coder.label(rec.get(label_col)) if label_col is not None else coder.label(None)
        if problem is not None:
            qua.add(row.line, problem[0], problem[1], row.raw, rec)
            continue
        out.seen_ids[rid] = row.line
        out.table.add(values)
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


def _keep(out: _Rows, rec: dict, rid: str, code: str, label: int | float, cfg: DatasetConfig) -> None:
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


def _sample_mask(columns: dict[str, Any], n: int, seed: int) -> np.ndarray:
    """Whole groups in a seeded random order until at least `n` rows: a group is never split."""
    groups = pd.Series(pd.array(columns["group"], dtype="str"))
    sizes = groups.value_counts().sort_index()  # sorted first: independent of row order
    order = np.random.default_rng(seed).permutation(len(sizes))
    take = int(np.searchsorted(np.cumsum(sizes.to_numpy()[order]), n)) + 1
    return groups.isin(sizes.index.to_numpy()[order[:take]]).to_numpy()


def _apply_mask(columns: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    keep = pa.array(mask)  # Arrow's filter keeps the chunks: no full copy of the code column
    return {k: v[mask] if isinstance(v, np.ndarray) else v.filter(keep) for k, v in columns.items()}


# --- entry point ---------------------------------------------------------------------
def current_fingerprint(cfg: DatasetConfig) -> str:
    """The fingerprint `load_dataset` would record, without loading (a --resume compares it)."""
    path, fmt = _resolve(cfg)
    return dataset_fingerprint(path, fmt, cfg)


def load_dataset(cfg: DatasetConfig, task: str, quarantine_path: Path, *, seed: int = 0) -> LoadedDataset:
    """Read, validate and (optionally) sample the dataset; bad rows go to `quarantine_path`."""
    path, fmt = _resolve(cfg)
    _check_segments(cfg)
    coder, qua = make_coder(cfg, task), _Quarantine(quarantine_path)
    try:
        out = _read(FORMATS.get(fmt)(path, cfg), cfg, coder, qua, path)
    except (OSError, EOFError, zlib.error) as exc:  # truncated/corrupt gzip, unreadable file
        qua.discard()
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:  # writing the quarantine: disk full, read-only
            raise
        raise DatasetError(f"loading {path} failed: {exc}") from exc
    except BaseException:
        qua.discard()
        raise
    qpath, n_bad = qua.commit(), sum(qua.reasons.values())
    if out.n_read == 0:
        raise DatasetError(f"{path} holds no rows; point dataset.path at a non-empty dataset")
    if n_bad / out.n_read > cfg.max_bad_fraction:
        raise TooManyBadRows(n_bad, out.n_read, cfg.max_bad_fraction, qpath, dict(qua.reasons))
    classes, labels = coder.finish(np.asarray(out.labels, dtype=coder.dtype))
    n_read, columns, table = out.n_read, out.columns(labels), out.table.frame()
    del out  # drops the id set and the chunk lists
    coder.check(labels, classes, str(path))
    if cfg.sample is not None and cfg.sample < len(labels):
        mask = _sample_mask(columns, cfg.sample, seed)
        columns = _apply_mask(columns, mask)
        table = table[mask].reset_index(drop=True) if table is not None else None
        coder.check(columns["label"], classes, f"{path} (sample of {cfg.sample} rows, seed {seed})")
    return LoadedDataset(frame=_frame(columns), classes=classes, n_read=n_read,
                         n_bad=n_bad, bad_reasons=dict(qua.reasons), quarantine_path=qpath,
                         fingerprint=dataset_fingerprint(path, fmt, cfg), table=table)
