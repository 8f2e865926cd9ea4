"""Numbered names: a token list with each local name replaced by the order of its first use (`<v0>`, `<v1>`, ...),
the copy `features.ordinal_names` appends to a token doc (see `cgtrain.features.tokenizer`)."""
from __future__ import annotations



def ordinal(tokens: list[str], is_name: list[bool], keep: frozenset) -> list[str]:
    """The tokens with each local name replaced by the order of its first use: `<v0>`, `<v1>`, ...

    What a flaw depends on is often which variable goes where (the smaller of two buffers copied into,
    the freed pointer used again), not what the variables are called; numbered names make that an
    n-gram (`<v0> = <v1> ;`) that recurs across code written with other names (VulDeePecker's symbolic
    names). Kept as they are: keywords and well-known names (the language's keep list), called names
    (`strcpy (`), ALL-CAPS names (macros, constants) and members (`.x`, `->x`, `::x`)."""
    numbered: dict[str, str] = {}
    out = []
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if (is_name[i] and tok not in keep and not tok.isupper() and not (i < last and tokens[i + 1] == "(")
                and not (i and tokens[i - 1] in _MEMBER_OPS)):
            new = numbered.get(tok)
            if new is None:
                new = numbered[tok] = f"<v{len(numbered)}>"
            tok = new
        out.append(tok)
    return out


_MEMBER_OPS = frozenset((".", "->", "::", "?."))
