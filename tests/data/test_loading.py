"""Dataset loading: formats, bad-row quarantine, labels, fingerprints, group sampling."""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cgtrain.data.formats import detect_format
from cgtrain.data.loading import DatasetError, TooManyBadRows, file_fingerprint, load_dataset
from cgtrain.request import DatasetConfig

N_GOOD = 294  # + 6 bad rows = 300: 2% bad


def good_records(n: int = N_GOOD) -> list[dict]:
    # multi-line code with quotes and commas exercises CSV quoting and line counting
    return [{"id": f"f{i}", "code": f'int f{i}(int x) {{\n  puts("a, \\"b\\"");\n  return x + {i};\n}}',
             "label": i % 2, "group": f"g{i // 4}", "cwe": f"CWE{100 + i % 3}"} for i in range(n)]


def jsonl_bytes(records: list[dict]) -> list[bytes]:
    return [json.dumps(r).encode() + b"\n" for r in records]


def cfg(path: Path, **kw) -> DatasetConfig:
    kw.setdefault("segment_columns", ["cwe"])
    return DatasetConfig(path=str(path), **kw)


def quarantine(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def corrupted(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """300 lines, 6 bad ones at known lines (1-based) with their expected reasons."""
    lines = jsonl_bytes(good_records())
    bad = {
        10: (b'{"id": "x1", "code": "int a;", "label": \n', "unparseable"),
        50: (json.dumps({"id": "x2", "code": "int b;", "group": "gx"}).encode() + b"\n", "missing_label"),
        90: (b"\x89PNG\r\x1a\x00\xff\xfe binary junk \x80\x81\n", "non_utf8"),
        130: (json.dumps({"id": "x3", "code": "   \n", "label": 1}).encode() + b"\n", "empty_code"),
        170: (jsonl_bytes([good_records()[5]])[0], "duplicate_id"),
        210: (json.dumps({"id": "x4", "code": "int c;", "label": 7}).encode() + b"\n", "unknown_label"),
    }
    for line in sorted(bad):
        lines.insert(line - 1, bad[line][0])
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(lines))
    return path, {line: reason for line, (_, reason) in bad.items()}


def test_jsonl_quarantines_each_bad_row_with_line_and_reason(corrupted, tmp_path):
    path, expected = corrupted
    ds = load_dataset(cfg(path, max_bad_fraction=0.05), "binary", tmp_path / "q" / "bad.jsonl")
    assert (ds.n_read, ds.n_bad, len(ds.frame)) == (300, 6, N_GOOD)
    assert list(ds.frame.columns) == ["id", "code", "label", "group", "cwe"]
    assert ds.classes == (0, 1) and set(ds.frame["label"]) == {0, 1}
    assert ds.frame["id"].is_unique and ds.frame.index.equals(ds.frame.reset_index(drop=True).index)
    assert ds.bad_reasons == {reason: 1 for reason in expected.values()}
    entries = quarantine(ds.quarantine_path)
    assert {e["line"]: e["reason"] for e in entries} == expected
    assert all(set(e) == {"line", "reason", "detail", "excerpt"} and len(e["excerpt"]) <= 200 for e in entries)
    assert "first seen on line 6" in next(e["detail"] for e in entries if e["reason"] == "duplicate_id")


def test_too_many_bad_rows_names_count_and_quarantine(corrupted, tmp_path):
    path, _ = corrupted
    qpath = tmp_path / "bad.jsonl"
    with pytest.raises(TooManyBadRows) as info:
        load_dataset(cfg(path, max_bad_fraction=0.005), "binary", qpath)
    msg = str(info.value)
    assert "6 of 300" in msg and "2.00%" in msg and str(qpath) in msg and "max_bad_fraction" in msg
    assert (info.value.n_bad, info.value.n_read, info.value.quarantine_path) == (6, 300, qpath)
    assert len(quarantine(qpath)) == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_clean_data_writes_no_quarantine(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(jsonl_bytes(good_records(20))))
    ds = load_dataset(cfg(path), "binary", tmp_path / "bad.jsonl")
    assert ds.n_bad == 0 and ds.quarantine_path is None and not (tmp_path / "bad.jsonl").exists()


# --- every format loads the same records --------------------------------------------
def write_csv(path: Path, records: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def write_dir(root: Path, records: list[dict]) -> Path:
    rows = []
    for r in records:
        rel = f"src/{r['group']}/{r['id']}.c"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(r["code"], encoding="utf-8")
        rows.append({"path": rel, **{k: v for k, v in r.items() if k != "code"}})
    write_csv(root / "labels.csv", rows)
    return root


def write_format(tmp_path: Path, fmt: str, records: list[dict]) -> Path:
    if fmt == "jsonl.gz":
        path = tmp_path / "d.jsonl.gz"
        path.write_bytes(gzip.compress(b"".join(jsonl_bytes(records))))
    elif fmt == "csv":
        write_csv(path := tmp_path / "d.csv", records)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path := tmp_path / "d.parquet", row_group_size=7)
    else:
        path = write_dir(tmp_path / "tree", records)
    return path


@pytest.mark.parametrize("fmt", ["jsonl.gz", "csv", "parquet", "dir"])
def test_formats_load_the_same_records(tmp_path, fmt):
    records = good_records(40)
    ref_path = tmp_path / "ref.jsonl"
    ref_path.write_bytes(b"".join(jsonl_bytes(records)))
    ref = load_dataset(cfg(ref_path), "binary", tmp_path / "q0.jsonl").frame
    path = write_format(tmp_path, fmt, records)
    extra = {"labels_file": "labels.csv"} if fmt == "dir" else {}
    ds = load_dataset(cfg(path, **extra), "binary", tmp_path / "q.jsonl")
    assert ds.n_bad == 0
    got = ds.frame.sort_values("id", ignore_index=True)
    assert got.equals(ref.sort_values("id", ignore_index=True))


@pytest.mark.parametrize("name,fmt", [("a.jsonl", "jsonl"), ("a.jsonl.gz", "jsonl"), ("a.ndjson", "jsonl"),
                                      ("a.CSV", "csv"), ("a.parquet", "parquet"), ("a.pq", "parquet")])
def test_auto_detection_by_suffix(tmp_path, name, fmt):
    (tmp_path / name).write_bytes(b"")
    assert detect_format(tmp_path / name) == fmt
    assert detect_format(tmp_path) == "dir"


def test_auto_rejects_unknown_suffix(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("x")
    with pytest.raises(DatasetError, match=r"data\.txt.*jsonl.*parquet"):
        load_dataset(cfg(path), "binary", tmp_path / "q.jsonl")


def test_csv_line_numbers_count_physical_lines(tmp_path):
    path = tmp_path / "d.csv"
    write_csv(path, good_records(3))  # header + 3 records of 4 lines each: lines 1..13
    with open(path, "ab") as fh:
        fh.write(b'f9,"int x;\nint y;",1,g9\n')  # lines 14-15: one field short
        fh.write(b"f10,int \xff\xfe;,1,g9,CWE1\n")  # line 16: bad UTF-8
        fh.write(b'f11,"int z;",1,g9,CWE1\n')  # line 17: fine
    ds = load_dataset(cfg(path, max_bad_fraction=1), "binary", tmp_path / "q.jsonl")
    assert list(ds.frame["id"]) == ["f0", "f1", "f2", "f11"]
    assert [(e["line"], e["reason"]) for e in quarantine(ds.quarantine_path)] == [(14, "unparseable"),
                                                                                  (16, "non_utf8")]


def test_dir_groups_by_parent_and_quarantines_missing_or_binary_files(tmp_path):
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.c").write_text("int x;")
    (root / "a" / "y.c").write_text("int y;")
    (root / "b" / "z.c").write_text("int z;")
    (root / "b" / "junk.c").write_bytes(b"\xff\xfe\x00\x80")
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"path": "a/x.c", "label": 1}, {"path": "a/y.c", "label": 0}, {"path": "b/z.c", "label": 0},
        {"path": "b/gone.c", "label": 1}, {"path": "b/junk.c", "label": 1}, {"path": "../labels.jsonl", "label": 1}]))
    config = cfg(root, format="dir", labels_file=str(tmp_path / "labels.jsonl"), segment_columns=[],
                 max_bad_fraction=0.6)
    ds = load_dataset(config, "binary", tmp_path / "q.jsonl")
    assert dict(zip(ds.frame["id"], ds.frame["group"])) == {"a/x.c": "a", "a/y.c": "a", "b/z.c": "b"}
    bad = quarantine(ds.quarantine_path)
    assert [(e["line"], e["reason"]) for e in bad] == [(4, "missing_code"), (5, "non_utf8"), (6, "missing_code")]
    assert "file not found" in bad[0]["detail"] and "b/gone.c" in bad[0]["excerpt"]


def test_dir_without_labels_file_says_what_to_add(tmp_path):
    with pytest.raises(DatasetError, match="labels_file"):
        load_dataset(cfg(tmp_path, format="dir"), "binary", tmp_path / "q.jsonl")


# --- errors that name the thing and the fix -----------------------------------------
def test_missing_file_is_named_with_did_you_mean(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(DatasetError) as info:
        load_dataset(cfg(tmp_path / "trian.jsonl"), "binary", tmp_path / "q.jsonl")
    assert "trian.jsonl" in str(info.value) and "did you mean 'train.jsonl'" in str(info.value)
    assert "dataset.path" in str(info.value)


@pytest.mark.parametrize("key,value,hint", [("code_column", "cod", "code"), ("label_column", "lable", "label")])
def test_missing_column_lists_columns_and_suggests(tmp_path, key, value, hint):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(jsonl_bytes(good_records(5))))
    with pytest.raises(DatasetError) as info:
        load_dataset(cfg(path, **{key: value}), "binary", tmp_path / "q.jsonl")
    msg = str(info.value)
    assert f"'{value}'" in msg and f"did you mean '{hint}'" in msg and "columns present: id, code, label" in msg
    assert f"dataset.{key}" in msg and not (tmp_path / "q.jsonl").exists()


def test_one_class_only_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(jsonl_bytes([dict(r, label=1) for r in good_records(6)])))
    with pytest.raises(DatasetError, match="at least 2"):
        load_dataset(cfg(path), "binary", tmp_path / "q.jsonl")


# --- row checks, ids ----------------------------------------------------------------
def test_nul_bytes_long_and_non_text_code_are_quarantined(tmp_path):
    recs = good_records(6) + [{"id": "n", "code": "int\x00x;", "label": 1},
                              {"id": "l", "code": "x" * 101, "label": 1}, {"id": "t", "code": 42, "label": 0},
                              {"id": "m", "label": 0}]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(jsonl_bytes(recs)))
    ds = load_dataset(cfg(path, max_code_chars=100, max_bad_fraction=0.5), "binary", tmp_path / "q.jsonl")
    assert ds.bad_reasons == {"nul_bytes": 1, "code_too_long": 1, "code_not_text": 1, "missing_code": 1}


def test_ids_fall_back_to_line_numbers_and_groups_to_rows(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n\n".join(json.dumps({"code": f"int x{i};", "label": i % 2}) for i in range(3)))
    ds = load_dataset(cfg(path, segment_columns=["cwe"]), "binary", tmp_path / "q.jsonl")
    assert list(ds.frame["id"]) == ["1", "3", "5"]  # blank lines skipped, not counted as rows
    assert list(ds.frame["group"]) == ["row:1", "row:3", "row:5"]
    assert set(ds.frame["cwe"]) == {"(missing)"} and ds.n_read == 3


# --- labels -------------------------------------------------------------------------
def test_binary_true_false_labels(tmp_path):
    labels = [True, False, "true", "false", "1", "0", 1, 0, "TRUE"]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "code": "int x;", "label": v}) for i, v in enumerate(labels)))
    ds = load_dataset(cfg(path, segment_columns=[]), "binary", tmp_path / "q.jsonl")
    assert ds.classes == (0, 1) and list(ds.frame["label"]) == [1, 0, 1, 0, 1, 0, 1, 0, 1]


def test_binary_with_named_classes(tmp_path):
    path = tmp_path / "d.csv"
    write_csv(path, [{"id": i, "code": "int x;", "label": v} for i, v in enumerate(["safe", "vuln", "vuln", "?"])])
    ds = load_dataset(cfg(path, classes=["safe", "vuln"], segment_columns=[], max_bad_fraction=0.3),
                      "binary", tmp_path / "q.jsonl")
    assert ds.classes == ("safe", "vuln") and list(ds.frame["label"]) == [0, 1, 1]
    assert ds.bad_reasons == {"unknown_label": 1}


def test_multiclass_string_labels(tmp_path):
    kinds = ["overflow", "uaf", "injection", "uaf", "overflow", "none"]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "code": "f();", "label": k}) for i, k in enumerate(kinds)))
    ds = load_dataset(cfg(path, segment_columns=[]), "multiclass", tmp_path / "q.jsonl")
    assert ds.classes == ("injection", "none", "overflow", "uaf")
    assert [ds.classes[i] for i in ds.frame["label"]] == kinds
    fixed = load_dataset(cfg(path, segment_columns=[], classes=["uaf", "overflow", "injection"],
                             max_bad_fraction=0.2), "multiclass", tmp_path / "q2.jsonl")
    assert fixed.classes == ("uaf", "overflow", "injection") and fixed.bad_reasons == {"unknown_label": 1}


# --- fingerprints, sampling ---------------------------------------------------------
def test_fingerprint_tracks_content(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    data = b"".join(jsonl_bytes(good_records(10)))
    a.write_bytes(data)
    b.write_bytes(data)
    assert file_fingerprint(a) == file_fingerprint(b) and file_fingerprint(a).startswith("sha256:")
    b.write_bytes(data[:-2] + b"x\n")
    assert file_fingerprint(a) != file_fingerprint(b)
    assert load_dataset(cfg(a), "binary", tmp_path / "q.jsonl").fingerprint == file_fingerprint(a)


def test_dir_fingerprint_covers_files_and_labels(tmp_path):
    root = write_dir(tmp_path / "tree", good_records(8))
    config = cfg(root, labels_file="labels.csv")
    first = load_dataset(config, "binary", tmp_path / "q.jsonl").fingerprint
    assert load_dataset(config, "binary", tmp_path / "q.jsonl").fingerprint == first
    (root / "src/g0/f0.c").write_text("int changed;")
    assert load_dataset(config, "binary", tmp_path / "q.jsonl").fingerprint != first


def test_sample_keeps_whole_groups_and_is_deterministic(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(jsonl_bytes(good_records(200))))  # 50 groups of 4
    full = load_dataset(cfg(path), "binary", tmp_path / "q.jsonl").frame
    sizes = full["group"].value_counts()
    one = load_dataset(cfg(path, sample=30), "binary", tmp_path / "q.jsonl", seed=3).frame
    again = load_dataset(cfg(path, sample=30), "binary", tmp_path / "q.jsonl", seed=3).frame
    other = load_dataset(cfg(path, sample=30), "binary", tmp_path / "q.jsonl", seed=4).frame
    assert one.equals(again) and not one.equals(other)
    assert 30 <= len(one) < 30 + 4
    assert (one["group"].value_counts() == sizes[one["group"].unique()]).all()  # no group split
    assert one.index.equals(one.reset_index(drop=True).index)
    assert len(load_dataset(cfg(path, sample=500), "binary", tmp_path / "q.jsonl").frame) == 200


def test_bom_and_lone_surrogates_do_not_break_the_load(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes("\ufeff".encode() + b'{"id": "a", "code": "int a;", "label": 1, "cwe": "x\\udc80"}\n'
                     b'{"id": "b", "code": "int \\ud800;", "label": 0}\n{"id": "c", "code": "int c;", "label": 0}\n')
    ds = load_dataset(cfg(path, max_bad_fraction=0.5), "binary", tmp_path / "q.jsonl")
    assert list(ds.frame["id"]) == ["a", "c"] and ds.bad_reasons == {"non_utf8": 1}
    assert ds.frame["cwe"][0] == "x?"
    csv_path = tmp_path / "d.csv"
    csv_path.write_bytes("\ufeffid,code,label\n1,int x;,1\n2,int y;,0\n".encode())
    frame = load_dataset(cfg(csv_path, segment_columns=[]), "binary", tmp_path / "q2.jsonl").frame
    assert list(frame["id"]) == ["1", "2"]
