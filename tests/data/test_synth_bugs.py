"""Tests for the synthetic bug dataset generator (cgtrain.data.synth_bugs)."""
from __future__ import annotations

import ast
import json
import random
import sysconfig
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from cgtrain.data.synth_bugs import (
    BUG_KINDS, SynthStats, applicable_kinds, bug_location, generate_rows, mutate, normalise, write_dataset,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _mutants(src: str, kind: str, tries: int = 40) -> set[str | None]:
    """Every outcome of mutating `src` over a range of RNG seeds."""
    return {mutate(src, kind, random.Random(i)) for i in range(tries)}


def _body(code: str) -> str:
    return code.split("\n", 1)[1].strip()


# ------------------------------------------------------------------ per-kind mutators

def test_wrong_binary_operator_swaps_within_precedence_level():
    assert mutate("def f(a, b):\n    return a + b", "wrong_binary_operator",
                  random.Random(0)) == "def f(a, b):\n    return a - b"
    outs = {_body(m) for m in _mutants("def f(a, b):\n    return a * b", "wrong_binary_operator")}
    assert outs == {"return a / b", "return a // b"}
    outs = {_body(m) for m in _mutants("def f(a, b):\n    a += b\n    return a",
                                       "wrong_binary_operator")}
    assert outs == {"a -= b\n    return a"}


def test_wrong_binary_operator_leaves_string_formatting_alone():
    assert mutate("def f(a):\n    return '%s!' % a", "wrong_binary_operator",
                  random.Random(0)) is None


def test_wrong_comparison():
    cases = {"a == b": {"a != b"}, "a != b": {"a == b"}, "a is None": {"a is not None"},
             "a is not None": {"a is None"}, "a in b": {"a not in b"}, "a not in b": {"a in b"},
             "a < b": {"a <= b", "a > b"}, "a >= b": {"a > b"}}
    for expr, expected in cases.items():
        outs = {_body(m) for m in _mutants(f"def f(a, b):\n    return {expr}", "wrong_comparison")}
        assert outs == {f"return {e}" for e in expected}, expr


def test_and_or_swap_flattens_so_no_parentheses_leak():
    assert _body(mutate("def f(a, b):\n    return a and b", "and_or_swap",
                        random.Random(0))) == "return a or b"
    outs = {_body(m) for m in _mutants("def f(a, b, c):\n    return a or (b and c)",
                                       "and_or_swap")}
    assert outs == {"return a and b and c", "return a or b or c"}


def test_off_by_one_ints_only_never_negative():
    assert _body(mutate("def f(x):\n    return x[0]", "off_by_one",
                        random.Random(0))) == "return x[1]"
    outs = {_body(m) for m in _mutants("def f(x):\n    return x[2]", "off_by_one")}
    assert outs == {"return x[1]", "return x[3]"}
    assert mutate("def f(x):\n    return True", "off_by_one", random.Random(0)) is None
    assert mutate("def f(x):\n    return 1.5", "off_by_one", random.Random(0)) is None


def test_bool_flip():
    assert _body(mutate("def f():\n    return True", "bool_flip",
                        random.Random(0))) == "return False"
    # Defaults are sites too.
    assert mutate("def f(x=False):\n    return x", "bool_flip",
                  random.Random(0)) == "def f(x=True):\n    return x"


def test_swapped_args():
    assert _body(mutate("def f(a, b):\n    return g(a, b)", "swapped_args",
                        random.Random(0))) == "return g(b, a)"
    assert mutate("def f(a):\n    return g(a, a)", "swapped_args", random.Random(0)) is None
    # max/min are symmetric: swapping their arguments is not a bug.
    assert mutate("def f(a, b):\n    return max(a, b)", "swapped_args", random.Random(0)) is None


def test_variable_misuse_uses_only_locals_of_the_function_scope():
    assert _body(mutate("def f(a, b):\n    return a", "variable_misuse",
                        random.Random(0))) == "return b"
    # `len` is a global, and `a` is the only local: nothing to misuse.
    assert mutate("def f(a):\n    return len(a)", "variable_misuse", random.Random(0)) is None
    src = "def f(a):\n    c = a\n    return [y + a for y in c]"
    outs = {_body(m) for m in _mutants(src, "variable_misuse")}
    # The comprehension's first iterable runs in f's scope, so `c` there is a site; `y` is
    # the comprehension's own local, and `a` inside it is left alone, so neither changes.
    assert outs == {"c = c\n    return [y + a for y in c]",
                    "c = a\n    return [y + a for y in a]"}


def test_mutate_rejects_unknown_kind_and_reports_applicable_kinds():
    with pytest.raises(ValueError, match="unknown bug kind"):
        mutate("def f(a):\n    return a", "typo", random.Random(0))
    assert applicable_kinds("def f(a, b):\n    return a + b") == [
        "wrong_binary_operator", "variable_misuse"]


def test_wrong_attribute_keeps_the_role_called_or_not():
    outs = {_body(m) for m in _mutants("def f(a, b):\n    return a.x + b.y + a.run()", "wrong_attribute")}
    assert outs == {"return a.y + b.y + a.run()", "return a.x + b.x + a.run()"}
    assert mutate("def f(a):\n    return a.x + a.run()", "wrong_attribute", random.Random(0)) is None


def test_missing_not_drops_one_negation():
    outs = {_body(m) for m in _mutants("def f(a, b):\n    return not a or not (a and b)", "missing_not")}
    assert outs == {"return a or not (a and b)", "return not a or (a and b)"}


def test_wrong_default_changes_a_constant_default():
    outs = {m.split("\n")[0] for m in _mutants("def f(a, n=1, x=None, *, s=True):\n    return a", "wrong_default")}
    assert outs == {"def f(a, n=2, x=None, *, s=True):", "def f(a, n=0, x=None, *, s=True):",
                    "def f(a, n=1, x=0, *, s=True):", "def f(a, n=1, x=False, *, s=True):",
                    "def f(a, n=1, x=None, *, s=False):"}


def test_slice_off_by_one_moves_a_bound():
    outs = {_body(m) for m in _mutants("def f(a, i):\n    return a[i:-1]", "slice_off_by_one")}
    assert outs == {"return a[i + 1:-1]", "return a[i - 1:-1]", "return a[i:-2]"}
    assert mutate("def f(a, i):\n    return a[i]", "slice_off_by_one", random.Random(0)) is None


def test_wrong_return_returns_another_local():
    outs = {_body(m) for m in _mutants("def f(a):\n    b = a * 2\n    return b", "wrong_return")}
    assert outs == {"b = a * 2\n    return a"}


def test_is_eq_swap_never_puts_is_before_a_literal():
    assert _body(mutate("def f(a, b):\n    return a is None", "is_eq_swap", random.Random(0))) == "return a == None"
    assert _body(mutate("def f(a, b):\n    return a != b", "is_eq_swap", random.Random(0))) == "return a is not b"
    assert mutate("def f(a):\n    return a == 'x'", "is_eq_swap", random.Random(0)) is None


def test_bug_location_marks_whole_tokens_on_the_changed_line():
    def where(clean_body: str, bug_body: str) -> tuple[int, str]:
        clean, bug = f"def f(a, b):\n    {clean_body}", f"def f(a, b):\n    {bug_body}"
        line, start, end = bug_location(clean, bug)
        return line, bug[start:end]

    assert where("return a < b", "return a <= b") == (2, "<=")
    assert where("return a <= b", "return a < b") == (2, "<")
    assert where("return total", "return tot") == (2, "tot")
    assert where("return g(a, b)", "return g(b, a)") == (2, "b, a")
    assert where("return not a", "return a") == (2, "a")
    assert where("return a[1:]", "return a[12:]") == (2, "12")


def test_every_kind_changes_exactly_one_line():
    src = textwrap.dedent("""\
        def f(items, limit, flag=True):
            total = 0
            for i in range(len(items)):
                if items[i] > limit and flag:
                    total = total + pow(items[i], 2)
            if not items.ready or items.size is None:
                return items[1:limit]
            return total
        """)
    clean = normalise(src)
    for kind in BUG_KINDS:
        for i in range(10):
            mutant = mutate(src, kind, random.Random(i))
            assert mutant is not None, kind
            a, b = clean.split("\n"), mutant.split("\n")
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1, (kind, mutant)
            compile(mutant, "<sample>", "exec")
            line, start, end = bug_location(clean, mutant)
            assert a[line - 1] != b[line - 1] and 0 <= start < end and "\n" not in mutant[start:end], (kind, mutant)


def test_normalise_drops_docstrings_comments_and_formatting():
    src = 'def f(a,b):\n    """Doc."""\n    # comment\n    return (a+\n            b)\n'
    assert normalise(src) == "def f(a, b):\n    return a + b"
    assert normalise('def g():\n    """Only a docstring."""') == "def g():\n    pass"


# ------------------------------------------------------------------ generation on a tiny tree

def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def tiny_src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    _write(root, "pkg/__init__.py", """\
        def clamp(value, low, high):
            '''Clamp.'''
            if value < low:
                return low
            return min(value, high)
        """)
    _write(root, "pkg/shapes.py", """\
        class Box:
            def area(self, scale=1):
                \"\"\"A docstring that must not survive.\"\"\"
                w = self.width * scale  # comment
                h = self.height * scale
                text = '''keeps
        its own lines'''
                return w * h

            def tiny(self):
                return 1

        def trivial(a, b):
            x = a
            y = b
            return x

        def copy_of_trivial(a, b):
            x = a
            y = b
            return x
        """)
    _write(root, "other.py", """\
        def helper(a, b):
            x = a
            y = b
            return x or y
        """)
    _write(root, "broken.py", "def f(:\n")
    _write(root, "tests/test_skipped.py", "def t(a, b):\n    x = a\n    y = b\n    return a + b\n")
    _write(root, "site-packages/dep.py", "def d(a, b):\n    x = a\n    y = b\n    return a\n")
    return root


def test_tiny_tree_rows_groups_and_ids(tiny_src: Path, tmp_path: Path):
    stats = write_dataset(tmp_path / "out" / "rows.jsonl", seed=0, source_dir=tiny_src)
    rows = [json.loads(line) for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()]
    assert isinstance(stats, SynthStats)
    assert (stats.n_files_read, stats.n_files_skipped) == (3, 1)  # broken.py; tests/ not walked
    # Box.tiny is too small to use; every other function yields a clean + mutant pair.
    clean = {r["id"]: r for r in rows if r["label"] == 0}
    assert set(clean) == {"pkg:clamp:clean", "pkg.shapes:Box.area:clean",
                          "pkg.shapes:trivial:clean", "pkg.shapes:copy_of_trivial:clean",
                          "other:helper:clean"}
    assert stats.n_functions == stats.n_buggy == 5 and sum(stats.by_kind.values()) == 5
    assert clean["pkg.shapes:Box.area:clean"]["source"] == "pkg/shapes.py"
    area = clean["pkg.shapes:Box.area:clean"]["code"]
    assert area.startswith("def area(self, scale=1):\n    w = self.width * scale\n")
    assert "docstring" not in area and "comment" not in area and "'keeps\\nits own lines'" in area
    for r in rows:
        compile(r["code"], "<sample>", "exec")
        if r["label"] == 1:
            base = r["id"].rsplit(":", 2)[0]
            twin = clean[f"{base}:clean"]
            assert r["group"] == twin["group"] and r["source"] == twin["source"]
            assert r["id"] == f"{base}:{r['bug_kind']}:0" and r["code"] != twin["code"]
        else:
            assert r["bug_kind"] == "none"
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "rows.jsonl"]  # no temp


def test_identical_functions_are_written_once(tmp_path: Path):
    for name in ("a", "b"):
        _write(tmp_path, f"{name}.py", """\
            def same(x, y):
                z = x
                w = y
                return z + w
            """)
    rows = list(generate_rows(seed=3, source_dir=tmp_path))
    assert [r["label"] for r in rows] == [0, 1]  # the second copy is dropped, with its mutant
    assert len({r["code"] for r in rows}) == len(rows)


def test_several_source_directories(tiny_src: Path, tmp_path: Path):
    other = tmp_path / "other_src"
    _write(other, "other.py", """\
        def helper(a, b):
            x = a
            y = b
            return [x, y]
        """)
    rows = list(generate_rows(seed=0, source_dir=[tiny_src, other]))
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) and len(rows) == 12  # five functions from one, one from the other
    assert sum(r["source"] == "other.py" for r in rows) == 4  # other.py in both roots: distinct ids


def test_max_functions_caps_clean_functions(tiny_src: Path):
    rows = list(generate_rows(seed=0, max_functions=2, source_dir=tiny_src))
    assert Counter(r["label"] for r in rows) == {0: 2, 1: 2}
    assert list(generate_rows(seed=0, max_functions=0, source_dir=tiny_src)) == []


def test_missing_or_empty_source_dir_raises_naming_the_path(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="nope"):
        generate_rows(source_dir=missing)  # raised eagerly, not on first next()
    with pytest.raises(ValueError, match="nope"):
        write_dataset(tmp_path / "x.jsonl", source_dir=missing)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no python here")
    with pytest.raises(ValueError, match="empty"):
        generate_rows(source_dir=tmp_path / "empty")
    assert not (tmp_path / "x.jsonl").exists()


# ------------------------------------------------------------------ real standard library

@pytest.fixture(scope="module")
def stdlib_rows(tmp_path_factory) -> tuple[SynthStats, list[dict]]:
    out = tmp_path_factory.mktemp("synth") / "stdlib.jsonl"
    stats = write_dataset(out, seed=0, max_functions=300)
    return stats, [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_stdlib_sample_is_balanced_valid_and_covers_every_kind(stdlib_rows):
    stats, rows = stdlib_rows
    assert stats.n_functions == stats.n_buggy == 300 and len(rows) == 600
    assert stats.n_files_read > 300
    assert Counter(r["label"] for r in rows) == {0: 300, 1: 300}
    assert set(stats.by_kind) == set(BUG_KINDS) and all(stats.by_kind.values())
    assert Counter(r["bug_kind"] for r in rows if r["label"]) == stats.by_kind
    assert len({r["code"] for r in rows}) == len(rows)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        # issue 13 added `pair` (clean and mutant share it) and the bug's location (null on clean rows)
        assert set(r) == {"id", "code", "label", "bug_kind", "group", "source", "pair", "bug_line", "bug_start",
                          "bug_end"}
        assert r["id"].startswith(r["pair"] + ":")
        assert (r["bug_line"] is None) == (r["label"] == 0)
        tree = compile(r["code"], "<sample>", "exec", ast.PyCF_ONLY_AST)
        compile(tree, "<sample>", "exec")
        assert normalise(r["code"]) == r["code"]  # one normaliser for both labels
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                assert ast.get_docstring(node) is None
        assert not Path(r["source"]).parts[0] in {"test", "site-packages"}
        module = r["source"].removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        assert r["group"] == module and r["id"].startswith(module + ":")


def test_stdlib_mutant_pairs_share_group_and_differ_by_one_line(stdlib_rows):
    _, rows = stdlib_rows
    for clean, mutant in zip(rows[::2], rows[1::2]):  # written as clean, mutant pairs
        assert (clean["label"], mutant["label"]) == (0, 1)
        assert mutant["id"] == clean["id"].removesuffix("clean") + f"{mutant['bug_kind']}:0"
        assert clean["group"] == mutant["group"] and clean["source"] == mutant["source"]
        a, b = clean["code"].split("\n"), mutant["code"].split("\n")
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
        assert clean["pair"] == mutant["pair"]
        line, start, end = mutant["bug_line"], mutant["bug_start"], mutant["bug_end"]
        assert a[line - 1] != b[line - 1] and 0 <= start < end <= len(mutant["code"])
        assert mutant["code"].count("\n", 0, start) == line - 1 and "\n" not in mutant["code"][start:end]


def test_deterministic_per_seed(tmp_path: Path):
    src = STDLIB / "email"  # real code, but a small slice of the stdlib to stay fast
    paths = [tmp_path / f"{name}.jsonl" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (7, 7, 8)):
        write_dataset(path, seed=seed, max_functions=150, source_dir=src)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c
    first = json.loads(a.decode().splitlines()[0])
    assert (src / first["source"]).is_file()  # groups/sources are relative to source_dir


def test_mutations_module_and_dataset_module_share_one_implementation():
    from cgtrain.data import synth_bugs, synth_mutations

    for name in ("BUG_KINDS", "normalise", "mutate", "applicable_kinds"):
        assert getattr(synth_bugs, name) is getattr(synth_mutations, name)
    assert set(synth_bugs.__all__) >= {"bug_location", "generate_rows", "write_dataset", "SynthStats"}
