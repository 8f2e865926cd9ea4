"""Families over raw code: the token-level bug spotter (core: scikit-learn) and the pre-trained or
pre-trainable encoders (the `[hf]` extra: torch, transformers, tokenizers)."""
from __future__ import annotations

from cgtrain.models.base import Family, Lazy, register_family

HF = ("torch", "transformers", "tokenizers")
CHECK_MODEL_PATH = Lazy("cgtrain.models.hf.encoder:check_params")  # a request's model_path, checked at load time

# = HFEmbedClassifier.__init__ parameters less random_state, class_weight (tests/models/test_families.py checks)
_EMBED_PARAMS = frozenset({
    "C", "batch_size", "cache_dir", "device", "head", "head_frac", "learning_rate", "max_length", "model_path",
    "n_estimators", "num_leaves", "truncation", "use_cache"})

register_family(Family(
    requires=HF, extra="hf",
    name="hf_embed", prior_cost_s=40.0, build=Lazy("cgtrain.models.hf.embed:build"), input="code",
    extra_params=_EMBED_PARAMS, check_params=CHECK_MODEL_PATH,
    description="frozen pre-trained encoder embeddings (mean-pooled, cached) -> logistic regression or LightGBM",
    default_space={
        "head": {"type": "categorical", "choices": ["logreg", "lightgbm"]},
        "C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
        "num_leaves": {"type": "int", "low": 15, "high": 63, "log": True},
    },
    defaults={"head": "logreg", "C": 1.0, "num_leaves": 31, "max_length": 256}))


# = HFClassifier.__init__ parameters less random_state, class_weight (tests/models/test_families.py checks)
_FINETUNE_PARAMS = frozenset({
    "amp", "batch_size", "bucket", "cache_dir", "checkpoint_every", "deterministic", "device", "dropout", "epochs",
    "focal_gamma", "freeze_embeddings", "freeze_layers", "head_frac", "layer_lr_decay", "loss", "lr",
    "max_bad_steps", "max_batch_tokens", "max_grad_norm", "max_length", "max_train_rows", "micro_batch_size",
    "model_path", "optimizer", "patience", "pooling", "schedule", "truncation", "unfreeze_per_epoch", "use_cache",
    "val_metric", "warmup_frac", "weight_decay"})

register_family(Family(
    requires=HF, extra="hf",
    name="hf_finetune", prior_cost_s=15.0, build=Lazy("cgtrain.models.hf.finetune:build"), input="code",
    extra_params=_FINETUNE_PARAMS, check_params=CHECK_MODEL_PATH,
    epoch_validation=True, saves_hf_dir=True,
    description="fine-tune a local pre-trained encoder (default: packaged all-MiniLM-L6-v2) on raw code",
    default_space={
        "lr": {"type": "float", "low": 1e-5, "high": 1e-4, "log": True},
        "layer_lr_decay": {"type": "float", "low": 0.7, "high": 1.0},
        "warmup_frac": {"type": "float", "low": 0.0, "high": 0.2},
        "freeze_layers": {"type": "int", "low": 0, "high": 3},
        "max_length": {"type": "categorical", "choices": [128, 256]},
    },
    defaults={"lr": 5e-5, "layer_lr_decay": 0.9, "warmup_frac": 0.1, "freeze_layers": 0, "max_length": 256,
              "epochs": 3, "batch_size": 16, "patience": 2}))


# = BugLocator.__init__ parameters less random_state, class_weight (tests/models/test_families.py checks)
_LOCATOR_PARAMS = frozenset({
    "batch_size", "device", "dropout", "epochs", "loc_weight", "lr", "max_length", "model_path", "pair_weight",
    "patience", "scratch_vocab", "val_metric", "warmup_frac", "weight_decay"})

register_family(Family(
    requires=HF, extra="hf",
    name="bug_locator", prior_cost_s=15.0, build=Lazy("cgtrain.models.locator:build"), input="code",
    extra_params=_LOCATOR_PARAMS, check_params=CHECK_MODEL_PATH,
    epoch_validation=True,
    tasks=frozenset({"binary"}),
    description="encoder + function head + token pointer to the bug (BugLab/GREAT), pairs ranked; "
                "model_path: a `cgtrain pretrain` directory, else a small transformer from scratch",
    default_space={
        "lr": {"type": "float", "low": 5e-5, "high": 1e-3, "log": True},
        "loc_weight": {"type": "float", "low": 0.1, "high": 2.0, "log": True},
        "pair_weight": {"type": "float", "low": 0.0, "high": 2.0},
    },
    defaults={"lr": 1e-4, "loc_weight": 1.0, "pair_weight": 1.0, "epochs": 3, "batch_size": 16, "patience": 2}))


register_family(Family(
    name="bug_spotter", prior_cost_s=30.0, build=Lazy("cgtrain.models.bug_spotter:build"), input="code",
    tasks=frozenset({"binary"}),
    extra_params=frozenset({"epochs", "n_features", "find_pairs", "slots", "rewrites", "rewrite_weight", "folds",
                            "ngram_alpha", "head_C"}),
    description="token-level bug spotter (bug tokens of clean/flawed pairs and of rewritten clean code vs clean "
                "tokens; hashed context, syntax, data-flow and slot-surprisal features; linear, cross-fitted), "
                "pooled with like-for-like contrasts and an n-gram channel to a function score; CPU",
    default_space={
        "alpha": {"type": "float", "low": 1e-6, "high": 1e-4, "log": True},
        "negatives": {"type": "int", "low": 20, "high": 200, "log": True},
    },
    defaults={"alpha": 1e-5, "negatives": 100, "epochs": 20}))
