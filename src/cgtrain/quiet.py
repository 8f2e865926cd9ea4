"""Library settings cgtrain changes only for as long as it needs them, then gives back (nothing process-wide).

- `optuna_quiet()`: Optuna's logger at WARNING (no line per trial) for a study's duration.
- `hf_offline()`: the Hugging Face hub off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE), transformers' logging at
  ERROR and its progress bars off, while a local model or tokenizer loads or saves.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@contextlib.contextmanager
def optuna_quiet(level: int = logging.WARNING) -> Iterator[None]:
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block; each comes back to its old value (or goes) after it."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def hf_offline() -> Iterator[None]:
    """Never reach for the hub (a caller's own "0" is overridden for the block), and no loading bars."""
    with environ(**{k: "1" for k in OFFLINE_VARIABLES}):
        from transformers.utils import logging as hf_logging

        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
