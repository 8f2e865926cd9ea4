"""Label conflicts: the same code up to hapax names, carrying different labels."""
import json

import numpy as np
import pandas as pd

from cgtrain.data.conflicts import CONFLICTS_FILE, apply_policy, body_keys, conflict_mask
from cgtrain.data.loading import LoadedDataset

# Juliet-style: one-line sinks that differ only in a random callee name, labelled bad and good.
BAD_SINK = "void func(int data)\n{\n    tc_0042c3(data);\n}"
GOOD_SINK = "void func(int data)\n{\n  tc_5b9673(data);\n}"
# A variable-misuse mutant swaps two names that both occur elsewhere: not a conflict.
CLEAN = "def f(a, b):\n    return a - b"
MUTANT = "def f(a, b):\n    return b - b"


def test_hapax_names_are_masked_and_shared_names_kept():
    keys = body_keys([BAD_SINK, GOOD_SINK, "int g(int data) { return strcpy(data); }", "strcpy(x); x;"])
    assert keys[0] == keys[1] == "void func(int data) { ID(data); }"
    assert "strcpy" in keys[2] and "strcpy" in keys[3]


def test_conflicts_flag_only_bodies_with_two_labels():
    codes = [BAD_SINK, GOOD_SINK, CLEAN, MUTANT, "int h(void) { return 1; }", "int h(void) { return 1; }"]
    labels = [1, 0, 0, 1, 1, 1]
    assert conflict_mask(codes, labels).tolist() == [True, True, False, False, False, False]


def _dataset(codes, labels):
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(codes))], "code": codes, "label": labels,
                          "group": [f"g{i // 2}" for i in range(len(codes))]})
    return LoadedDataset(frame, (0, 1), len(codes), 0, {}, None, "sha256:x")


def test_drop_policy_removes_conflicts_and_lists_them(tmp_path):
    ds = _dataset([BAD_SINK, GOOD_SINK, CLEAN, MUTANT], [1, 0, 0, 1])
    kept, report = apply_policy(ds, "drop", tmp_path)
    assert kept.frame["id"].tolist() == ["r2", "r3"]
    assert (report.rows, report.bodies, report.dropped) == (2, 1, 2)
    listed = [json.loads(line) for line in (tmp_path / CONFLICTS_FILE).read_text().splitlines()]
    assert [(e["id"], e["label"], e["reason"]) for e in listed] == [("r0", "1", "label_conflict"),
                                                                   ("r1", "0", "label_conflict")]


def test_keep_policy_reports_without_dropping(tmp_path):
    ds = _dataset([BAD_SINK, GOOD_SINK, CLEAN, MUTANT], [1, 0, 0, 1])
    kept, report = apply_policy(ds, "keep", tmp_path)
    assert len(kept.frame) == 4 and (report.rows, report.dropped, report.path) == (2, 0, None)
    assert not (tmp_path / CONFLICTS_FILE).exists()
    assert apply_policy(ds, "off", tmp_path)[1].rows == 0


def test_prepare_drops_conflicts_before_splitting(tmp_path):
    from cgtrain.core.prepared import dataset_record, prepare
    from cgtrain.request import TrainingRequest

    rows = []
    for i in range(12):  # 12 families, each with a bad and a good function that differ in a shared name
        rows.append({"id": f"b{i}", "code": f"void f{i}(char *d) {{ strcpy(d, src{i}); }}", "label": 1, "group": f"g{i}"})
        rows.append({"id": f"g{i}", "code": f"void f{i}(char *d) {{ strncpy(d, src{i}, 9); }}", "label": 0, "group": f"g{i}"})
    for i in range(3):  # sinks that differ only in a random callee name, with both labels
        rows.append({"id": f"sb{i}", "code": f"void func(int data) {{ tc_{i}a{i}(data); }}", "label": 1, "group": f"s{i}"})
        rows.append({"id": f"sg{i}", "code": f"void func(int data) {{ tc_{i}b{i}(data); }}", "label": 0, "group": f"s{i}"})
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    request = TrainingRequest.model_validate({"dataset": {"path": str(data), "language": "c",
                                                          "label_conflicts": "drop"},
                                              "validation": {"folds": 2, "test_fraction": 0.25}})
    prepared = prepare(request, tmp_path, say=lambda m: None)
    assert sorted(prepared.dataset.frame["id"]) == sorted(r["id"] for r in rows[:24])
    assert prepared.label_conflicts == {"policy": "drop", "rows": 6, "bodies": 1, "dropped": 6,
                                        "path": str(tmp_path / CONFLICTS_FILE)}
    assert dataset_record(request, prepared)["label_conflicts"]["dropped"] == 6


def test_a_dataset_that_is_all_conflicts_says_so_instead_of_a_split_error(tmp_path):
    """The same function under both labels (a code column that is constant, or the wrong column): the drop left 0
    rows and the run stopped with 'the dataset has 0 usable rows in 0 groups', which named no cause."""
    import pytest

    from cgtrain.core.prepared import prepare
    from cgtrain.errors import DatasetError
    from cgtrain.request import TrainingRequest

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"code": "int f() { return 0; }", "label": i % 2}) + "\n" for i in range(40)))
    request = TrainingRequest.model_validate({"dataset": {"path": str(data), "language": "c",
                                                          "label_conflicts": "drop"}})
    with pytest.raises(DatasetError) as err:
        prepare(request, tmp_path, say=lambda m: None)
    line = str(err.value)
    assert "40 rows were dropped as label conflicts" in line and "leaving 0 rows" in line
    assert "dataset.label_conflicts=keep" in line and "\n" not in line
