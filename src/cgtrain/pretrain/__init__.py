"""Self-supervised pre-training of a code encoder on source code from disk (`cgtrain pretrain`)."""
from cgtrain.pretrain.run import PretrainError, PretrainResult, PretrainSettings, pretrain  # noqa: F401

__all__ = ["PretrainError", "PretrainResult", "PretrainSettings", "pretrain"]
