"""Per-fold features, fitted on each fold's training rows only and cached across the trials that share them."""
from __future__ import annotations

import time

from cgtrain.core.fit import make_featurizer
from cgtrain.core.prepared import Prepared, docs_for, model_inputs, raw_codes
from cgtrain.features import ngram_counts
from cgtrain.features.ngram_counts import NgramCounts
from cgtrain.features.settings import feature_settings, settings_key, token_mode
from cgtrain.request import TrainingRequest


class FoldCache:
    """Per-fold features, fitted on the fold's training rows only, built once per featurisation and kept
    for the trials that share it (the `KEEP` most recently used featurisations stay in memory)."""

    KEEP = 2

    def __init__(self, request: TrainingRequest, prepared: Prepared):
        self.request, self.prepared = request, prepared
        self._features: dict[tuple[str, int], tuple] = {}
        self._used: list[str] = []  # settings keys, least recently used first
        self.feat_seconds: dict[str, list[float]] = {}  # settings key -> seconds per fold built
        self._counts: dict[tuple, NgramCounts] = {}  # n-gram counts of all rows per token mode (see ngram_counts)
        self.count_seconds, self._count_s = 0.0, 0.0  # spent counting n-grams (once per token mode); the last pass

    def _ngram_counts(self, docs: list[str], mode: tuple) -> NgramCounts:
        self._count_s = 0.0
        if mode not in self._counts:
            start = time.perf_counter()
            self._counts = {mode: NgramCounts(docs)}  # one token mode in memory at a time
            self._count_s = time.perf_counter() - start
            self.count_seconds += self._count_s
        return self._counts[mode]

    def feature_cost(self, settings: dict | None = None) -> float:
        """Estimated seconds to build one fold's features of a new featurisation (the dearest so far, plus a
        count pass when its token mode has none yet)."""
        per_fold = max((max(v) for v in self.feat_seconds.values()), default=0.0)
        full = self._settings(settings)
        recount = ngram_counts.supports(full) and token_mode(full) not in self._counts
        return per_fold + (self.count_seconds if recount and self._counts else 0.0)

    def has(self, k: int, settings: dict | None = None) -> bool:
        return (settings_key(self._settings(settings)), k) in self._features

    def _settings(self, settings: dict | None) -> dict:
        return feature_settings(self.request.features, settings)

    def features(self, k: int, settings: dict | None = None):
        full = self._settings(settings)
        key = settings_key(full)
        if (key, k) not in self._features:
            start = time.perf_counter()
            tr, va = self.prepared.folds[k]
            y = self.prepared.y
            docs = docs_for(self.request, self.prepared, full)
            if self.prepared.dataset.table is None and self.prepared.use_code and ngram_counts.supports(full):
                X_tr, X_va = self._ngram_counts(docs, token_mode(full)).fold(tr, va, full)
                self._features[(key, k)] = (X_tr, y[tr], X_va, y[va])
                start += self._count_s
            else:
                feat = make_featurizer(self.request, full)
                inputs = model_inputs(self.prepared, None, docs)
                self._features[(key, k)] = (feat.fit_transform(inputs(tr), y[tr]), y[tr], feat.transform(inputs(va)),
                                            y[va])
            self.feat_seconds.setdefault(key, []).append(time.perf_counter() - start)
        if key in self._used:
            self._used.remove(key)
        self._used.append(key)
        for old in self._used[:-self.KEEP]:  # bounded memory: a featurisation is a few hundred MB on 60k rows
            self._used.remove(old)
            for kk in [kk for kk in self._features if kk[0] == old]:
                del self._features[kk]
        return self._features[(key, k)]

    def tokens(self, k: int):
        tr, va = self.prepared.folds[k]
        docs, y = self.prepared.docs, self.prepared.y
        return [docs[i] for i in tr], y[tr], [docs[i] for i in va], y[va]

    def code(self, k: int):
        """Raw code strings, for families with their own tokenizer (pre-trained encoders)."""
        tr, va = self.prepared.folds[k]
        codes, y = raw_codes(self.prepared), self.prepared.y
        return [codes[i] for i in tr], y[tr], [codes[i] for i in va], y[va]

    def fold(self, k: int, kind: str, settings: dict | None = None):
        if kind == "code":
            return self.code(k)
        return self.features(k, settings) if kind == "features" else self.tokens(k)
