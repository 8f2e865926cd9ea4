"""Token docs cached on disk per dataset content: a dataset is tokenised once per tokenizer setting,
then reused by every trial, resume and later run on the same rows.

The key hashes the code strings (in order), the language, the token settings and
`TOKENIZER_VERSION` (bump it when the tokenizer's output changes). The file is the docs
joined by newlines (token docs hold no whitespace other than single spaces), gzip-free:
reading 60k docs back takes a fraction of a second. `CGTRAIN_CACHE_DIR` moves the cache
(default `~/.cache/cgtrain`); a cache that cannot be written is skipped silently.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cgtrain.features.tokenizer import token_docs
from cgtrain.fsutil import atomic_write_bytes

TOKENIZER_VERSION = "1"
SUBDIR = "tokens"


def cache_dir() -> Path:
    return Path(os.environ.get("CGTRAIN_CACHE_DIR") or Path.home() / ".cache" / "cgtrain") / SUBDIR


def docs_key(codes: list[str], language: str | None, split_names: bool, string_words: bool = False,
             ordinal_names: bool = False) -> str:
    names = "|ordinal2" if ordinal_names else ""  # keys of the earlier settings stay as they were (2: Pygments
    # languages' keywords are no longer numbered)
    h = hashlib.sha256(f"{TOKENIZER_VERSION}|{language}|{int(split_names)}|{int(string_words)}{names}|{len(codes)}|"
                       .encode())
    for code in codes:
        h.update(code.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def cached_token_docs(codes: list[str], language: str | None = None, split_names: bool = True,
                      string_words: bool = False, ordinal_names: bool = False) -> list[str]:
    """token_docs(codes, language, split_names, string_words, ordinal_names), read from / written to the disk
    cache."""
    path = cache_dir() / f"{docs_key(codes, language, split_names, string_words, ordinal_names)}.txt"
    try:
        if path.is_file():
            docs = path.read_bytes().decode("utf-8", "surrogatepass").split("\n")
            if len(docs) == len(codes):
                return docs
    except OSError:
        pass
    docs = token_docs(codes, language, split_names, string_words, ordinal_names)
    try:
        atomic_write_bytes(path, "\n".join(docs).encode("utf-8", "surrogatepass"))
    except OSError:
        pass
    return docs
