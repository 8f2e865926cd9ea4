"""Pre-trained Hugging Face encoders over raw code, from local directories only.

`hf_finetune` fine-tunes the encoder with cgtrain's training loop; `hf_embed`
feeds its frozen, cached embeddings to a classical head. The names below are loaded on first
use, so `cgtrain.models.hf.encoder` (model-path checks) imports no torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"HFEmbedClassifier": "embed", "HFClassifier": "finetune", "HFModelError": "encoder",
          "default_model_path": "encoder"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"cgtrain.models.hf.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'cgtrain.models.hf' has no attribute '{name}'")
