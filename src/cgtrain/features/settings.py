"""Featurisation settings of one trial: the request's `features` with the trial's searched values on top.

A settings dict is plain data (JSON in the trial's `features` attribute), so trials that share a
featurisation share one cache entry (`settings_key`), and the refit builds the same featurizer.
"""
from __future__ import annotations

import json
from typing import Any

from cgtrain.features.featurizer import CodeFeaturizer

KEYS = ("kind", "ngram_max", "max_features", "min_df", "metrics", "split_names", "string_words", "ordinal_names",
        "sublinear_tf", "name_flow")


def feature_settings(features, searched: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request's FeaturesConfig (or a dict) as settings, `searched` values overriding."""
    base = features.model_dump() if hasattr(features, "model_dump") else dict(features)
    out = {k: base.get(k) for k in KEYS if k in base}
    out.setdefault("split_names", True)
    out.setdefault("string_words", False)
    out.setdefault("ordinal_names", False)
    out.setdefault("sublinear_tf", True)
    out.setdefault("name_flow", False)
    out.update(searched or {})
    if not out["ordinal_names"]:  # name-flow terms are read from the numbered copy: none without it
        out["name_flow"] = False
    return out


def token_mode(settings: dict[str, Any]) -> tuple[bool, bool, bool]:
    """What the token docs depend on: (split_names, string_words, ordinal_names)."""
    return (bool(settings.get("split_names", True)), bool(settings.get("string_words", False)),
            bool(settings.get("ordinal_names", False)))


def settings_key(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def code_featurizer(settings: dict[str, Any]) -> CodeFeaturizer:
    return CodeFeaturizer(kind=settings["kind"], ngram_max=int(settings["ngram_max"]),
                          max_features=None if settings["max_features"] is None else int(settings["max_features"]),
                          min_df=int(settings["min_df"]), metrics=bool(settings["metrics"]),
                          sublinear_tf=bool(settings["sublinear_tf"]),
                          name_flow=bool(settings.get("name_flow", False)))
