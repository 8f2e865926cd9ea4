"""Replaced-token detection on clean code: extra training positives for `bug_spotter`.

A clean function is a source of examples of tokens that do not belong: put another member of the
token's own class where it stands — another comparison or arithmetic operator, `or` for `and`, the
other boolean, a neighbouring integer, another of the function's local names or attribute names —
or drop a `not`, and the token at that place is now out of place in a context that is otherwise
normal code (what ELECTRA's discriminator learns, and BugLab's rewrites). Every clean training
function gives a few such replacements, so the token model sees many times more bug tokens, in
many more contexts, than the labelled flawed rows alone give; and what it sees is how real code
reads, not how any one bug generator writes.
"""
from __future__ import annotations

import random
from typing import Sequence

from cgtrain.features.bug_tokens import Tok, function_tokens, syntax_strings, token_features

_CLASSES: tuple[tuple[str, ...], ...] = (
    ("<", "<=", ">", ">="), ("==", "!="), ("+", "-"), ("*", "/", "//", "%"), ("+=", "-="),
    ("and", "or"), ("True", "False"),
)
_CLASS_OF = {t: members for members in _CLASSES for t in members}


def _alternatives(toks: Sequence[Tok], k: int, names: list[str], attrs: list[str]) -> list[str]:
    t = toks[k]
    if t.text in _CLASS_OF:
        return [m for m in _CLASS_OF[t.text] if m != t.text]
    if t.role.isdigit() or (t.role == "NUM" and t.text.isdigit()):
        v = int(t.text)
        return [str(x) for x in (v - 1, v + 1) if x >= 0]
    if t.role in ("L", "P") and not (k + 1 < len(toks) and toks[k + 1].text in ("=", ",", ")")):  # a read
        return [n for n in names if n != t.text]
    if t.role == "A":
        return [a for a in attrs if a != t.text]
    return []


def _role_as(t: Tok, text: str, like: dict[str, Tok]) -> str:
    """The role `text` would have standing where `t` stands."""
    if t.role in ("L", "P"):
        return like[text].role if text in like else t.role
    if t.role == t.text:  # operators and keywords are their own role
        return text
    if t.role == "NUM" or t.role.lstrip("-").isdigit():
        return text if text in ("0", "1", "2", "3") else "NUM"
    return t.role


def contrast_features(toks: list[Tok], syntax: dict[int, tuple[str, str, str]],
                     max_alternatives: int = 6) -> list[tuple[int, list[list[str]]]]:
    """The places where another token of the same class could stand: per place, its index and the
    features of the token that is there followed by those of each alternative in its stead (context
    and syntax features only, the same for all, so their scores compare like for like). Comparing
    the two asks "would this place read more normally with another token?", which cancels how odd
    the place itself looks."""
    names = sorted({t.text for t in toks if t.role in ("L", "P") and t.text not in ("self", "cls")})
    attrs = sorted({t.text for t in toks if t.role == "A"})
    like = {t.text: t for t in toks if t.role in ("L", "P")}
    out = []
    for k, t in enumerate(toks):
        alts = _alternatives(toks, k, names, attrs)[:max_alternatives]
        if not alts:
            continue
        ctx = syntax.get(k, ("^", "-", ""))
        rows = []
        for text in [t.text, *alts]:
            new = Tok(text, _role_as(t, text, like), t.start, t.end, like.get(text, t).flow if t.flow else "", t.tree)
            rows.append(token_features(toks[:k] + [new] + toks[k + 1:], k) + syntax_strings(ctx, text, new.role))
        out.append((k, rows))
    return out


def replacements(code: str, toks: Sequence[Tok], n: int, rng: random.Random) -> list[tuple[int, str, int, int]]:
    """Up to `n` one-token rewrites of `code`: (k, new code, start, end), with k the index of the token
    in `toks` that the new one stands for and [start, end) the changed token in the new code (for a
    dropped `not`, the token that followed it, and k that token's index)."""
    names = sorted({t.text for t in toks if t.role in ("L", "P") and t.text not in ("self", "cls")})
    attrs = sorted({t.text for t in toks if t.role == "A"})
    sites = []
    for k, t in enumerate(toks):
        if t.text == "not" and k + 1 < len(toks) and (k == 0 or toks[k - 1].text != "is") and toks[k + 1].text != "in":
            sites.append((k, None))
        else:
            alts = _alternatives(toks, k, names, attrs)
            if alts:
                sites.append((k, alts))
    out = []
    for k, alts in rng.sample(sites, min(n, len(sites))):
        t = toks[k]
        if alts is None:  # `not x` -> `x`: the bug is the token that lost its `not`
            nxt = toks[k + 1]
            new = code[:t.start] + code[nxt.start:]
            out.append((k + 1, new, t.start, t.start + (nxt.end - nxt.start)))
        else:
            alt = rng.choice(alts)
            out.append((k, code[:t.start] + alt + code[t.end:], t.start, t.start + len(alt)))
    return out


def rewritten(codes: Sequence[str], toks: Sequence[Sequence[Tok]], rows: Sequence[int], n: int,
              seed: int) -> list[tuple[int, int, list[Tok], list[int]]]:
    """The rewrites of the rows `rows`: (row, index of the original token in it, the rewritten function's
    tokens, the indices of its changed tokens). Deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    for i in rows:
        for k, new, s, e in replacements(codes[i], toks[i], n, rng):
            new_toks, _ = function_tokens(new)
            changed = [j for j, t in enumerate(new_toks) if t.start < e and t.end > s]
            if changed:
                out.append((int(i), k, new_toks, changed))
    return out
