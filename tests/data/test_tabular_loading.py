"""Table columns, regression targets and optional labels in the loader; bundled sklearn datasets."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from cgtrain.data.bundled import request_dataset, sklearn_frame, write_sklearn_dataset
from cgtrain.data.loading import DatasetError, load_dataset
from cgtrain.request import DatasetConfig

CSV = (
    "id,age,city,label\n"
    "a,31,paris,1\n"
    "b,,berlin,0\n"       # missing number: kept, imputed later
    "c,forty,rome,1\n"    # line 4: not a number -> quarantined
    "d,NA,,0\n"           # NA token and an empty category: both missing
    "e,27.5,paris,1\n"
)


def table_cfg(path, **kw) -> DatasetConfig:
    base = dict(path=str(path), code_column=None, numeric_columns=["age"], categorical_columns=["city"],
                group_column=None, max_bad_fraction=0.5)
    return DatasetConfig(**{**base, **kw})


def quarantined(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_non_numeric_value_is_quarantined_with_its_line_and_missing_values_are_kept(tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    ds = load_dataset(table_cfg(tmp_path / "t.csv"), "binary", tmp_path / "q.jsonl")
    assert ds.n_read == 5 and ds.n_bad == 1 and ds.bad_reasons == {"non_numeric": 1}
    [bad] = quarantined(tmp_path / "q.jsonl")
    assert bad["line"] == 4 and bad["reason"] == "non_numeric"
    assert "'age'" in bad["detail"] and "forty" in bad["detail"] and "categorical_columns" in bad["detail"]
    assert ds.frame["id"].tolist() == ["a", "b", "d", "e"] and set(ds.frame["code"]) == {""}
    age = ds.table["age"].tolist()
    assert age[0] == 31.0 and math.isnan(age[1]) and math.isnan(age[2]) and age[3] == 27.5
    assert ds.table["city"].tolist() == ["paris", "berlin", None, "paris"]
    assert ds.frame["label"].tolist() == [1, 0, 0, 1]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_jsonl_and_parquet_tables_load_like_csv(tmp_path, fmt):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "age": [31.0, None, 40.0], "city": ["x", None, "y"],
                          "label": [1, 0, 1]})
    path = tmp_path / f"t.{fmt}"
    frame.to_json(path, orient="records", lines=True) if fmt == "jsonl" else frame.to_parquet(path)
    ds = load_dataset(table_cfg(path), "binary", tmp_path / "q.jsonl")
    assert ds.n_bad == 0 and ds.table["city"].tolist() == ["x", None, "y"]
    assert ds.table["age"].iloc[0] == 31.0 and math.isnan(ds.table["age"].iloc[1])


@pytest.mark.parametrize("name,sep", [("t.csv", ";"), ("t.tsv", "\t"), ("t.csv", "|"), ("t.tab", "\t")])
def test_semicolon_tab_and_pipe_separated_files_load_like_comma_csv(tmp_path, name, sep):
    """A spreadsheet exported with `;` (European locales) or a .tsv reads as the same table as its comma CSV:
    the delimiter is read from the header line. `cgtrain automl` infers the columns from the same reading."""
    from cgtrain.flows.automl_request import peek

    (tmp_path / "c.csv").write_text(CSV)
    (tmp_path / name).write_text(CSV.replace(",", sep))
    comma = load_dataset(table_cfg(tmp_path / "c.csv"), "binary", tmp_path / "q1.jsonl")
    other = load_dataset(table_cfg(tmp_path / name), "binary", tmp_path / "q2.jsonl")
    assert other.n_bad == comma.n_bad == 1 and other.frame["id"].tolist() == comma.frame["id"].tolist()
    assert other.table["city"].tolist() == comma.table["city"].tolist() and other.frame["label"].tolist() == [1, 0, 0, 1]
    assert list(peek(tmp_path / name).columns) == ["id", "age", "city", "label"]


def test_a_comma_csv_whose_quoted_header_names_hold_semicolons_stays_comma_separated(tmp_path):
    (tmp_path / "q.csv").write_text('"age; years",city,label\n31,paris,1\n40,rome,0\n')
    ds = load_dataset(table_cfg(tmp_path / "q.csv", numeric_columns=["age; years"], id_column=None), "binary",
                      tmp_path / "q.jsonl")
    assert ds.n_bad == 0 and ds.table["age; years"].tolist() == [31.0, 40.0]


def test_a_header_that_names_a_column_twice_is_one_clear_error(tmp_path):
    """Two columns named `age` leave no way to tell which is meant (a reader that keeps the last drops the other)."""
    (tmp_path / "d.csv").write_text("age,city,age,label\n31,paris,4,1\n40,rome,5,0\n")
    with pytest.raises(DatasetError, match=r"names column 'age' more than once \(columns 1, 3\)"):
        load_dataset(table_cfg(tmp_path / "d.csv", id_column=None), "binary", tmp_path / "q.jsonl")


def test_an_infinite_number_in_a_numeric_column_is_missing_not_a_bad_row(tmp_path):
    """`inf` / `-Infinity` (a division by zero in an exported table) is imputed like a missing value; `infinite`
    is still not a number."""
    (tmp_path / "i.csv").write_text("x,label\n1.5,1\ninf,0\n-Infinity,1\ninfinite,0\n2,1\n")
    ds = load_dataset(table_cfg(tmp_path / "i.csv", numeric_columns=["x"], categorical_columns=[], id_column=None),
                      "binary", tmp_path / "q.jsonl")
    assert ds.bad_reasons == {"non_numeric": 1} and [q["line"] for q in quarantined(tmp_path / "q.jsonl")] == [5]
    x = ds.table["x"].tolist()
    assert x[0] == 1.5 and math.isnan(x[1]) and math.isnan(x[2]) and x[3] == 2.0


def test_regression_targets_are_floats_and_a_text_target_is_quarantined(tmp_path):
    (tmp_path / "r.csv").write_text("x,label\n1,2.5\n2,abc\n3,\n4,7\n5,1e3\n")
    ds = load_dataset(table_cfg(tmp_path / "r.csv", numeric_columns=["x"], categorical_columns=[], id_column=None),
                      "regression", tmp_path / "q.jsonl")
    assert ds.frame["label"].dtype == np.float64 and ds.frame["label"].tolist() == [2.5, 7.0, 1000.0]
    assert ds.classes == () and ds.bad_reasons == {"non_numeric_label": 1, "missing_label": 1}
    assert [q["line"] for q in quarantined(tmp_path / "q.jsonl")] == [3, 4]


def test_a_constant_regression_target_is_refused(tmp_path):
    (tmp_path / "r.csv").write_text("x,label\n1,5\n2,5\n")
    with pytest.raises(DatasetError, match="target that varies"):
        load_dataset(table_cfg(tmp_path / "r.csv", numeric_columns=["x"], categorical_columns=[]),
                     "regression", tmp_path / "q.jsonl")


def test_unsupervised_labels_are_optional(tmp_path):
    (tmp_path / "u.csv").write_text("x,label\n1,1\n2,\n3,0\n")
    cfg = table_cfg(tmp_path / "u.csv", numeric_columns=["x"], categorical_columns=[])
    ds = load_dataset(cfg, "anomaly", tmp_path / "q.jsonl")
    assert ds.n_bad == 0 and ds.frame["label"].tolist() == [1, -1, 0]
    unlabelled = load_dataset(table_cfg(tmp_path / "u.csv", numeric_columns=["x"], categorical_columns=[],
                                        label_column=None), "clustering", tmp_path / "q2.jsonl")
    assert unlabelled.frame["label"].tolist() == [-1, -1, -1] and unlabelled.classes == ()


def test_a_missing_feature_column_is_a_config_error_naming_the_field(tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    with pytest.raises(DatasetError, match=r"numeric column 'agee' not found.*did you mean 'age'.*numeric_columns"):
        load_dataset(table_cfg(tmp_path / "t.csv", numeric_columns=["agee"]), "binary", tmp_path / "q.jsonl")


def test_code_and_table_columns_load_side_by_side(tmp_path):
    rows = [{"id": str(i), "code": f"def f{i}(): return {i}", "size": i, "label": i % 2} for i in range(6)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DatasetConfig(path=str(tmp_path / "c.jsonl"), numeric_columns=["size"], group_column=None)
    ds = load_dataset(cfg, "binary", tmp_path / "q.jsonl")
    assert ds.frame["code"].iloc[2] == "def f2(): return 2" and ds.table["size"].tolist() == [0, 1, 2, 3, 4, 5]


def test_bundled_sklearn_datasets_are_written_as_tables(tmp_path):
    info = write_sklearn_dataset("diabetes", tmp_path / "d.csv")
    frame = pd.read_csv(tmp_path / "d.csv")
    assert info.task == "regression" and info.rows == len(frame) == 442
    assert list(frame.columns) == ["id", *info.numeric_columns, "label"]
    ds = load_dataset(DatasetConfig(**request_dataset(info, tmp_path / "d.csv")), "regression", tmp_path / "q.jsonl")
    assert ds.n_bad == 0 and len(ds.table.columns) == 10
    cancer, cinfo = sklearn_frame("breast_cancer")
    assert cinfo.task == "binary" and set(cancer["label"]) == {0, 1} and " " not in "".join(cinfo.numeric_columns)
    with pytest.raises(DatasetError, match="did you mean 'diabetes'"):
        sklearn_frame("diabetis")
