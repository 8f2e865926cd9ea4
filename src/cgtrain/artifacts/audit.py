"""Audit a skops archive before anything in it is built: every node, by exact name.

skops trusts some things by default (every scikit-learn estimator, numpy ufuncs) and its
own audit reports only the rest. A `FunctionTransformer` is such a default-trusted
estimator, yet its `func` can be any function: a chain of numpy functions inside one
is enough to run code or write files. So the audit here reads `schema.json` itself and
checks *every* node it holds against exact, fully-qualified names:

- a class that is built (an object, a container, an array) must be in `TRUSTED_TYPES`;
- a function reference must be one of ours, in `TRUSTED_FUNCTIONS`;
- a type passed as a value (a `dtype=` parameter) must be in `TRUSTED_TYPE_VALUES`;
- bound methods, `functools.partial` and `operator.*getter` objects are refused outright,
  whatever they point at (a default-dict's factory is a type value, checked as above).

Anything the walk cannot read (a member too big, nesting too deep, a loader it does not
know, an older protocol) is refused too: the walk over-approximates what skops would
build, never under-approximates it. skops' own `get_untrusted_types` is run afterwards
and must agree, and only the names found are passed to `skops.io.loads` as trusted.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from cgtrain.artifacts.allowlist import TRUSTED_FUNCTIONS, TRUSTED_TYPE_VALUES, TRUSTED_TYPES

MAX_MEMBERS = 100_000
MAX_SCHEMA_BYTES = 256 << 20          # uncompressed schema.json
MAX_UNCOMPRESSED_BYTES = 4 << 30      # all members together (a zip bomb is refused before inflating)
MAX_DEPTH = 400                       # nesting of nodes in schema.json
MAX_RATIO = 200                       # a member inflating more than this (and to > 64 MiB) is a zip bomb

# skops loaders whose node builds a plain value from a checked class name and data.
BUILDING_LOADERS = frozenset({
    "DictNode", "ListNode", "SetNode", "TupleNode", "BytesNode", "BytearrayNode", "SliceNode",
    "JsonNode", "DefaultDictNode", "ObjectNode", "ConstructorFromReduceNode", "ReduceNode", "TreeNode", "LossNode",
    "_DictWithDeprecatedKeysNode", "NdArrayNode", "MaskedArrayNode", "DTypeNode",
    "RandomStateNode", "RandomGeneratorNode", "SparseMatrixNode",
})
# Loaders that hand back a callable: the audit decides by the exact name of what they point at.
REFERENCE_LOADERS = {"FunctionNode": "function", "TypeNode": "type"}
# Never accepted: each turns data into a call of something the file chooses.
REFUSED_LOADERS = {
    "MethodNode": "a bound method of an object",
    "PartialNode": "a functools.partial",
    "OperatorFuncNode": "an operator.attrgetter / itemgetter / methodcaller",
}


class AuditError(Exception):
    """The archive holds something that is not on the allowlist, or cannot be audited."""

    def __init__(self, name: str, why: str, trustable: bool = False):
        super().__init__(f"{why}: {name}")
        self.name, self.why = name, why
        self.trustable = trustable  # a plain name a user could vouch for with --trust


@dataclass
class Findings:
    types: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    type_values: set[str] = field(default_factory=set)

    def names(self) -> list[str]:
        return sorted(self.types | self.functions | self.type_values)


def audit_archive(data: bytes, extra_trusted: Iterable[str] = ()) -> list[str]:
    """The exact names the archive uses, all allowed; raises AuditError at the first one that is not."""
    schema = read_schema(data)
    protocol = schema.get("protocol") if isinstance(schema, dict) else None
    from skops.io._protocol import PROTOCOL

    if type(protocol) is not int or protocol != PROTOCOL:
        raise AuditError(f"protocol {protocol!r}", f"not written by this skops (protocol {PROTOCOL})")
    extra = frozenset(extra_trusted)
    found = Findings()
    for loader, name in nodes(schema):
        check_node(loader, name, extra, found)
    return found.names()


def read_schema(data: bytes) -> Any:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise AuditError("the archive", f"unreadable zip ({exc})") from None
    if len(members) > MAX_MEMBERS:
        raise AuditError(f"{len(members)} members", f"more than {MAX_MEMBERS} members")
    total = sum(m.file_size for m in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise AuditError(f"{total} bytes", "members inflate beyond the size limit")
    bomb = next((m for m in members if m.file_size > 64 << 20 and m.file_size > MAX_RATIO * max(m.compress_size, 1)),
                None)
    if bomb is not None:
        raise AuditError(bomb.filename, f"a member that inflates over {MAX_RATIO} times (a zip bomb)")
    info = next((m for m in members if m.filename == "schema.json"), None)
    if info is None:
        raise AuditError("schema.json", "no schema in the archive")
    if info.file_size > MAX_SCHEMA_BYTES:
        raise AuditError(f"schema.json ({info.file_size} bytes)", "schema larger than the limit")
    try:
        raw = archive.read(info)
        return json.loads(raw[:MAX_SCHEMA_BYTES + 1])
    except RecursionError:
        raise AuditError("schema.json", "nesting too deep") from None
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise AuditError("schema.json", f"unreadable ({type(exc).__name__})") from None


def nodes(tree: Any) -> Iterator[tuple[str, str]]:
    """(loader, module.class) of every dict in the tree that could be a node, depth-first, iteratively."""
    stack: list[tuple[Any, int]] = [(tree, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise AuditError("schema.json", f"nesting deeper than {MAX_DEPTH}")
        if isinstance(value, dict):
            if any(k in value for k in ("__loader__", "__class__", "__module__")):
                yield node_identity(value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def node_identity(node: dict) -> tuple[str, str]:
    loader, module, cls = node.get("__loader__"), node.get("__module__"), node.get("__class__")
    if not all(isinstance(x, str) and x for x in (loader, module, cls)):
        raise AuditError(repr({k: node.get(k) for k in ("__loader__", "__module__", "__class__")}),
                         "a malformed node")
    return loader, f"{module}.{cls}"


def check_node(loader: str, name: str, extra: frozenset[str], found: Findings) -> None:
    if loader in REFUSED_LOADERS:
        raise AuditError(name, f"refers to {REFUSED_LOADERS[loader]}, which cgtrain never writes")
    kind = REFERENCE_LOADERS.get(loader)
    if kind == "function":
        if name not in TRUSTED_FUNCTIONS and name not in extra:
            raise AuditError(name, "refers to a function that is not one of cgtrain's", trustable=True)
        found.functions.add(name)
    elif kind == "type":
        if name not in TRUSTED_TYPE_VALUES and name not in extra:
            raise AuditError(name, "refers to a type that cgtrain never stores as a value", trustable=True)
        found.type_values.add(name)
    elif loader == "CachedNode":  # a second reference to a node the walk checks where it is defined
        if name not in TRUSTED_TYPES | TRUSTED_FUNCTIONS | TRUSTED_TYPE_VALUES and name not in extra:
            raise AuditError(name, "refers to a name outside the allowlist", trustable=True)
    elif loader in BUILDING_LOADERS:
        if name not in TRUSTED_TYPES and name not in extra:
            raise AuditError(name, "asks for a type outside the allowlist", trustable=True)
        found.types.add(name)
    else:
        raise AuditError(f"{name} (loader {loader})", "uses a skops loader the audit does not know")


# --- after building: parameters that would make a trusted type read or write files -----------
def check_built(obj: Any, limit: int = 1_000_000) -> None:
    """Walk the built object graph (before any use) and refuse parameters of allowed types that
    reach outside the process: a vectorizer reading its input as file names, a pipeline with a
    joblib cache directory. Raises AuditError naming the type and the parameter."""
    seen: set[int] = set()
    stack = [obj]
    while stack and len(seen) < limit:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(item))
        _check_params(item)
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
        elif hasattr(item, "__dict__") and not type(item).__module__.startswith("numpy"):
            stack.extend(vars(item).values())


def _check_params(item: Any) -> None:
    name = f"{type(item).__module__}.{type(item).__qualname__}"
    if name.startswith("sklearn.feature_extraction.text.") and getattr(item, "input", "content") != "content":
        raise AuditError(f"{name}.input={item.input!r}", "a vectorizer set to read files by name")
    if name == "sklearn.pipeline.Pipeline" and getattr(item, "memory", None) is not None:
        raise AuditError(f"{name}.memory", "a pipeline with a cache directory (joblib files)")
