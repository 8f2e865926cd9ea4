"""pydantic validation errors -> one line per problem naming the field, the value and the fix."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from cgtrain.plugins import did_you_mean
from cgtrain.request.schema import TrainingRequest


def format_validation_errors(exc: ValidationError, data: dict) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not _is_union_tag(p)]
        field = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(_one_line(err, field, loc, data))
    return list(dict.fromkeys(lines))  # de-duplicate, keep order


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in ("float", "int", "categorical")


def _one_line(err: dict, field: str, loc: list, data: dict) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        allowed = _allowed_keys(parent, data)
        hint = did_you_mean(key, allowed) if allowed else ""
        return f"{field}: unknown key{hint}; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{field}: required field is missing; add it to the request"
    if kind == "literal_error":
        choices = err.get("ctx", {}).get("expected", "")
        options = [c.strip().strip("'") for c in choices.replace(" or ", ",").split(",") if c.strip()]
        return f"{field}: {value!r} is not allowed{did_you_mean(str(value), options)}; choose one of: {', '.join(options)}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return f"{field}: {msg}"
    return f"{field}: {msg} (got {value!r})"


def _allowed_keys(parent: list, data: dict) -> list[str]:
    model: Any = TrainingRequest
    node: Any = data
    for part in parent:
        node = node[part] if isinstance(node, (dict, list)) else None
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return []
        if part not in fields:  # a user-chosen key of a dict section, e.g. a space's param name
            continue
        model = _model_of(fields[part].annotation, node)
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def _model_of(annotation: Any, node: Any) -> Any:
    """The pydantic model inside an annotation such as `list[Candidate] | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg, node)
        if found is not None:
            return found
    return None
