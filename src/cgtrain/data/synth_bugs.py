"""Deterministic synthetic bug-detection data from real Python source (DeepBugs/BugLab style).

Every real function yields a clean row (label 0) and one copy with exactly one injected bug
(label 1). Both go through the same normaliser, so formatting, comments and docstrings carry
no label information. Both rows share `pair` (the function's id); a mutant records where the
bug is: `bug_line` (1-based) and `bug_start` / `bug_end` (character offsets into its `code`,
widened to whole tokens); they are null on clean rows. Sources: one directory or several
(`--source DIR --source DIR2`), by default the standard library.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import math
import os
import random
import sysconfig
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

from cgtrain.fsutil import atomic_write_text
from cgtrain.features.codetext import (_FUNC_TYPES,  # noqa: F401 (normalise, bug_location: re-exported)
                                       _is_string_stmt, _normal_tree, _parse, bug_location, normalise)

BUG_KINDS: tuple[str, ...] = (
    "swapped_args", "wrong_binary_operator", "wrong_comparison", "and_or_swap",
    "off_by_one", "variable_misuse", "bool_flip",
    # kinds seen in real one-line fixes
    "wrong_attribute", "missing_not", "wrong_default", "slice_off_by_one", "wrong_return", "is_eq_swap",
)

_SKIP_DIRS = frozenset({"site-packages", "test", "tests", "idle_test", "__pycache__"})
_MIN_BODY_LINES, _MAX_BODY_LINES = 3, 80
_SCOPE_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
# Operators are only swapped within a precedence level so unparse adds no tell-tale parentheses.
_ADDITIVE = (ast.Add, ast.Sub)
_MULTIPLICATIVE = (ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)
_BINOP_ALTS: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub,), ast.Sub: (ast.Add,),
    ast.Mult: (ast.Div, ast.FloorDiv), ast.Div: (ast.Mult, ast.FloorDiv),
    ast.FloorDiv: (ast.Div, ast.Mod), ast.Mod: (ast.FloorDiv,),
}
_CMP_ALTS: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE, ast.Gt), ast.LtE: (ast.Lt,), ast.Gt: (ast.GtE, ast.Lt), ast.GtE: (ast.Gt,),
    ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,), ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,), ast.NotIn: (ast.In,),
}
_IS_EQ: dict[type, type] = {ast.Is: ast.Eq, ast.IsNot: ast.NotEq, ast.Eq: ast.Is, ast.NotEq: ast.IsNot}
# Swapping the arguments of these changes nothing, so the "bug" would be label noise.
_SYMMETRIC_CALLS = frozenset({"max", "min"})

_Site = Callable[[random.Random], None]


@dataclass(frozen=True)
class SynthStats:
    n_functions: int      # clean functions written
    n_buggy: int          # mutated functions written
    n_files_read: int
    n_files_skipped: int  # unreadable / unparsable source files
    by_kind: dict[str, int]


@dataclass
class _Counts:
    n_functions: int = 0
    n_buggy: int = 0
    n_files_read: int = 0
    n_files_skipped: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {k: 0 for k in BUG_KINDS})


@dataclass(frozen=True)
class _Candidate:
    id: str       # "<module>:<qualname>"
    group: str    # dotted module name
    source: str   # file path relative to the source root
    segment: str  # the function's source lines, decorators included, still indented


def _compiles(func: ast.AST) -> bool:
    # Compiling the parsed tree skips a re-parse; symtable/codegen checks match compiling text.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(ast.Module(body=[func], type_ignores=[]), "<sample>", "exec")
    except (SyntaxError, ValueError, TypeError):
        return False
    return True


def _collect_sites(func: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, list[_Site]]:
    """Every place each bug kind could be injected, in a deterministic (depth-first) order."""
    sites: dict[str, list[_Site]] = {k: [] for k in BUG_KINDS}
    own_scope: list[ast.AST] = []
    attributes: list[tuple[ast.Attribute, bool]] = []  # (node, is the callee of a call)
    callees: set[int] = set()
    for node, own in _walk(func):
        if own:
            own_scope.append(node)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            attributes.append((node, id(node) in callees))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sites["missing_not"].append(partial(_replace_node, func, node, node.operand))
        elif isinstance(node, ast.Slice):
            sites["slice_off_by_one"] += _slice_sites(node)
        if isinstance(node, ast.Call):
            callees.add(id(node.func))
            sites["swapped_args"] += _swap_sites(node)
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and _binop_ok(node):
            alts = [alt() for alt in _BINOP_ALTS[type(node.op)]]
            sites["wrong_binary_operator"].append(partial(_set_attr, node, "op", alts))
        elif isinstance(node, ast.Compare):
            sites["is_eq_swap"] += _is_eq_sites(node)
            sites["wrong_comparison"] += [
                partial(_set_item, node.ops, i, [alt() for alt in _CMP_ALTS[type(op)]])
                for i, op in enumerate(node.ops)]
        elif isinstance(node, ast.BoolOp):
            flipped = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            sites["and_or_swap"].append(partial(_set_attr, node, "op", [flipped]))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            # Never go negative: a negative Constant unparses ambiguously (`-1 ** 2`).
            shifted = [node.value + 1, node.value - 1] if node.value > 0 else [1]
            sites["off_by_one"].append(partial(_set_attr, node, "value", shifted))
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            sites["bool_flip"].append(partial(_set_attr, node, "value", [not node.value]))
    names = _local_names(func, own_scope)
    sites["variable_misuse"] = _misuse_sites(names, own_scope)
    sites["wrong_return"] = _return_sites(names, own_scope)
    sites["wrong_attribute"] = _attribute_sites(attributes)
    sites["wrong_default"] = _default_sites(func)
    return sites


def _replace_node(root: ast.AST, old: ast.AST, new: ast.AST, rng: random.Random) -> None:
    """Put `new` where `old` sits in the tree under `root` (found by identity)."""
    for parent in ast.walk(root):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                value[next(i for i, v in enumerate(value) if v is old)] = new
                return


def _plus_minus_one(expr: ast.expr) -> list[ast.expr]:
    """`expr` shifted by one: a non-negative int constant +-1, `-k` -> `-(k+1)`, else `expr + 1` / `expr - 1`."""
    if isinstance(expr, ast.Constant) and type(expr.value) is int and expr.value >= 0:
        return [ast.Constant(v) for v in (expr.value + 1, expr.value - 1) if v >= 0]
    if (isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub) and isinstance(expr.operand, ast.Constant)
            and type(expr.operand.value) is int and expr.operand.value > 0):
        k = expr.operand.value
        return [ast.UnaryOp(ast.USub(), ast.Constant(k + 1)), *([ast.UnaryOp(ast.USub(), ast.Constant(k - 1))] if k > 1 else [])]
    if isinstance(expr, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
        return [ast.BinOp(expr, ast.Add(), ast.Constant(1)), ast.BinOp(expr, ast.Sub(), ast.Constant(1))]
    return []


def _slice_sites(node: ast.Slice) -> list[_Site]:
    return [partial(_set_attr, node, bound, alts) for bound in ("lower", "upper")
            if getattr(node, bound) is not None and (alts := _plus_minus_one(getattr(node, bound)))]


def _is_literal(expr: ast.expr) -> bool:
    return isinstance(expr, (ast.Constant, ast.JoinedStr, ast.List, ast.Tuple, ast.Dict, ast.Set))


def _is_eq_sites(node: ast.Compare) -> list[_Site]:
    """`is` <-> `==` (`is not` <-> `!=`); never `is` against a literal, which Python itself warns about."""
    out = []
    for i, op in enumerate(node.ops):
        left, right = (node.left if i == 0 else node.comparators[i - 1]), node.comparators[i]
        to_is = isinstance(op, (ast.Eq, ast.NotEq))
        if type(op) in _IS_EQ and not (to_is and (_is_literal(left) or _is_literal(right))):
            out.append(partial(_set_item, node.ops, i, [_IS_EQ[type(op)]()]))
    return out


def _return_sites(names: list[str], nodes: list[ast.AST]) -> list[_Site]:
    """`return name` -> another local of the function (a wrong value returned)."""
    return [partial(_set_attr, n.value, "id", [m for m in names if m != n.value.id]) for n in nodes
            if isinstance(n, ast.Return) and isinstance(n.value, ast.Name) and n.value.id in names and len(names) > 1]


def _attribute_sites(attributes: list[tuple[ast.Attribute, bool]]) -> list[_Site]:
    """`x.attr` -> `x.other`, `other` an attribute the function uses in the same role (called or not)."""
    by_role = {role: sorted({a.attr for a, r in attributes if r == role}) for role in (False, True)}
    return [partial(_set_attr, a, "attr", [m for m in by_role[role] if m != a.attr])
            for a, role in attributes if len(by_role[role]) > 1]


def _default_sites(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[_Site]:
    """A constant default changed: a bool flipped, an int moved by one, None -> 0 / False."""
    out = []
    for d in [*func.args.defaults, *(k for k in func.args.kw_defaults if k is not None)]:
        if not isinstance(d, ast.Constant):
            continue
        v = d.value
        alts = ([not v] if type(v) is bool else [x for x in (v + 1, v - 1) if x >= 0] if type(v) is int
                else [0, False] if v is None else [])
        if alts:
            out.append(partial(_set_attr, d, "value", alts))
    return out


def _set_attr(node: ast.AST, attr: str, choices: list, rng: random.Random) -> None:
    setattr(node, attr, rng.choice(choices))


def _set_item(items: list, i: int, choices: list, rng: random.Random) -> None:
    items[i] = rng.choice(choices)


def _swap(items: list, i: int, j: int, rng: random.Random) -> None:
    items[i], items[j] = items[j], items[i]


def _walk(func: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[tuple[ast.AST, bool]]:
    """(node, in the function's own scope) for defaults and body; decorators and the
    signature's annotations are left alone. One pass, since this is the hot loop."""
    a = func.args
    stack = [(n, False) for n in [*a.defaults, *(d for d in a.kw_defaults if d)]]
    stack += [(n, True) for n in func.body]
    stack.reverse()
    enclosing: set[int] = set()  # ids of parts of nested scopes evaluated in this one
    while stack:
        node, own = stack.pop()
        yield node, own
        # Nested defs, lambdas, classes and comprehensions have their own locals...
        inner = own and not isinstance(node, _SCOPE_TYPES)
        if own and not inner:  # ...but their defaults, decorators etc. run in ours.
            enclosing.update(map(id, _enclosing_parts(node)))
        stack.extend((c, inner or id(c) in enclosing)
                     for c in reversed(list(ast.iter_child_nodes(node))))


def _enclosing_parts(scope: ast.AST) -> list[ast.AST]:
    if isinstance(scope, ast.ClassDef):
        return [*scope.decorator_list, *scope.bases, *(k.value for k in scope.keywords)]
    if isinstance(scope, (*_FUNC_TYPES, ast.Lambda)):
        a = scope.args
        return [*getattr(scope, "decorator_list", []), *a.defaults,
                *(d for d in a.kw_defaults if d)]
    return [scope.generators[0].iter]  # a comprehension's first iterable


def _swap_sites(call: ast.Call) -> list[_Site]:
    if isinstance(call.func, ast.Name) and call.func.id in _SYMMETRIC_CALLS:
        return []
    args = call.args
    texts = [ast.dump(a) for a in args]
    return [partial(_swap, args, i, j) for i in range(len(args)) for j in range(i + 1, len(args))
            if texts[i] != texts[j] and not isinstance(args[i], ast.Starred)
            and not isinstance(args[j], ast.Starred)]


def _binop_ok(node: ast.BinOp | ast.AugAssign) -> bool:
    if type(node.op) not in _BINOP_ALTS:
        return False
    operands = [node.value] if isinstance(node, ast.AugAssign) else [node.left, node.right]
    # `"..." % x` / `"a" + b` is string work: changing it makes a trivially visible bug.
    if any(isinstance(o, ast.JoinedStr) or (isinstance(o, ast.Constant)
           and isinstance(o.value, (str, bytes))) for o in operands):
        return False
    if isinstance(node, ast.BinOp) and isinstance(node.right, ast.BinOp):
        level = _ADDITIVE if isinstance(node.op, _ADDITIVE) else _MULTIPLICATIVE
        return not isinstance(node.right.op, level)  # avoid `a + (b + c)`-style tells
    return True


def _misuse_sites(names: list[str], nodes: list[ast.AST]) -> list[_Site]:
    """Loads of a local name, each replaceable by another local of the same function scope."""
    if len(names) < 2:
        return []
    return [partial(_set_attr, n, "id", [m for m in names if m != n.id]) for n in nodes
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in names]


def _local_names(func: ast.FunctionDef | ast.AsyncFunctionDef, nodes: list[ast.AST]) -> list[str]:
    """Sorted names local to the function's own scope (parameters, assignments, imports, defs)."""
    declared = {n for s in nodes if isinstance(s, (ast.Global, ast.Nonlocal)) for n in s.names}
    a = func.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x)]
    local = {p.arg for p in params}
    for n in nodes:
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            local.add(n.id)
        elif isinstance(n, (ast.ExceptHandler, *_FUNC_TYPES, ast.ClassDef)) and n.name:
            local.add(n.name)
        elif isinstance(n, ast.alias):
            local.add((n.asname or n.name).split(".")[0])
    return sorted(local - declared)


def applicable_kinds(func_source: str) -> list[str]:
    """Bug kinds with at least one injection site in the function."""
    sites = _collect_sites(_parse_func(normalise(func_source)))
    return [k for k in BUG_KINDS if sites[k]]


def mutate(func_source: str, kind: str, rng: random.Random) -> str | None:
    """Inject one bug of `kind` at a site chosen by `rng`. Returns normalised code, or None when
    the function has no site for `kind` (or the mutant would not differ / not compile)."""
    if kind not in BUG_KINDS:
        raise ValueError(f"unknown bug kind {kind!r}; expected one of {BUG_KINDS}")
    clean = normalise(func_source)
    func = _parse_func(clean)
    return _inject(clean, func, _collect_sites(func)[kind], rng)


def _inject(clean: str, func: ast.AST, sites: list[_Site], rng: random.Random) -> str | None:
    if not sites:
        return None
    rng.choice(sites)(rng)
    try:  # the very same normaliser as the clean code (normalise(), inlined to keep the tree)
        mutated = _normal_tree(_parse(ast.unparse(func)))
    except (SyntaxError, ValueError, RecursionError):
        return None
    mutant = ast.unparse(mutated)
    return mutant if mutant != clean and _compiles(mutated.body[0]) else None


def _parse_func(source: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    body = _parse(source).body
    if len(body) != 1 or not isinstance(body[0], _FUNC_TYPES):
        raise ValueError("expected source holding exactly one top-level function")
    return body[0]


def _resolve_roots(source_dir) -> list[tuple[Path, list[Path]]]:
    """(root, its source files) per directory; `source_dir` is one directory, several, or None (the stdlib)."""
    if isinstance(source_dir, (list, tuple)):
        if not source_dir:
            return [_resolve_root(None)]
        return [_resolve_root(d) for d in dict.fromkeys(Path(d) for d in source_dir)]
    return [_resolve_root(source_dir)]


def _resolve_root(source_dir: str | Path | None) -> tuple[Path, list[Path]]:
    root = Path(source_dir) if source_dir is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise ValueError(f"source directory does not exist or is not a directory: {root}")
    files = _source_files(root)
    if not files:
        raise ValueError(f"no Python source files found under {root}")
    return root, files


def _source_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)  # sorted: deterministic
        files += [Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
    return files


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _candidates(root: Path, files: list[Path], counts: _Counts, seen: set[str]) -> list[_Candidate]:
    out: list[_Candidate] = []
    for path in files:
        try:
            text = importlib.util.decode_source(path.read_bytes())  # PEP 263 + newlines
            tree = _parse(text)
        except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
            counts.n_files_skipped += 1
            continue
        counts.n_files_read += 1
        lines = text.split("\n")
        rel = path.relative_to(root)
        group = _module_name(rel)
        for qualname, node in _functions(tree):
            if not _size_ok(node):
                continue
            cid, k = f"{group}:{qualname}", 2
            while cid in seen:  # redefinitions (e.g. property setters) share a qualname
                cid, k = f"{group}:{qualname}#{k}", k + 1
            seen.add(cid)
            # Keep source text, not the AST: millions of live AST nodes make every later
            # cyclic-GC pass crawl (measured ~7x slower parsing in the row phase).
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            segment = "\n".join(lines[start - 1:node.end_lineno])
            out.append(_Candidate(cid, group, rel.as_posix(), segment))
    return out


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in tree.body:
        if isinstance(node, _FUNC_TYPES):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, _FUNC_TYPES):
                    yield f"{node.name}.{item.name}", item


def _size_ok(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    body = node.body[1:] if _is_string_stmt(node.body[0]) else node.body
    if not body:
        return False
    lines = body[-1].end_lineno - body[0].lineno + 1
    return _MIN_BODY_LINES <= lines <= _MAX_BODY_LINES


def _func_rng(seed: int, cid: str) -> random.Random:
    # sha256, not hash(): str hashes are salted per process.
    digest = hashlib.sha256(f"{seed}:{cid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _clean_func(segment: str) -> tuple[str, ast.AST] | None:
    # A method is indented: parsing it inside `if 1:` keeps its text intact, where
    # textwrap.dedent would mangle multi-line strings. unparse then emits a top-level def.
    wrapped = segment[:1] in (" ", "\t")
    try:
        body = _parse(f"if 1:\n{segment}" if wrapped else segment).body
        node = body[0].body[0] if wrapped else body[0]
        clean = ast.unparse(_normal_tree(node))
        func = _parse_func(clean)
    except (SyntaxError, ValueError, RecursionError, IndexError, AttributeError):
        return None
    # A mutant takes one more parse/unparse round trip than its clean text; require a fixed
    # point so that round trip cannot change formatting elsewhere and leak the label.
    if ast.unparse(func) != clean or not _compiles(func):
        return None
    return clean, func


def _pick_mutant(clean: str, func: ast.AST, rng: random.Random, by_kind: dict[str, int],
                 seen: set[str]) -> tuple[str, str] | None:
    sites: dict[str, list[_Site]] | None = _collect_sites(func)
    kinds = [k for k in BUG_KINDS if sites[k]]
    # Weighted shuffle (Efraimidis-Spirakis, in log space), weight 1/(1 + uses so far)**2:
    # kinds that apply almost everywhere (variable_misuse) would otherwise crowd out the rest.
    order = sorted(kinds, key=lambda k: math.log(1.0 - rng.random()) * (1 + by_kind[k]) ** 2,
                   reverse=True)
    for kind in order:  # later kinds are fallbacks when a mutant is a duplicate
        if sites is None:  # the previous attempt mutated the tree in place
            func = _parse_func(clean)
            sites = _collect_sites(func)
        mutant = _inject(clean, func, sites[kind], rng)
        sites = None
        if mutant is not None and mutant not in seen:
            return kind, mutant
    return None


def _rows(seed: int, max_functions: int, roots: list[tuple[Path, list[Path]]],
          counts: _Counts) -> Iterator[dict]:
    ids: set[str] = set()  # shared: two roots with a module of the same name get distinct ids
    candidates = [c for root, files in roots for c in _candidates(root, files, counts, ids)]
    random.Random(seed).shuffle(candidates)  # unbiased pick from ALL candidates
    seen: set[str] = set()
    for cand in candidates:
        if counts.n_functions >= max_functions:
            return
        pair = _clean_func(cand.segment)
        if pair is None or pair[0] in seen:
            continue
        clean, func = pair
        picked = _pick_mutant(clean, func, _func_rng(seed, cand.id), counts.by_kind, seen)
        if picked is None:
            continue  # no usable mutant: drop the clean row too, keeping labels balanced
        kind, mutant = picked
        seen.update((clean, mutant))
        counts.n_functions += 1
        counts.n_buggy += 1
        counts.by_kind[kind] += 1
        base = {"group": cand.group, "source": cand.source, "pair": cand.id}
        line, start, end = bug_location(clean, mutant)
        yield {"id": f"{cand.id}:clean", "code": clean, "label": 0, "bug_kind": "none", **base,
               "bug_line": None, "bug_start": None, "bug_end": None}
        yield {"id": f"{cand.id}:{kind}:0", "code": mutant, "label": 1, "bug_kind": kind, **base,
               "bug_line": line, "bug_start": start, "bug_end": end}


def generate_rows(seed: int = 0, max_functions: int = 5000,
                  source_dir: str | Path | Sequence[str | Path] | None = None) -> Iterator[dict]:
    """Clean/mutant row pairs; `max_functions` caps the clean functions. Raises ValueError
    immediately (not on first iteration) for a missing or Python-free `source_dir`."""
    return _generate(seed, max_functions, source_dir, _Counts())


def _generate(seed: int, max_functions: int, source_dir: str | Path | None,
              counts: _Counts) -> Iterator[dict]:
    if max_functions < 0:
        raise ValueError(f"max_functions must be >= 0, got {max_functions}")
    return _rows(seed, max_functions, _resolve_roots(source_dir), counts)


def write_dataset(out_path: str | Path, seed: int = 0, max_functions: int = 5000,
                  source_dir: str | Path | Sequence[str | Path] | None = None) -> SynthStats:
    """Write the rows as JSONL atomically (temp file + fsync + rename) and return stats."""
    counts = _Counts()
    lines = [json.dumps(row, ensure_ascii=False) + "\n"
             for row in _generate(seed, max_functions, source_dir, counts)]
    atomic_write_text(out_path, "".join(lines))
    return SynthStats(**asdict(counts))
