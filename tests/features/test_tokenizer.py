import pytest
from sklearn.base import clone

from cgtrain.features.tokenizer import CodeTokenizer, token_doc, token_docs, tokenize_code

C_SNIPPET = """\
#ifdef _WIN32
int recvResult = 0; // a comment with strcpy(
#endif
void func(char *data, size_t dataLen)
{
    /* block
       comment */
    char buf[100] = "";
    if (dataLen <= 10 && data->next != NULL) { buf[dataLen] = 'a'; }
    i += 2; x = 1000 + 123456 + 0x100 + 255 + 3.5f;
    while (i == 1) strcpy(buf, "literal with spaces");
}
"""

PY_SNIPPET = '''\
def parse_request(self, rawData, max_len=4096):
    """Docstring that mentions eval("x")."""
    # a comment
    if len(rawData) >= max_len:
        raise ValueError(f"too long: {max_len}")
    return HTTPServer(rawData[:max_len], timeout=2.5)
'''


def test_identifiers_split_on_camel_snake_and_digits():
    assert tokenize_code("recvResult", "c") == ["recv", "result"]
    assert tokenize_code("data_len", "c") == ["data", "len"]
    assert tokenize_code("HTTPServer", "python") == ["http", "server"]
    assert tokenize_code("sin6_addr", "c") == ["sin", "6", "addr"]
    assert tokenize_code("XMLHttpRequest2", "java") == ["xml", "http", "request", "2"]


def test_keywords_and_builtins_kept_whole():
    assert tokenize_code("size_t n = NULL; int64_t m = INT_MAX;", "c") == [
        "size_t", "n", "=", "NULL", ";", "int64_t", "m", "=", "INT_MAX", ";",
    ]
    assert tokenize_code("isinstance(x, ValueError) or None", "python") == [
        "isinstance", "(", "x", ",", "ValueError", ")", "or", "None",
    ]
    assert tokenize_code("def __init__(self): pass", "python")[1] == "__init__"


def test_operators_kept_whole():
    toks = tokenize_code("a <= b; p->x += 1; c == d; e != f; g >>= 2; h && i; j::k;", "c")
    for op in ("<=", "->", "+=", "==", "!=", ">>=", "&&", "::"):
        assert op in toks
    assert "<" not in toks and "-" not in toks


def test_c_snippet_literals_comments_and_preprocessor():
    toks = tokenize_code(C_SNIPPET, "c")
    assert toks[:2] == ["#ifdef", "win"]
    assert "#endif" in toks
    assert "comment" not in toks and "block" not in toks  # comments dropped
    assert toks.count("strcpy") == 1  # the one in the comment is gone
    assert toks.count("<str>") == 2 and toks.count("<chr>") == 1
    assert "literal" not in toks
    # ints up to 1024, powers of two and 2**k-1 kept; larger arbitrary numbers normalised
    assert {"0", "10", "2", "1", "256", "255"} <= set(toks)
    assert "<num>" in toks and "1000" in toks and "123456" not in toks
    assert "<float>" in toks


def test_python_snippet():
    toks = tokenize_code(PY_SNIPPET, "python")
    assert toks[:6] == ["def", "parse", "request", "(", "self", ","]
    assert "eval" not in toks and "comment" not in toks  # docstring and comment
    assert toks.count("<str>") == 2  # docstring + f-string
    assert ">=" in toks and "<float>" in toks and "4096" in toks
    assert "raw" in toks and "data" in toks


@pytest.mark.parametrize("code", [PY_SNIPPET, "x = 1\n# note: it's fine\nif x:\n    y = x\n"])
def test_guess_python(code):
    guessed = tokenize_code(code)
    assert guessed == tokenize_code(code, "python")
    assert guessed != tokenize_code(code, "c")


def test_guess_c():
    assert tokenize_code(C_SNIPPET) == tokenize_code(C_SNIPPET, "c")
    assert tokenize_code(C_SNIPPET) != tokenize_code(C_SNIPPET, "python")
    java = "public int f(String s) {\n    // why\n    return s.length();\n}\n"
    assert tokenize_code(java) == tokenize_code(java, "java")


def test_language_aliases_and_unknown_languages():
    code = "let x = 'abc'; // hi"
    assert tokenize_code(code, "JavaScript") == tokenize_code(code, "ts")
    assert tokenize_code(code, "js") == ["let", "x", "=", "<str>", ";"]
    assert tokenize_code(code, "no-such-language") == tokenize_code(code, "c")
    # A Pygments-only language: comments and strings still understood.
    assert tokenize_code('main = putStrLn "hi" -- note', "haskell") == [
        "main", "=", "put", "str", "ln", "<str>",
    ]


JUNK = [
    "",
    "   \n\t ",
    "\x00\x01\x02\xff\ufffd\ud800 abc",
    '"unterminated string\nint x;',
    "'",
    "/* never closed",
    "r'''never closed",
    "\\",
    "#",
    "0x 0b 1e 1..2 .5 5. 0xfp1 1'000 10usize",
    "a\u2028b\u00a0c\x1cd\x85e",
    bytes(range(256)).decode("latin-1"),
]


@pytest.mark.parametrize("code", JUNK)
@pytest.mark.parametrize("language", [None, "c", "python", "js", "rust", "haskell"])
def test_never_raises_and_no_whitespace_in_tokens(code, language):
    toks = tokenize_code(code, language)
    assert all(t and t.split() == [t] for t in toks)
    assert token_doc(code, language).split() == toks


def test_empty_input():
    assert tokenize_code("") == []
    assert token_doc("   ") == ""
    assert token_docs([]) == []


def test_token_docs_and_transformer():
    codes = [C_SNIPPET, PY_SNIPPET, None, b"int x = 1;"]
    docs = token_docs(codes)
    assert docs[0] == token_doc(C_SNIPPET) and docs[2] == ""
    assert docs[3] == "int x = 1 ;"
    tok = CodeTokenizer(language="c")
    assert tok.fit(codes).transform(codes[:1]) == [token_doc(C_SNIPPET, "c")]
    assert clone(tok).get_params() == {"language": "c", "split_names": True, "string_words": False,
                                       "ordinal_names": False}
    with pytest.raises(TypeError):
        token_docs("a single string")


def test_ordinal_names_number_local_names_by_first_use():
    bad = "void f() { char * data; char dataBBuffer[50]; char dataABuffer[100]; data = dataBBuffer; " \
          "strcpy(data, s.name); p->len = MAX_LEN; }"
    doc = token_doc(bad, "c", split_names=False, ordinal_names=True)
    plain, numbered = doc.split(" <names> ")
    assert plain == token_doc(bad, "c", split_names=False)  # the tokens as before, then the numbered copy
    # locals numbered by first use; called names, members, macros and keywords kept
    assert numbered.startswith("void f ( ) { char * <v0> ; char <v1> [ 50 ] ; char <v2> [ 100 ] ; <v0> = <v1> ;")
    assert "strcpy ( <v0> , <v3> . name )" in numbered and "<v4> -> len = MAX_LEN" in numbered
    # the same flaw written with other names reads the same; pointing at the other buffer does not
    other = bad.replace("dataBBuffer", "small").replace("dataABuffer", "big").replace("data", "p0")
    assert token_doc(other, "c", False, False, True).split(" <names> ")[1] == numbered
    good = bad.replace("data = dataBBuffer", "data = dataABuffer")
    assert token_doc(good, "c", False, False, True).split(" <names> ")[1] != numbered


def test_ordinal_names_other_languages_and_transformer():
    doc = token_doc("def f(a, b):\n    return a.x + len(b)\n", "python", ordinal_names=True)
    assert doc.endswith("<names> def f ( <v0> , <v1> ) : return <v0> . x + len ( <v1> )")
    assert token_doc("x = y", "haskell", ordinal_names=True).endswith("<names> <v0> = <v1>")  # Pygments path
    # ... where the lexer's keywords stay keywords (only what it calls a Name is numbered)
    code = "f count = let total = count + 1 in if total > 2 then total else count"
    assert token_doc(code, "haskell", split_names=False, ordinal_names=True).split(" <names> ")[1] == \
        "<v0> <v1> = let <v2> = <v1> + 1 in if <v2> > 2 then <v2> else <v1>"
    tok = CodeTokenizer(language="c", ordinal_names=True)
    assert tok.transform(["int n = m;"]) == ["int n = m ; <names> int <v0> = <v1> ;"]
