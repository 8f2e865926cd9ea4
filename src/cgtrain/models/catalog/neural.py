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


def _net(name: str, net_input: str, prior_cost_s: float, description: str, space: dict, defaults: dict) -> None:
    """A NeuralClassifier family: the shared training space and defaults, per-epoch validation, the torch extra."""
    register_family(Family(
        name=name, build=Lazy(f"cgtrain.models.neural:build_{name}"), input=net_input, prior_cost_s=prior_cost_s,
        requires=TORCH, extra="torch", extra_params=_SETTABLE, epoch_validation=True, description=description,
        default_space={**_TRAINING_SPACE, **space}, defaults={**_TRAINING_DEFAULTS, **defaults}))


_EMBED = {"embed_dim": {"type": "categorical", "choices": [64, 128]}}

_net("textcnn", "tokens", 10.0, "TextCNN (kernels 2/3/5, masked max-pool) over code tokens",
     {**_EMBED, "width": {"type": "int", "low": 32, "high": 256, "log": True}},
     {"embed_dim": 64, "width": 128})
_net("bigru", "tokens", 25.0, "bidirectional GRU over code tokens",
     {**_EMBED, "width": {"type": "int", "low": 32, "high": 128, "log": True},
      "depth": {"type": "int", "low": 1, "high": 2}},
     {"embed_dim": 64, "width": 64, "depth": 1})
_net("transformer", "tokens", 25.0, "small pre-norm Transformer encoder over code tokens",
     {**_EMBED, "heads": {"type": "categorical", "choices": [2, 4]}, "depth": {"type": "int", "low": 1, "high": 3},
      "width": {"type": "categorical", "choices": [128, 256]}},
     {"embed_dim": 64, "heads": 4, "depth": 2, "width": 128, "max_len": 256})
_net("mlp", "features", 4.0, "MLP over the sparse code-feature matrix",
     {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
      "width": {"type": "int", "low": 64, "high": 512, "log": True}, "depth": {"type": "int", "low": 1, "high": 3}},
     {"width": 256, "depth": 1, "bucket": False})
