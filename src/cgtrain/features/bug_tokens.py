"""Token-level views of one Python function for bug spotting: tokens with offsets, each token's
context features (raw and abstracted n-grams around it, its role in the function's data flow), and
function-level data-flow counts (locals stored but never read, names read before any store, ...).

A one-token bug (a wrong operator, a misused variable, an off-by-one constant) shows as a local
context that is rare in normal code: `i <= len ( x )`, `x [ : - 2 ]`, `return self`, a local
stored and never read. The features name the token and its neighbours both literally and by role
(`L` a local, `P` a parameter, `A` an attribute, `G` anything else), so what is learned on one
module carries to another whose names differ. Each token also carries its place in the syntax tree
(`bug_tree`), and a name is compared with the places of its other uses.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import re
import warnings
from dataclasses import dataclass

from cgtrain.features.bug_tree import NONE, tree_contexts, tree_strings

_TOKEN_RE = re.compile(r"""
    (?P<str>[rRbBuUfF]{0,2}(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<num>(?:0[xXoObB][0-9a-fA-F_]+|\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)[jJ]?)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<nl>\n[ \t]*)
  | (?P<op>\*\*=|//=|>>=|<<=|->|:=|\.\.\.|[-+*/%&|^@<>=!]=|\*\*|//|<<|>>|[-+*/%&|^~@<>=.,:;()\[\]{}])
  | (?P<sp>[ \t\\]+)
""", re.VERBOSE)
_KEYWORDS = frozenset(keyword.kwlist) | {"self", "cls"}
_SMALL_NUMS = frozenset({"0", "1", "2", "3", "-1"})
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Tok:
    text: str    # the token (strings as STR, newlines as NL)
    role: str    # abstract form: keyword/op/small number as is, else L / P / A / G / B / NUM / STR
    start: int   # character offsets into the code
    end: int
    flow: str    # data-flow tag of a name ("" for other tokens)
    tree: tuple[str, ...] = NONE  # its place in the syntax tree (`bug_tree.tree_contexts`)


def tokenize(code: str) -> list[tuple[str, str, int, int]]:
    """(kind, text, start, end) for every token; unknown characters are skipped."""
    out = []
    for m in _TOKEN_RE.finditer(code):
        kind = m.lastgroup
        if kind == "sp":
            continue
        text = m.group()
        if kind == "nl":
            text = f"NL{len(text) - 1}"
        out.append((kind, text, m.start(), m.end()))
    return out


def name_facts(code: str) -> dict[str, dict[str, int]]:
    """Per local name: params, stores, loads, and whether the first use reads it before any store."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            func = ast.parse(code).body[0]
        except (SyntaxError, ValueError, IndexError, RecursionError):
            return {}
    facts: dict[str, dict[str, int]] = {}
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return facts
    a = func.args
    for p in [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x)]:
        facts[p.arg] = {"param": 1, "store": 0, "load": 0, "early": 0}
    names = sorted((n for n in ast.walk(func) if isinstance(n, ast.Name)),
                   key=lambda n: (n.lineno, n.col_offset))
    for n in names:
        f = facts.setdefault(n.id, {"param": 0, "store": 0, "load": 0, "early": 0})
        if isinstance(n.ctx, ast.Load):
            if f["store"] == 0 and f["param"] == 0 and f["load"] == 0:
                f["early"] = 1  # read before any store seen: a global, or a misuse
            f["load"] += 1
        else:
            f["store"] += 1
    return facts


def function_tokens(code: str) -> tuple[list[Tok], dict[str, float]]:
    """The function's tokens with roles and flow tags, and its data-flow counts."""
    facts = name_facts(code)
    locals_ = {k: v for k, v in facts.items() if v["param"] or v["store"]}
    raw = tokenize(code)
    tree = tree_contexts(code, [(s, e) for _, _, s, e in raw])
    toks: list[Tok] = []
    prev = ""
    for (kind, text, s, e), where in zip(raw, tree):
        role, flow = _role(kind, text, prev, locals_), ""
        if role in ("L", "P"):
            f = locals_[text]
            flow = f"u{min(f['load'], 3)}s{min(f['store'], 2)}"
        toks.append(Tok("STR" if kind == "str" else text, role, s, e, flow, where))
        prev = text
    stats = {
        "n_tokens": float(len(toks)),
        "unread_locals": float(sum(1 for v in locals_.values() if v["store"] and not v["load"] and not v["param"])),
        "unused_params": float(sum(1 for k, v in locals_.items() if v["param"] and not v["load"]
                                   and k not in ("self", "cls") and not k.startswith("_"))),
        "early_reads": float(sum(1 for v in locals_.values() if v["early"] and v["store"] and not v["param"])),
        "single_read": float(sum(1 for v in locals_.values() if v["load"] == 1)),
        "n_locals": float(len(locals_)),
    }
    return toks, stats


def _role(kind: str, text: str, prev: str, locals_: dict) -> str:
    if kind == "str":
        return "STR"
    if kind == "num":
        return text if text in _SMALL_NUMS else "NUM"
    if kind != "name" or text in _KEYWORDS:
        return text
    if prev == ".":
        return "A"
    if text in locals_:
        return "P" if locals_[text]["param"] else "L"
    return "B" if text in _BUILTINS else "G"


def token_features(toks: list[Tok], i: int, others: dict[int, list[str]] | None = None) -> list[str]:
    """Context features of token i: literal and abstract n-grams around it, and its flow tag."""
    def lit(k: int) -> str:
        return toks[k].text if 0 <= k < len(toks) else "^" if k < 0 else "$"

    def rol(k: int) -> str:
        return toks[k].role if 0 <= k < len(toks) else "^" if k < 0 else "$"

    t = toks[i]
    out = [f"t={t.text}", f"r={t.role}",
           f"lt={lit(i - 1)}|{t.text}", f"tr={t.text}|{lit(i + 1)}", f"ltr={lit(i - 1)}|{t.text}|{lit(i + 1)}",
           f"llt={lit(i - 2)}|{lit(i - 1)}|{t.text}", f"trr={t.text}|{lit(i + 1)}|{lit(i + 2)}",
           f"Rlt={rol(i - 1)}|{t.role}", f"Rtr={t.role}|{rol(i + 1)}", f"Rltr={rol(i - 1)}|{t.role}|{rol(i + 1)}",
           f"Rllt={rol(i - 2)}|{rol(i - 1)}|{t.role}", f"Rtrr={t.role}|{rol(i + 1)}|{rol(i + 2)}",
           f"Rw5={rol(i - 2)}|{rol(i - 1)}|{t.role}|{rol(i + 1)}|{rol(i + 2)}"]
    if t.flow:
        out += [f"f={t.role}{t.flow}", f"fl={lit(i - 1)}|{t.role}{t.flow}|{lit(i + 1)}"]
    return out + tree_strings(t.tree, t.text, t.role) + (others or {}).get(i, [])


def relation_features(toks: list[Tok]) -> dict[int, list[str]]:
    """Features of a name or attribute token against the name's other uses in the function: how it is
    followed / preceded elsewhere, where it first appears, whether an attribute sits on this receiver."""
    occ: dict[str, list[int]] = {}
    attrs: dict[str, list[int]] = {}
    for i, t in enumerate(toks):
        if t.role in ("L", "P"):
            occ.setdefault(t.text, []).append(i)
        elif t.role == "A":
            attrs.setdefault(t.text, []).append(i)
    text = [t.text for t in toks] + ["$", "$"]
    out: dict[int, list[str]] = {}
    for name, idx in occ.items():
        first = idx[0]
        fctx = f"{text[first - 1] if first else '^'}_{text[first + 1]}"
        for i in idx:
            nx = sorted({text[j + 1] for j in idx if j != i})[:4]
            pv = sorted({text[j - 1] for j in idx if j != i and j > 0})[:4]
            f = [f"first={toks[i].role}|{fctx}|{text[i + 1]}", f"isfirst={i == first}|{text[i + 1]}",
                 f"n_occ={min(len(idx), 4)}|{text[i - 1] if i else '^'}|{text[i + 1]}"]
            f += [f"nxo={text[i + 1]}|{n}" for n in nx] + [f"pvo={text[i - 1] if i else '^'}|{p}" for p in pv]
            out[i] = f + _use_pairs(toks, i, idx)
    for name, idx in attrs.items():
        recvs = [text[i - 2] if i >= 2 else "^" for i in idx]
        for i, r in zip(idx, recvs):
            same = sum(1 for q in recvs if q == r) - 1
            nx = sorted({text[j + 1] for j in idx if j != i})[:3]
            f = [f"ra={r}.{name}", f"asame={min(same, 2)}|aother={min(len(idx) - 1 - same, 2)}|{text[i + 1]}"]
            f += [f"anx={text[i + 1]}|{n}" for n in nx]
            out[i] = f
    return out



def _use_pairs(toks: list[Tok], i: int, idx: list[int]) -> list[str]:
    """A name's place in the tree against the places of its other uses (`Subscript.value` here, only
    ever `BinOp.left` elsewhere: a name standing where another belongs)."""
    here = f"{toks[i].tree[0]}.{toks[i].tree[1]}"
    if not toks[i].tree[0]:
        return []
    return [f"uo={here}|{u}" for u in sorted({f"{toks[j].tree[0]}.{toks[j].tree[1]}" for j in idx if j != i})[:6]]


_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")
_HEADS = frozenset({"if", "elif", "while", "return", "assert", "for", "yield", "del", "raise", "with", "def", "lambda"})


def syntax_features(toks: list[Tok]) -> dict[int, list[str]]:
    """Features of each token's place in the statement (`syntax_context`), with the token itself."""
    return {i: syntax_strings(c, toks[i].text, toks[i].role) for i, c in syntax_context(toks).items()}


def syntax_strings(context: tuple[str, str, str], text: str, role: str) -> list[str]:
    """The features of a token `text` (of role `role`) standing at a place with that syntax context."""
    head, where, kw = context
    f = [f"hd={head}|{text}", f"hdR={head}|{role}", f"in={where}|{text}", f"inR={where}|{role}"]
    return f + [f"kw={kw}|{text}"] if kw else f


def syntax_context(toks: list[Tok]) -> dict[int, tuple[str, str, str]]:
    """Each token's place in the statement: the statement's first keyword, the call or bracket it sits
    in (the callee's name and the argument's position), and the keyword argument or assignment target
    it is the value of (`reverse=True`, `x = 0`)."""
    out: dict[int, tuple[str, str, str]] = {}
    stack: list[list] = []  # [callee, argument index, keyword of the current argument]
    head = "^"
    for i, t in enumerate(toks):
        if t.text.startswith("NL"):
            stack, head = [], "^"
            continue
        if head == "^":
            head = t.text if t.text in _HEADS else "stmt"
        prev = toks[i - 1].text if i else "^"
        if t.text in _CLOSE and stack:
            stack.pop()
        where = f"{stack[-1][0]}#{min(stack[-1][1], 3)}" if stack else "-"
        kw = stack[-1][2] if stack else ("=" if "=" in {x.text for x in toks[max(0, i - 3):i]} else "")
        out[i] = (head, where, kw)
        if t.text in _OPEN:
            callee = prev if (prev.isidentifier() and t.text == "(") else t.text
            stack.append([callee, 0, ""])
        elif t.text == "," and stack:
            stack[-1][1] += 1
            stack[-1][2] = ""
        elif t.text == "=" and stack and prev.isidentifier():
            stack[-1][2] = prev
    return out
