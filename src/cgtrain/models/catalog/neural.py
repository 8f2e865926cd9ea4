"""The PyTorch families (the `[torch]` extra): TextCNN, BiGRU and a small Transformer over token
docs, an MLP over the feature matrix; builders in cgtrain.models.neural."""
from __future__ import annotations

from cgtrain.models.base import Family, Lazy, register_family

TORCH = ("torch",)

# = NeuralClassifier.__init__ parameters less net, random_state, class_weight (tests/models/test_families.py checks)
_SETTABLE = frozenset({
    "amp", "batch_size", "bucket", "checkpoint_every", "curriculum", "curriculum_epochs", "curriculum_start", "depth",
    "deterministic", "device", "dropout", "embed_dim", "epochs", "focal_gamma", "heads", "loss", "lr", "max_bad_steps",
    "max_batch_tokens", "max_grad_norm", "max_len", "max_vocab", "micro_batch_size", "min_freq", "momentum",
    "optimizer", "patience", "schedule", "val_metric", "warmup_frac", "weight_decay", "width"})

_TRAINING_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "schedule": {"type": "categorical", "choices": ["warmup_cosine", "one_cycle", "plateau"]},
}
_TRAINING_DEFAULTS = {"lr": 1e-3, "batch_size": 32, "weight_decay": 0.01, "dropout": 0.1,
                      "schedule": "warmup_cosine", "epochs": 10, "patience": 3, "max_len": 400,
                      "loss": "ce", "max_grad_norm": 1.0}

register_family(Family(
    requires=TORCH, extra="torch",
    extra_params=_SETTABLE, epoch_validation=True, name="textcnn", prior_cost_s=10.0,
    build=Lazy("cgtrain.models.neural:build_textcnn"), input="tokens",
    description="TextCNN (kernels 2/3/5, masked max-pool) over code tokens",
    default_space={**_TRAINING_SPACE,
                   "embed_dim": {"type": "categorical", "choices": [64, 128]},
                   "width": {"type": "int", "low": 32, "high": 256, "log": True}},
    defaults={**_TRAINING_DEFAULTS, "embed_dim": 64, "width": 128}))

register_family(Family(
    requires=TORCH, extra="torch",
    extra_params=_SETTABLE, epoch_validation=True, name="bigru", prior_cost_s=25.0,
    build=Lazy("cgtrain.models.neural:build_bigru"), input="tokens",
    description="bidirectional GRU over code tokens",
    default_space={**_TRAINING_SPACE,
                   "embed_dim": {"type": "categorical", "choices": [64, 128]},
                   "width": {"type": "int", "low": 32, "high": 128, "log": True},
                   "depth": {"type": "int", "low": 1, "high": 2}},
    defaults={**_TRAINING_DEFAULTS, "embed_dim": 64, "width": 64, "depth": 1}))

register_family(Family(
    requires=TORCH, extra="torch",
    extra_params=_SETTABLE, epoch_validation=True, name="transformer", prior_cost_s=25.0,
    build=Lazy("cgtrain.models.neural:build_transformer"), input="tokens",
    description="small pre-norm Transformer encoder over code tokens",
    default_space={**_TRAINING_SPACE,
                   "embed_dim": {"type": "categorical", "choices": [64, 128]},
                   "heads": {"type": "categorical", "choices": [2, 4]},
                   "depth": {"type": "int", "low": 1, "high": 3},
                   "width": {"type": "categorical", "choices": [128, 256]}},
    defaults={**_TRAINING_DEFAULTS, "embed_dim": 64, "heads": 4, "depth": 2, "width": 128, "max_len": 256}))

register_family(Family(
    requires=TORCH, extra="torch",
    extra_params=_SETTABLE, epoch_validation=True, name="mlp", prior_cost_s=4.0,
    build=Lazy("cgtrain.models.neural:build_mlp"), input="features",
    description="MLP over the sparse code-feature matrix",
    default_space={**_TRAINING_SPACE,
                   "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                   "width": {"type": "int", "low": 64, "high": 512, "log": True},
                   "depth": {"type": "int", "low": 1, "high": 3}},
    defaults={**_TRAINING_DEFAULTS, "width": 256, "depth": 1, "bucket": False}))
