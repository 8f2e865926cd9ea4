"""Fit one family on one set of rows: the featurizer and estimator a request asks for, and their inputs."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from cgtrain.core.prepared import has_table
from cgtrain.core.threads import fit_threads
from cgtrain.features.featurizer import CodeFeaturizer
from cgtrain.features.settings import code_featurizer, feature_settings, token_mode
from cgtrain.features.tabular import CodeColumnTokenizer, TabularFeaturizer
from cgtrain.features.tokenizer import CodeTokenizer
from cgtrain.models import FAMILIES
from cgtrain.request import TrainingRequest


def make_featurizer(request: TrainingRequest, settings: dict | None = None) -> CodeFeaturizer | TabularFeaturizer:
    ds = request.dataset
    code = None if ds.code_column is None else code_featurizer(feature_settings(request.features, settings))
    if not has_table(ds):
        return code
    return TabularFeaturizer(tuple(ds.numeric_columns), tuple(ds.categorical_columns), code,
                             datetime=tuple(ds.datetime_columns), text=tuple(ds.text_columns))


def input_tokenizer(request: TrainingRequest, settings: dict | None = None):
    """The saved pipeline's first step: raw code -> token docs (of the code column, for table input)."""
    ds = request.dataset
    if not has_table(ds):
        split, words, ordinal = token_mode(feature_settings(request.features, settings))
        return CodeTokenizer(language=ds.language, split_names=split, string_words=words, ordinal_names=ordinal)
    return CodeColumnTokenizer(language=ds.language) if ds.code_column is not None else "passthrough"


def class_weight(request: TrainingRequest) -> str | None:
    return "balanced" if request.imbalance == "class_weight" else None


def resample(request: TrainingRequest, X, y):
    """SMOTE on the training rows of one fold only (never on validation or test rows)."""
    if request.imbalance != "smote":
        return X, y
    from imblearn.over_sampling import SMOTE

    minority = int(np.bincount(y)[np.bincount(y) > 0].min())
    if minority < 2:
        return X, y
    return SMOTE(k_neighbors=min(5, minority - 1), random_state=request.seed).fit_resample(X, y)


def fit_family(request: TrainingRequest, family: str, params: dict, X, y, val=None, on_epoch=None):
    """Fit one family; neural ones also get the validation rows (early stopping) and on_epoch (pruning)."""
    fam = FAMILIES.get(family)
    if fam.input == "features":  # SMOTE interpolates feature vectors; token sequences have none
        X, y = resample(request, X, y)
    estimator = fam.make(fit_threads(params), request.seed, class_weight(request), task=request.task)
    fit_kwargs = {}
    if fam.epoch_validation:
        estimator.set_params(val_metric=request.validation.metric)
        if val is not None:
            fit_kwargs = {"X_val": val[0], "y_val": val[1], "on_epoch": on_epoch}
    with warnings.catch_warnings():  # a trial's CV score already says how well a non-converged fit did
        warnings.simplefilter("ignore", ConvergenceWarning)
        if request.train is not None:  # train.device / train.distributed (DDP): see train/distributed.py
            from cgtrain.engine.distributed import fit_with

            return fit_with(request.train, estimator, X, y, fit_kwargs)
        return estimator.fit(X, y, **fit_kwargs)


def refit_params(params: dict, best_epochs: list[int] | None) -> dict:
    """Neural refits have no validation rows: train for the epochs early stopping chose in CV."""
    if not best_epochs:
        return params
    return {**params, "epochs": max(1, int(round(float(np.median(best_epochs))))), "patience": None}
