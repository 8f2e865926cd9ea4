"""Code tokenizer: raw source -> normalised, whitespace-free tokens.

Pygments' C lexer alone manages only ~550 Juliet functions/s on one core (the
target is >= 1,000), so the common languages use a single-pass regex lexer per
language family; any other language Pygments knows goes through Pygments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from sklearn.base import BaseEstimator, TransformerMixin

from cgtrain.features.keywords import _C_KEEP, _GO_KEEP, _JS_KEEP, _PHP_KEEP, _PY_KEEP, _RUST_KEEP, _SCRIPT_KEEP
from cgtrain.features.names import ordinal

STR, CHR, NUM, FLOAT = "<str>", "<chr>", "<num>", "<float>"
NAMES_SEP = "<names>"  # ordinal_names: the tokens again after it, names numbered by first use

# --- lexical pieces shared by the families ---------------------------------
_C_COMMENT = r"//[^\n]*|/\*[\s\S]*?(?:\*/|\Z)"
_DQ = r'"(?:\\[\s\S]|[^"\\\n])*(?:"|$)'  # unterminated: runs to end of line
_SQ = r"'(?:\\[\s\S]|[^'\\\n])*(?:'|$)"
_DQ_ML = r'"(?:\\[\s\S]|[^"\\])*(?:"|\Z)'  # may span lines
_SQ_ML = r"'(?:\\[\s\S]|[^'\\])*(?:'|\Z)"
_NUM = (
    r"(?:0[xX][0-9a-fA-F](?:['_]?[0-9a-fA-F])*(?:\.[0-9a-fA-F]*)?(?:[pP][+-]?\d+)?"
    r"|0[bB][01](?:['_]?[01])*|0[oO][0-7](?:_?[0-7])*"
    r"|(?:\d(?:['_]?\d)*(?:\.(?:\d(?:['_]?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d+)?)\w*"
)
# Longest first, so `<<=` wins over `<<` and `<`.
_OPS = sorted(
    """>>>= <<= >>= >>> ... ->* <=> === !== **= //= ::= ?? ?. .* :: -> => ++ --
    << >> <= >= == != && || += -= *= /= %= &= |= ^= ** // := ## <-""".split(),
    key=len,
    reverse=True,
)
_OP = "|".join(map(re.escape, _OPS)) + r"|[^\s\w]"

# --- names kept whole (everything else is split into lower-case words) ------
_SUBWORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_SUBWORD_UNICODE = re.compile(r"[^\W\d_]+|\d+")


@dataclass
class _Family:
    """One lexer: a master regex plus names kept whole, with a name cache."""

    name: str
    skip: str
    strings: str
    chars: str | None = None
    preproc: bool = False
    keep: str = ""
    regex: re.Pattern = field(init=False)
    keep_set: frozenset = field(init=False)
    cache: dict = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        parts = [f"(?P<skip>{self.skip})"]
        if self.preproc:
            parts.append(r"(?P<pre>^[ \t]*#[ \t]*(?P<pn>[A-Za-z_]\w*))")
        parts.append(f"(?P<str>{self.strings})")
        if self.chars:
            parts.append(f"(?P<chr>{self.chars})")
        parts += [f"(?P<num>{_NUM})", r"(?P<id>[^\W\d]\w*)", f"(?P<op>{_OP})"]
        self.regex = re.compile("|".join(parts), re.MULTILINE)
        self.keep_set = frozenset(self.keep.split())

    def name_tokens(self, ident: str) -> list[str]:
        toks = self.cache.get(ident)
        if toks is None:
            toks = _split_name(ident, self.keep_set)
            if len(self.cache) > 200_000:  # unbounded vocabularies (minified code)
                self.cache.clear()
            self.cache[ident] = toks
        return toks


def _split_name(ident: str, keep: frozenset) -> list[str]:
    if ident in keep or (len(ident) > 4 and ident[:2] == "__" == ident[-2:]):
        return [ident]
    pattern = _SUBWORD if ident.isascii() else _SUBWORD_UNICODE
    parts = [p.lower() for p in pattern.findall(ident)]
    return parts or [ident]  # e.g. "_" or "__"


_C_STRINGS = (
    r'(?:u8|[LuU])?R"(?P<rd>[^()\\\s"]{0,16})\([\s\S]*?\)(?P=rd)"'  # C++ raw
    r'|"""[\s\S]*?(?:"""|\Z)|@"(?:[^"]|"")*(?:"|\Z)|(?:u8|[LuU])?' + _DQ
)
_FAMILIES = {
    f.name: f
    for f in (
        _Family("c", _C_COMMENT + r"|\\\r?\n", _C_STRINGS, r"(?:u8|[LuU])?" + _SQ,
                preproc=True, keep=_C_KEEP),
        _Family("python", r"#[^\n]*|\\\r?\n",
                r"(?i:[rbuf]{0,2})(?:'''[\s\S]*?(?:'''|\Z)|\"\"\"[\s\S]*?(?:\"\"\"|\Z)|"
                + _SQ + "|" + _DQ + ")", keep=_PY_KEEP),
        _Family("js", _C_COMMENT, _DQ + "|" + _SQ + r"|`(?:\\[\s\S]|[^`\\])*(?:`|\Z)",
                keep=_JS_KEEP),
        _Family("go", _C_COMMENT, _DQ + r"|`[^`]*(?:`|\Z)", _SQ, keep=_GO_KEEP),
        _Family("rust", _C_COMMENT, r'b?r(?P<rh>#*)"[\s\S]*?"(?P=rh)|b?' + _DQ_ML,
                r"b?'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^'\\\n])'",
                keep=_RUST_KEEP),
        _Family("script", r"#[^\n]*", _DQ_ML + "|" + _SQ_ML, keep=_SCRIPT_KEEP),
        _Family("php", r"#[^\n]*|" + _C_COMMENT, _DQ_ML + "|" + _SQ_ML, keep=_PHP_KEEP),
    )
}
_ALIASES = {
    alias: fam
    for fam, names in {
        "c": "c h cpp c++ cxx cc hpp objective-c objc objective-c++ cuda cu csharp c# cs "
             "java kotlin kt scala swift dart groovy d arduino glsl hlsl opencl solidity",
        "python": "python py python3 py3 pyx cython sage starlark bazel bzl",
        "js": "javascript js jsx typescript ts tsx node mjs cjs json",
        "go": "go golang",
        "rust": "rust rs",
        "script": "ruby rb shell sh bash zsh ksh fish perl pl r yaml yml toml make "
                  "makefile cmake powershell ps1 tcl nim crystal elixir julia coffeescript",
        "php": "php php3 php4 php5 php7 php8",
    }.items()
    for alias in names.split()
}


# --- number normalisation --------------------------------------------------
_NUM_CACHE: dict[str, str] = {}
_DEC = re.compile(r"(\d*)(\.\d*)?(e[+-]?\d+)?(.*)", re.S)


def _number(text: str) -> str:
    tok = _NUM_CACHE.get(text)
    if tok is None:
        tok = _classify_number(text.lower().replace("_", "").replace("'", ""))
        if len(_NUM_CACHE) > 100_000:
            _NUM_CACHE.clear()
        _NUM_CACHE[text] = tok
    return tok


def _classify_number(t: str) -> str:
    if t[:2] in ("0x", "0b", "0o"):
        if t[:2] == "0x" and ("." in t or "p" in t):
            return FLOAT
        digits = re.match(r"[0-9a-f]*", t[2:]).group()
        base = {"0x": 16, "0b": 2, "0o": 8}[t[:2]]
        try:
            return _int_token(int(digits, base))
        except ValueError:
            return NUM
    whole, frac, exp, suffix = _DEC.match(t).groups()
    if frac or exp or suffix[:1] in ("f", "d", "j") or not whole:
        return FLOAT
    return _int_token(int(whole))


def _int_token(v: int) -> str:
    # Ints up to 1024 (buffer sizes such as 50 vs 100 decide many overflow
    # flaws), powers of two and 2**k - 1 (UCHAR_MAX, INT_MAX...) carry meaning
    # for off-by-one, buffer-size and overflow bugs; larger arbitrary ones do not.
    if v <= 1024 or (v <= 2**64 and (v & (v - 1) == 0 or (v >= 255 and v & (v + 1) == 0))):
        return str(v)
    return NUM


# --- lexing ----------------------------------------------------------------
def _whole_name(ident: str) -> list[str]:
    return [ident]


_STRING_WORD = re.compile(r"[^\W\d]\w*|\d+")


def _lex(code: str, fam: _Family, split_names: bool = True, string_words: bool = False,
         ordinal_names: bool = False) -> list[str]:
    out: list[str] = []
    append, extend, names = out.append, out.extend, fam.name_tokens if split_names else _whole_name
    whole: list[str] = []  # ordinal_names: the tokens with names whole (no string words), and which are names
    is_name: list[bool] = []
    for m in fam.regex.finditer(code):
        kind = m.lastgroup
        if kind == "skip":
            continue
        if kind == "id":
            extend(names(m.group()))
            tok = m.group()
        elif kind == "op":
            tok = m.group()
            if not tok.isprintable():  # drop control characters from binary junk
                continue
            append(tok)
        elif kind == "num":
            tok = _number(m.group())
            append(tok)
        elif kind == "str":
            tok = STR
            append(STR)
            if string_words:  # the literal's words too (messages, format strings, file names)
                extend(_STRING_WORD.findall(m.group()))
        elif kind == "chr":
            tok = CHR
            append(CHR)
        elif kind == "pre":
            tok = "#" + m.group("pn")
            append(tok)
        else:
            continue
        if ordinal_names:
            whole.append(tok)
            is_name.append(kind == "id")
    if ordinal_names:
        out.append(NAMES_SEP)
        out.extend(ordinal(whole, is_name, fam.keep_set))
    return out


def _pygments_tokens(code: str, lexer, split_names: bool = True, string_words: bool = False,
                     ordinal_names: bool = False) -> list[str]:
    """Fallback for languages without a regex family; slow but broad. With ordinal_names, the same pass
    collects the tokens with names whole, names being what the lexer calls Name (never its keywords)."""
    from pygments.token import Comment, Name, Number, String

    out: list[str] = []
    whole: list[str] = []  # ordinal_names: the tokens with names whole (no string words), and which are names
    is_name: list[bool] = []
    fam = _FAMILIES["c"]
    in_string = False
    for ttype, value in lexer.get_tokens(code):
        if ttype in String:
            if not in_string:
                out.append(CHR if ttype in String.Char else STR)
                whole.append(out[-1])
                is_name.append(False)
            if string_words and ttype not in String.Char:
                out.extend(_STRING_WORD.findall(value))
            in_string = True
            continue
        in_string = False
        if ttype in Comment or not value.strip():
            continue
        if ttype in Number:
            tokens, names = [FLOAT if ttype in Number.Float else _number(value.strip())], False
            out.extend(tokens)
        elif ttype in Name and value.isidentifier():
            out.extend(fam.name_tokens(value) if split_names else [value])
            tokens, names = [value], True
        else:
            out.extend(_lex(value, fam, split_names, string_words))
            tokens, names = (_lex(value, fam, False, False) if ordinal_names else []), False
        if ordinal_names:
            whole.extend(tokens)
            is_name.extend([names] * len(tokens))
    if ordinal_names:
        out += [NAMES_SEP, *ordinal(whole, is_name, fam.keep_set)]
    return out


@lru_cache(maxsize=256)
def _resolve(language: str):
    """Language name -> regex family, or a cached Pygments lexer."""
    name = language.strip().lower()
    if name in _ALIASES:
        return _FAMILIES[_ALIASES[name]]
    try:
        from pygments.lexers import get_lexer_by_name

        lexer = get_lexer_by_name(name, stripnl=False, ensurenl=False)
    except Exception:  # unknown to Pygments too: brace-language default
        return _FAMILIES["c"]
    for alias in lexer.aliases:
        if alias in _ALIASES:
            return _FAMILIES[_ALIASES[alias]]
    return lexer


_PY_HINT = re.compile(
    r"^[ \t]*(?:(?:async[ \t]+)?def|class)[ \t]+\w+[^\n]*:[ \t]*(?:#[^\n]*)?$"
    r"|^[ \t]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+\w[\w., \t]*$"
    r"|^[ \t]*(?:if|elif|else|for|while|try|except|finally|with)\b[^\n;{}]*:[ \t]*$"
    r"|\bself\.|^[ \t]*#[ \t]+|^[ \t]*@\w+",
    re.M,
)
_C_HINT = re.compile(r"[;{}][ \t]*$|^[ \t]*#[ \t]*[a-z]+\b[^\n]*$|//|/\*", re.M)
_SUBFAMILY = [  # (name, substrings that must occur, confirming pattern)
    ("php", ("<?php", "$"), re.compile(r"<\?php|^[ \t]*\$\w+[ \t]*=", re.M)),
    ("go", ("func", "package"),
     re.compile(r"^[ \t]*(?:package[ \t]+\w+|func[ \t]+(?:\([^)]*\)[ \t]*)?\w+\()", re.M)),
    ("rust", ("fn", "let mut", "impl"),
     re.compile(r"\bfn[ \t]+\w+[ \t]*[<(]|\blet[ \t]+mut\b|\bimpl\b")),
    ("js", ("function", "=>", "let ", "var ", "const ", "console."),
     re.compile(r"\bfunction\b|=>|\b(?:let|var|const)[ \t]+\w+[ \t]*=|\bconsole\.")),
]


def _guess(code: str):
    """Cheap counts first, then line regexes; Pygments' slow guess_lexer last."""
    head = code[:2000]
    # `;` ends C-family statements, `:` + newline ends Python block headers;
    # `case x:` / `default:` are the C lines that end in a colon.
    c = head.count(";")
    py = head.count(":\n") + head.count(":\r\n") + head.count("self.")
    py -= head.count("case ") + head.count("default:")
    # Docstrings and a leading `def` outweigh `;` in prose or one-liners.
    py += 2 * (head.count('"""') + head.count("'''"))
    if head.lstrip().startswith(("def ", "async def ", "@")):
        py += 5
    if c == py:  # no signal (or a tie): the slower, sharper line patterns
        py, c = len(_PY_HINT.findall(head)), len(_C_HINT.findall(head))
    if py > c:
        return _FAMILIES["python"]
    if c:
        for name, cue, pattern in _SUBFAMILY:
            if any(s in head for s in cue) and pattern.search(head):
                return _FAMILIES[name]
        return _FAMILIES["c"]
    if head.count("\n") >= 2:  # guess_lexer cannot tell anything from less
        try:
            from pygments.lexers import guess_lexer

            for alias in guess_lexer(head).aliases:
                if alias in _ALIASES:
                    return _FAMILIES[_ALIASES[alias]]
        except Exception:
            pass
    return _FAMILIES["c"]


def tokenize_code(code: str, language: str | None = None, split_names: bool = True,
                  string_words: bool = False, ordinal_names: bool = False) -> list[str]:
    """Normalised tokens of `code`; never raises on str input, no token has whitespace.

    split_names=False keeps identifiers whole (`dataBuffer`, not `data buffer`); string_words=True
    follows each string literal's `<str>` with the words inside it; ordinal_names=True appends
    `<names>` and the tokens again with local names numbered by first use (see `ordinal`)."""
    code = _as_text(code)
    if not code:
        return []
    lexer = _guess(code) if not language else _resolve(str(language))
    if isinstance(lexer, _Family):
        return _lex(code, lexer, split_names, string_words, ordinal_names)
    try:
        return _pygments_tokens(code, lexer, split_names, string_words, ordinal_names)
    except Exception:
        return _lex(code, _FAMILIES["c"], split_names, string_words, ordinal_names)


def token_doc(code: str, language: str | None = None, split_names: bool = True, string_words: bool = False,
              ordinal_names: bool = False) -> str:
    return " ".join(tokenize_code(code, language, split_names, string_words, ordinal_names))


def _as_text(x) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", errors="replace")
    return "" if x is None else str(x)


def token_docs(codes: Iterable[str], language: str | None = None, split_names: bool = True,
               string_words: bool = False, ordinal_names: bool = False) -> list[str]:
    if isinstance(codes, (str, bytes)):
        raise TypeError("token_docs expects an iterable of code strings, not one string")
    return [" ".join(tokenize_code(c, language, split_names, string_words, ordinal_names)) for c in codes]


class CodeTokenizer(TransformerMixin, BaseEstimator):
    """Stateless transformer: raw code strings -> space-separated token docs."""

    def __init__(self, language: str | None = None, split_names: bool = True, string_words: bool = False,
                 ordinal_names: bool = False):
        self.language = language
        self.split_names = split_names
        self.string_words = string_words
        self.ordinal_names = ordinal_names

    def fit(self, X, y=None):
        return self

    def transform(self, X) -> list[str]:
        return token_docs(X, self.language, getattr(self, "split_names", True), getattr(self, "string_words", False),
                          getattr(self, "ordinal_names", False))  # models saved before a setting existed

    def __sklearn_is_fitted__(self) -> bool:
        return True  # nothing to learn

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
