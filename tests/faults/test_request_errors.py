"""Request files and overrides a user can get wrong: one line each, exit 2, refused fast."""
import time

import pytest
from faults_kit import invoke, one_error_line


def _refused(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("invalid request") and len(lines) == 2, result.stderr  # header + one problem
    for needle in needles:
        assert needle in lines[1], (needle, result.stderr)


@pytest.mark.parametrize("name, data, needle", [
    ("utf16.yaml", "name: x\n".encode("utf-16"), "UTF-16"),
    ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), "not UTF-8 (byte 0xe9 at offset 9"),
    ("binary.yaml", bytes(range(256)) * 4, "binary"),
])
def test_request_file_in_another_encoding_is_one_line(tmp_path, name, data, needle):
    (tmp_path / name).write_bytes(data)
    _refused(invoke("validate", tmp_path / name), needle, "save the request as UTF-8")


def test_override_that_is_not_yaml_or_has_a_python_tag_is_one_line(tiny):
    req, _ = tiny
    _refused(invoke("validate", req, "name=[unclosed"), "override 'name=[unclosed'", "quote it")
    _refused(invoke("validate", req, "name=!!python/object/apply:os.system ['touch /tmp/pwned']"),
             "!!python/... are not allowed")


def _timed(path):
    start = time.perf_counter()
    result = invoke("validate", path)
    return result, time.perf_counter() - start


def test_yaml_alias_bomb_is_refused_fast(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):  # 9^9 values once expanded
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    result, seconds = _timed(tmp_path / "bomb.yaml")
    _refused(result, "expands to", "aliases")
    assert seconds < 5


@pytest.mark.parametrize("name, text", [("deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
                                        ("deep.json", '{"a": ' + "[" * 5000 + "]" * 5000 + "}")])
def test_5000_deep_nesting_is_refused_fast(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    result, seconds = _timed(tmp_path / name)
    _refused(result, "nested deeper than 64 levels")
    assert seconds < 5


def test_huge_request_file_is_refused_without_parsing(tmp_path):
    (tmp_path / "huge.yaml").write_text("name: x\n" + "# padding\n" * 200_000)
    _refused(invoke("validate", tmp_path / "huge.yaml"), "over the 1048576-byte limit")


def test_validate_reports_a_missing_dataset(tmp_path, tiny):
    req, _ = tiny
    result = invoke("validate", req, f"dataset.path={tmp_path / 'nope.jsonl'}")
    assert result.exit_code == 2
    one_error_line(result.stderr, "dataset file not found", "nope.jsonl", "fix dataset.path")
    assert "valid" not in result.stdout
