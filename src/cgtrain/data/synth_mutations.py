"""The bug kinds of `synth-bugs` and how each is injected: one mutation of one function's AST.

`normalise` gives the canonical text of a function (re-unparsed, docstrings removed, nested same-op
boolean operators flattened); `mutate` injects one bug of a kind at a site chosen by an RNG and
returns the mutant, normalised the same way. The sites of every kind are found in one walk of the
function's own scope (`_collect_sites`), in a deterministic order.
"""
from __future__ import annotations

import ast
import random
import warnings
from functools import partial
from typing import Callable, Iterator

from cgtrain.features.codetext import _FUNC_TYPES, _is_string_stmt, _normal_tree, _parse, normalise  # noqa: F401

BUG_KINDS: tuple[str, ...] = (
    "swapped_args", "wrong_binary_operator", "wrong_comparison", "and_or_swap",
    "off_by_one", "variable_misuse", "bool_flip",
    # kinds seen in real one-line fixes
    "wrong_attribute", "missing_not", "wrong_default", "slice_off_by_one", "wrong_return", "is_eq_swap",
)


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
