"""The TrainingRequest: one strict, validated description of a training job.

Validated once at the boundary (Ludwig habit); inner code trusts it. Errors are
turned into one line per problem naming the field, the value and the fix.
The schema is in `schema.py`, file reading and its limits in `yamlio.py`, error lines in `messages.py`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cgtrain.errors import CgtrainError, RequestError  # noqa: F401 (re-exported)
from cgtrain.request.messages import format_validation_errors
from cgtrain.request.schema import (  # noqa: F401 (the schema's classes and constants)
    CLASSIFICATION_METRICS, Candidate, CategoricalParam, DEFAULT_FAMILIES, DatasetConfig,
    DistributedConfig, FEATURE_SEARCH_KEYS, FeaturesConfig, FloatParam, HpoConfig, IntParam, METRICS,
    MULTI_OBJECTIVE_SAMPLERS, OBJECTIVES, PRUNERS, ParamSpec, QaConfig, SAMPLERS, Strict, TASKS,
    TASK_METRICS, TrainSection, TrainingRequest, ValidationConfig)
from cgtrain.request.yamlio import (MAX_ALIASES, MAX_DEPTH, MAX_NODES, MAX_REQUEST_BYTES,  # noqa: F401
                                    YamlLimitError, _flat, load_yaml, read_request_file)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply dotted `key=value` overrides (values parsed as YAML scalars/lists)."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RequestError([f"override {item!r} is not of the form key=value, e.g. hpo.n_trials=20"])
        try:
            value = load_yaml(raw) if raw != "" else None
        except yaml.YAMLError as exc:
            raise RequestError([f"override {item!r}: the value is not valid YAML ({_flat(exc)}); quote it, "
                                f"e.g. {key}='...' inside the shell's quotes"]) from None
        _set_dotted(data, key.strip().split("."), value, item)
    return data


def _set_dotted(node: Any, parts: list[str], value: Any, item: str) -> None:
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RequestError([f"override {item!r}: '{part}' is not an index of a list of {len(node)}"])
            part = int(part)
        elif not isinstance(node, dict):
            raise RequestError([f"override {item!r}: '{'.'.join(parts[:depth])}' is not a section"])
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def parse_request(data: dict, source: str = "request") -> TrainingRequest:
    try:
        return TrainingRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError(format_validation_errors(exc, data), source) from None


def load_request(path: str | Path, overrides: list[str] | None = None) -> TrainingRequest:
    data = apply_overrides(read_request_file(path), overrides or [])
    return parse_request(data, str(path))


def request_json_schema() -> dict:
    return TrainingRequest.model_json_schema()


def request_to_yaml(request: TrainingRequest) -> str:
    return yaml.safe_dump(request.model_dump(mode="json"), sort_keys=False)
