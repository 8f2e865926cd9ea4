"""`cgtrain predict` input: stdin, files it cannot score, bounds and containment like training's."""
import json
import os

import pytest
from faults_kit import invoke, one_error_line

GOOD = "def f(src):\n    dst = [0] * 64\n    strcpy(dst, src)\n    return dst\n"


def predict(run, *args, input=None):
    return invoke("predict", "--run", run, *args, input=input)


def rows(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_stdin_jsonl_is_scored_row_by_row(trained):
    text = "".join(json.dumps({"id": f"r{i}", "code": f"void f{i}() {{ gets(buf); }}"}) + "\n" for i in range(3))
    result = predict(trained, "-", input=text)
    assert result.exit_code == 0, result.output
    out = rows(result)
    assert [r["id"] for r in out] == ["r0", "r1", "r2"] and all("probability" in r for r in out)


def test_stdin_source_is_split_into_functions(trained):
    result = predict(trained, "-", input=GOOD + "\n\ndef g(x):\n    return x\n")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in rows(result)] == ["<stdin>:f", "<stdin>:g"]


def test_empty_stdin_is_one_line(trained):
    result = predict(trained, "-", input="")
    assert result.exit_code == 2
    one_error_line(result.stderr, "standard input is empty")


def test_empty_and_broken_python_files_are_reported_per_file_not_scored(trained, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "empty.py").write_text("  \n")
    (src / "broken.py").write_text("def f(:\n    pass\n")
    (src / "ok.py").write_text(GOOD)
    result = predict(trained, src)
    assert result.exit_code == 0, result.output
    by_id = {r["id"]: r for r in rows(result)}
    assert "empty file" in by_id["empty.py"]["error"] and "probability" not in by_id["empty.py"]
    assert "syntax error at line 1" in by_id["broken.py"]["error"]
    assert "probability" in by_id["ok.py:f"]
    assert "not scored: broken.py" in result.stderr and "not scored: empty.py" in result.stderr


def test_a_file_of_which_nothing_can_be_scored_exits_2_with_one_error_line(trained, tmp_path):
    """Every row without the code field (a file of another shape): each row's reason is still written, and the
    command fails with one line instead of exiting 0 with no prediction a pipeline could notice."""
    path = tmp_path / "other.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": GOOD}) + "\n" for i in range(3)))
    result = predict(trained, path)
    assert result.exit_code == 2 and [r["id"] for r in rows(result)] == ["r0", "r1", "r2"]
    assert "error: none of the 3 item(s)" in result.stderr and "no 'code' string" in result.stderr
    assert "Traceback" not in result.output


def test_broken_jsonl_lines_are_reported_with_their_line_numbers(trained, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "code": GOOD}) + "\n{not json\n\n" + json.dumps({"id": "c"}) + "\n[1]\n")
    out = rows(predict(trained, path))
    assert [r["id"] for r in out] == ["a", "line:2", "c", "line:5"]
    assert "probability" in out[0]
    assert out[1]["error"].startswith("unparseable JSON on line 2")
    assert out[2]["error"] == "line 4: no 'code' string in this row"
    assert "line 5 is JSON list" in out[3]["error"]


def test_max_code_chars_and_file_size_bound_predict_input(trained, tmp_path):
    limit = 200_000  # the run's dataset.max_code_chars (the default)
    (tmp_path / "long.py").write_text("def f():\n    x = 1\n" + "    x += 1\n" * (limit // 11 + 10))
    (tmp_path / "huge.c").write_text("x" * (4 * limit + 1))
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "big", "code": "y" * (limit + 1)}) + "\n")
    for name, needle in (("long.py", "> max_code_chars=200000"), ("huge.c", "bytes, over 4 x max_code_chars"),
                         ("in.jsonl", "> max_code_chars=200000")):
        out = rows(predict(trained, tmp_path / name))
        assert len(out) == 1 and needle in out[0]["error"], out


def test_a_directory_walk_does_not_leave_the_directory(trained, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text(GOOD)
    src = tmp_path / "src"
    src.mkdir()
    (src / "inside.py").write_text(GOOD)
    (src / "escape.py").symlink_to(outside)
    (src / "sub").symlink_to(tmp_path)  # a directory link out: not walked at all
    os.mkfifo(src / "pipe.py")  # reading it would block forever
    by_id = {r["id"]: r for r in rows(predict(trained, src))}
    assert "probability" in by_id["inside.py:f"]
    assert "outside" in by_id["escape.py"]["error"] and "not read" in by_id["escape.py"]["error"]
    assert "not a regular file" in by_id["pipe.py"]["error"]
    assert not any(k.startswith("sub") for k in by_id)


@pytest.mark.parametrize("target", ["model.skops", "metrics.json", "new.jsonl"])
def test_out_never_writes_inside_a_run_directory(trained, tmp_path, target):
    (tmp_path / "in.py").write_text(GOOD)
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    result = predict(trained, tmp_path / "in.py", "--out", trained / target)
    assert result.exit_code == 2
    one_error_line(result.stderr, "inside the run directory")
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before


def test_out_never_replaces_the_model_file_or_the_input(trained, tmp_path):
    import shutil

    model = shutil.copy(trained / "model.skops", tmp_path / "m.skops")
    (tmp_path / "in.py").write_text(GOOD)
    same_model = invoke("predict", "--model", model, tmp_path / "in.py", "--out", model)
    assert same_model.exit_code == 2
    one_error_line(same_model.stderr, "is the model file")
    same_input = predict(trained, tmp_path / "in.py", "--out", tmp_path / "in.py")
    assert same_input.exit_code == 2
    one_error_line(same_input.stderr, "is the input")
    assert (tmp_path / "in.py").read_text() == GOOD


def test_missing_input_is_one_line(trained, tmp_path):
    result = predict(trained, tmp_path / "nope.py")
    assert result.exit_code == 2
    one_error_line(result.stderr, "input not found")


def test_the_dataset_fingerprint_opens_no_file_the_loader_would_refuse(tmp_path):
    from cgtrain.data.formats import dataset_fingerprint
    from cgtrain.request import DatasetConfig

    root = tmp_path / "src"
    root.mkdir()
    (root / "a.c").write_text("int a;")
    (root / "labels.csv").write_text("path,label\na.c,0\n")
    cfg = DatasetConfig(path=str(root), format="dir", labels_file="labels.csv", max_code_chars=100)
    before = dataset_fingerprint(root, "dir", cfg)
    os.mkfifo(root / "pipe.c")  # opening it would block
    (root / "secret.c").symlink_to("/etc/hostname")  # outside the tree
    (root / "big.c").write_text("x" * 401)  # over 4 x max_code_chars: the reader refuses it unread
    after = dataset_fingerprint(root, "dir", cfg)  # returns: nothing above was opened
    assert after != before
    (root / "big.c").write_text("y" * 401)  # content of a refused file does not matter
    assert dataset_fingerprint(root, "dir", cfg) == after
