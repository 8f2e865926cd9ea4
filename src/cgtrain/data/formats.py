"""Dataset readers: one per format, each yielding `RawRow`s with exact line numbers.

Readers never raise on a bad record: they yield a row with `error` set so the
loader can quarantine it. They raise `DatasetError` only when the whole dataset
is unusable (missing file, unreadable header, no labels file for `dir`).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from cgtrain.errors import DatasetError  # noqa: F401 (re-exported)
from cgtrain.plugins import Registry, did_you_mean
from cgtrain.request import DatasetConfig

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".ndjson.gz")
TSV_SUFFIXES = (".tsv", ".tsv.gz", ".tab")
CSV_SUFFIXES = (".csv", ".csv.gz", *TSV_SUFFIXES)
DELIMITERS = (",", "\t", ";", "|")  # a CSV's delimiter is read from its header line (see csv_delimiter)
PARQUET_SUFFIXES = (".parquet", ".pq")




class RawRow(NamedTuple):
    line: int  # 1-based: JSONL/CSV physical line, Parquet row index + 1, dir: labels-file line
    record: dict | None  # None when `error` is set
    error: str | None  # human detail, e.g. "unparseable JSON: Expecting value ..."
    raw: str  # source text for the quarantine excerpt; "" when the format has none (Parquet)
    reason: str = "unparseable"  # quarantine reason key when `error` is set


Reader = Callable[[Path, DatasetConfig], Iterator[RawRow]]
FORMATS: Registry[Reader] = Registry("dataset format")


def _suffix_name(path: Path) -> str:
    return path.name.lower()


def detect_format(path: Path) -> str:
    """The format name for `format: auto`, chosen by suffix (a directory is `dir`)."""
    if path.is_dir():
        return "dir"
    name = _suffix_name(path)
    for fmt, suffixes in (("jsonl", JSONL_SUFFIXES), ("csv", CSV_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    raise DatasetError(
        f"cannot tell the format of {path} from its name; set dataset.format to one of: "
        f"{', '.join(FORMATS.names())} (auto knows {', '.join(JSONL_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES)}"
        f" and directories)")


def check_exists(path: Path, what: str = "dataset file", field: str = "dataset.path") -> None:
    if path.exists():
        return
    hint = ""
    if path.parent.is_dir():
        hint = did_you_mean(path.name, sorted(p.name for p in path.parent.iterdir()))
    raise DatasetError(f"{what} not found: {path}{hint}; fix {field} "
                       f"(relative paths are resolved from {Path.cwd()})")


def open_bytes(path: Path) -> io.BufferedIOBase:
    """Binary handle; gzip is decompressed transparently by suffix."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def csv_delimiter(path: Path) -> str:
    """The field delimiter of a CSV file: a tab for .tsv / .tab; else `,` when the header line (its quoted names
    aside) holds one, else the one of tab, `;` and `|` it holds (a European spreadsheet's `;`), else `,` (one
    column)."""
    if path.name.lower().endswith(TSV_SUFFIXES):
        return "\t"
    try:
        with open_bytes(path) as fh:
            header = re.sub(r'"[^"]*"', "", fh.readline(1 << 16).decode("utf-8", "replace"))
    except (OSError, EOFError):
        return ","  # the reader reports the file
    found = [d for d in DELIMITERS if d in header]
    return "," if "," in found or len(found) != 1 else found[0]


def _decode(line: bytes, first: bool) -> str:
    # utf-8-sig on the first line drops a BOM that would break JSON / the CSV header
    return line.decode("utf-8-sig" if first else "utf-8")


# --- JSONL ---------------------------------------------------------------------------
@FORMATS.register("jsonl")
def read_jsonl(path: Path, cfg: DatasetConfig | None = None) -> Iterator[RawRow]:
    with open_bytes(path) as fh:
        for n, line in enumerate(fh, 1):
            try:
                text = _decode(line, n == 1)
            except UnicodeDecodeError as exc:
                yield RawRow(n, None, f"non-UTF-8 bytes ({exc.reason} at byte {exc.start})",
                             line.decode("utf-8", "replace"), "non_utf8")
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                if text.strip():  # blank lines are skipped; checked only on failure (speed)
                    yield RawRow(n, None, f"unparseable JSON: {exc}", text)
                continue
            if not isinstance(record, dict):
                yield RawRow(n, None, f"unparseable JSON: expected an object, got {type(record).__name__}", text)
                continue
            yield RawRow(n, record, None, text)


# --- CSV -----------------------------------------------------------------------------
class _LineFeed:
    """Decodes byte lines for csv.reader, remembering the record's raw text and bad bytes."""

    def __init__(self, fh: io.BufferedIOBase):
        self.fh, self.parts, self.bad_utf8, self.first = fh, [], False, True

    def __iter__(self) -> Iterator[str]:
        for line in self.fh:
            try:
                text = _decode(line, self.first)
            except UnicodeDecodeError:
                self.bad_utf8 = True
                text = line.decode("utf-8", "replace")
            self.first = False
            self.parts.append(text)
            yield text

    def take(self) -> tuple[str, bool]:
        raw, bad = "".join(self.parts), self.bad_utf8
        self.parts, self.bad_utf8 = [], False
        return raw, bad


def _allow_long_fields(max_chars: int) -> None:
    # csv's default 128 KiB field cap is below max_code_chars; a too-long field should
    # become `code_too_long`, not a csv.Error that derails the parser mid-record.
    csv.field_size_limit(max(csv.field_size_limit(), min(8 * max_chars, 2**31 - 1)))


@FORMATS.register("csv")
def read_csv(path: Path, cfg: DatasetConfig | None = None) -> Iterator[RawRow]:
    _allow_long_fields(cfg.max_code_chars if cfg else 200_000)
    with open_bytes(path) as fh:
        feed = _LineFeed(fh)
        reader = csv.reader(feed, delimiter=csv_delimiter(path))
        header = _csv_header(reader, feed, path)
        end = reader.line_num
        while True:
            start = end + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                end = reader.line_num
                yield RawRow(start, None, f"unparseable CSV: {exc}", feed.take()[0])
                continue
            end = reader.line_num
            raw, bad_utf8 = feed.take()
            if not fields:  # blank line
                continue
            if bad_utf8:
                yield RawRow(start, None, "non-UTF-8 bytes", raw, "non_utf8")
            elif len(fields) != len(header):
                yield RawRow(start, None, f"unparseable CSV: expected {len(header)} fields, got {len(fields)}", raw)
            else:
                yield RawRow(start, dict(zip(header, fields)), None, raw)


def _csv_header(reader: Any, feed: _LineFeed, path: Path) -> list[str]:
    for fields in reader:
        _, bad_utf8 = feed.take()
        if bad_utf8:
            raise DatasetError(f"{path}: the CSV header (line {reader.line_num}) is not UTF-8; "
                               f"re-save the file as UTF-8")
        if fields:
            names = [f.strip() for f in fields]
            twice = next((n for n in names if names.count(n) > 1), None)
            if twice is not None:
                at = [k + 1 for k, n in enumerate(names) if n == twice]
                raise DatasetError(f"{path}: the CSV header names column '{twice}' more than once (columns "
                                   f"{', '.join(map(str, at))}); give each column its own name")
            return names
    raise DatasetError(f"{path} is empty: a CSV dataset needs a header row and at least one record")


# --- Parquet -------------------------------------------------------------------------
@FORMATS.register("parquet")
def read_parquet(path: Path, cfg: DatasetConfig | None = None) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{path} is not a readable Parquet file: {exc}") from None
    n = 0
    for batch in pfile.iter_batches(batch_size=8192):  # streaming: bounded memory
        for record in batch.to_pylist():
            n += 1
            yield RawRow(n, record, None, "")


# --- dir: source files + labels file -------------------------------------------------
def labels_path(root: Path, cfg: DatasetConfig) -> Path:
    if not cfg.labels_file:
        raise DatasetError(f"format 'dir' needs dataset.labels_file: a CSV or JSONL next to {root} with "
                           f"columns 'path' (relative to the directory) and '{cfg.label_column}'")
    given = Path(cfg.labels_file).expanduser()
    # a relative labels_file is looked up in the dataset directory first, then from the cwd
    candidates = [given] if given.is_absolute() else [root / given, given]
    path = next((p for p in candidates if p.exists()), candidates[0])
    check_exists(path, "labels file", "dataset.labels_file")
    return path


def _labels_reader(path: Path) -> Reader:
    name = _suffix_name(path)
    if name.endswith(CSV_SUFFIXES):
        return read_csv
    if name.endswith(JSONL_SUFFIXES):
        return read_jsonl
    raise DatasetError(f"labels file {path} must be CSV (.csv) or JSONL (.jsonl); got '{path.suffix}'")


@FORMATS.register("dir")
def read_dir(root: Path, cfg: DatasetConfig) -> Iterator[RawRow]:
    lpath = labels_path(root, cfg)
    base, checked = root.resolve(), False
    for row in _labels_reader(lpath)(lpath, cfg):
        if row.error is not None:
            yield row
            continue
        if not checked:
            _check_path_column(row.record, lpath)
            checked = True
        yield _dir_row(base, row, cfg)


def _check_path_column(record: dict, lpath: Path) -> None:
    if "path" not in record:
        cols = sorted(record)
        raise DatasetError(f"labels file {lpath} has no 'path' column{did_you_mean('path', cols)}; "
                           f"columns present: {', '.join(cols)}")


def _dir_row(base: Path, row: RawRow, cfg: DatasetConfig) -> RawRow:
    record = dict(row.record)
    rel = str(record.get("path") or "").strip()
    target = (base / rel).resolve() if rel and "\x00" not in rel else None
    if target is None or not target.is_relative_to(base):  # also refuses ../ escapes and symlinks out
        return row._replace(record=None, error=f"file not found: path {rel!r} is empty, invalid or outside {base}",
                            reason="missing_code")
    if not target.is_file():
        return row._replace(record=None, error=f"file not found: {rel}", reason="missing_code")
    if target.stat().st_size > 4 * cfg.max_code_chars:  # > 4 bytes/char: surely too long, don't read it
        return row._replace(record=None, error=f"{rel} is {target.stat().st_size} bytes, over "
                            f"dataset.max_code_chars={cfg.max_code_chars}", reason="code_too_long")
    try:
        record[cfg.code_column] = target.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return row._replace(record=None, error=f"non-UTF-8 bytes in {rel} ({exc.reason} at byte {exc.start})",
                            reason="non_utf8")
    if cfg.group_column and cfg.group_column not in record:
        record[cfg.group_column] = Path(rel).parent.as_posix()  # files of one folder form a group
    if cfg.id_column and cfg.id_column not in record:
        record[cfg.id_column] = rel
    return row._replace(record=record)


# --- fingerprints ------------------------------------------------------------------
def _hash_file(digest: Any, path: Path) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)


def file_fingerprint(path: Path) -> str:
    """sha256 of the bytes as stored (a directory: its sorted relative paths and file bytes)."""
    path, digest = Path(path), hashlib.sha256()
    if path.is_dir():
        _hash_tree(digest, path)
    else:
        _hash_file(digest, path)
    return f"sha256:{digest.hexdigest()}"


def _hash_tree(digest: Any, root: Path, max_bytes: int | None = None) -> None:
    """Paths and bytes of the files the `dir` reader could read. A link out of the tree, a FIFO or
    device, or a file over `max_bytes` (refused by the reader as too long) is never opened: only its
    name (and size) count."""
    base = root.resolve()
    for file in sorted((p for p in root.rglob("*") if not p.is_dir()), key=lambda p: p.relative_to(root).as_posix()):
        rel = file.relative_to(root).as_posix().encode("utf-8", "surrogateescape")
        target = file.resolve()
        if not target.is_relative_to(base) or not target.is_file():
            digest.update(b"%d:%s-:" % (len(rel), rel))
            continue
        size = target.stat().st_size
        # lengths delimit path and content so no two trees hash alike by concatenation
        digest.update(b"%d:%s%d:" % (len(rel), rel, size))
        if max_bytes is None or size <= max_bytes:
            _hash_file(digest, target)


def dataset_fingerprint(path: Path, fmt: str, cfg: DatasetConfig) -> str:
    """For `dir`: the tree plus the labels file, which may live outside it."""
    if fmt != "dir":
        return file_fingerprint(path)
    digest = hashlib.sha256()
    _hash_tree(digest, path, max_bytes=4 * cfg.max_code_chars)  # as `_dir_row` refuses them
    digest.update(b"labels:")
    _hash_file(digest, labels_path(path, cfg))
    return f"sha256:{digest.hexdigest()}"
