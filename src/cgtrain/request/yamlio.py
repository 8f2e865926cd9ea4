"""Reading a request file: YAML 1.2 booleans, and limits on size, depth, aliases and expanded nodes."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from cgtrain.errors import RequestError


class _Yaml12Loader(yaml.SafeLoader):
    """Only true/false are booleans (YAML 1.2): `classes: [no, yes]` stays two strings, not [False, True]."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


MAX_REQUEST_BYTES = 1 << 20  # a request is a page of YAML; anything near this is not one
MAX_DEPTH = 64  # nesting levels
MAX_ALIASES = 1000  # YAML *alias uses
MAX_NODES = 200_000  # values after expanding aliases (a "billion laughs" expands to 10^9)


_TOO_DEEP = object()


class YamlLimitError(yaml.YAMLError):
    """The YAML is too deep or expands to too much: refused before anything is built."""


class _LimitedLoader(_Yaml12Loader):
    """Counts nesting and aliases while composing, and the expanded size before constructing."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth, self._aliases = 0, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlLimitError(f"more than {MAX_ALIASES} aliases (*name); write the values out")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels; a request needs a few")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expanded(node)
        return self.construct_document(node)


def _check_expanded(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:  # depth is bounded by MAX_DEPTH, so recursion is safe
        if id(node) not in sizes:
            children = node.value if isinstance(node, yaml.SequenceNode) else \
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
            sizes[id(node)] = 1 + sum(size(c) for c in children)
        return sizes[id(node)]

    if size(root) > MAX_NODES:
        raise YamlLimitError(f"expands to {size(root)} values through aliases (limit {MAX_NODES}); "
                             f"write the values out")


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - a SafeLoader subclass


def _json_depth(data: Any) -> int:
    depth, todo = 0, [(data, 1)]
    while todo:
        node, d = todo.pop()
        depth = max(depth, d)
        if depth > MAX_DEPTH:
            return depth
        todo += [(v, d + 1) for v in (node.values() if isinstance(node, dict) else node
                                      if isinstance(node, list) else ())]
    return depth


def _flat(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    mark = getattr(exc, "problem_mark", None)
    if getattr(exc, "problem", None) and mark is not None:
        text = f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    if "python/" in text and "constructor" in text:
        return f"{text}; tags such as !!python/... are not allowed: remove the tag"
    return text


def _request_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_REQUEST_BYTES:
        raise RequestError([f"the file is {size} bytes, over the {MAX_REQUEST_BYTES}-byte limit for a request; "
                            f"is this the request file?"], str(path))
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        what = "UTF-16 text" if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[1:2] == b"\x00" else "binary"
        raise RequestError([f"the file is {what}, not UTF-8; save the request as UTF-8 text"], str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError([f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}; Latin-1 "
                            f"or another legacy encoding?); save the request as UTF-8 text"], str(path)) from None


def read_request_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RequestError([f"file not found: {path}"], str(path))
    text = _request_text(path)
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise RequestError([f"not valid {kind}: {_flat(exc)}"], str(path)) from None
    except RecursionError:  # json's own limit, far below a stack overflow
        data = _TOO_DEEP
    if data is _TOO_DEEP or _json_depth(data) > MAX_DEPTH:
        raise RequestError([f"not a usable {kind} request: nested deeper than {MAX_DEPTH} levels"], str(path))
    if not isinstance(data, dict):
        raise RequestError([f"the top level must be a mapping of fields, got {type(data).__name__}"], str(path))
    return data
