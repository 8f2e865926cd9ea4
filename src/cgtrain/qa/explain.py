"""Why the model calls a function flawed: attributions per feature and per code token.

* Feature models (the sparse n-gram + code-metric matrix): SHAP values toward the
  "flawed" class's log-odds. Linear families use `shap.LinearExplainer` (interventional,
  background = the explained rows), tree families `shap.TreeExplainer`; a linear SVM is
  explained on its averaged margin (coef, intercept) before sigmoid calibration. Rows
  are explained in chunks, so a 300k-column vocabulary never becomes one dense matrix.
* Token nets (TextCNN, BiGRU, Transformer): integrated gradients (captum) on the
  embedding layer, baseline = every real token replaced by <unk> (same length).
* Anything else (e.g. the MLP, models over raw code): occlusion, line by line.

Token attributions of feature models spread each n-gram's SHAP value evenly over the
tokens of its occurrences. `lexemes` maps tokens back to character spans of the source,
so `cgtrain explain` and the report can highlight the code itself.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from cgtrain.features import tokenizer as tk
from cgtrain.features.tokenizer import tokenize_code

CHUNK = 20
TOP = 15


@dataclass(frozen=True)
class Attribution:
    method: str  # "shap-linear" | "shap-tree" | "integrated-gradients" | "occlusion" | "bug-pointer"
    base: float  # expected value (log-odds / logit scale); nan where not defined
    names: list[str]  # global feature names (tokens for token nets)
    mean: np.ndarray  # signed attribution where the name occurs, summed, / rows explained (toward flawed > 0)
    mean_abs: np.ndarray
    rows: list[dict[str, Any]]  # per explained example: tokens, token_attr, top features


# --- source spans ------------------------------------------------------------------------------
def lexemes(code: str, language: str | None) -> list[tuple[int, int, list[str]]] | None:
    """(start, end, tokens) per source lexeme, in token order; None where spans cannot be recovered."""

    code = tk._as_text(code)
    lexer = tk._guess(code) if not language else tk._resolve(str(language))
    if not isinstance(lexer, tk._Family):
        return None
    out = []
    for m in lexer.regex.finditer(code):
        kind, text = m.lastgroup, m.group()
        toks = {"id": lambda: lexer.name_tokens(text), "op": lambda: [text] if text.isprintable() else [],
                "num": lambda: [tk._number(text)], "str": lambda: [tk.STR], "chr": lambda: [tk.CHR],
                "pre": lambda: ["#" + m.group("pn")]}.get(kind, lambda: [])()
        if toks:
            out.append((m.start(), m.end(), list(toks)))
    flat = [t for *_, ts in out for t in ts]
    return out if flat == tk.tokenize_code(code, language) else None


# --- feature models: SHAP ------------------------------------------------------------------------
def feature_explainer(model, X_background):
    """(shap explainer, method) for a fitted feature-matrix model, or None if SHAP has no fast path."""
    import shap

    name = type(model).__name__
    if name == "LogisticRegression" or (hasattr(model, "coef_") and hasattr(model, "intercept_")):
        return shap.LinearExplainer(model, shap.maskers.Independent(X_background, max_samples=X_background.shape[0])), \
            "shap-linear"
    if name == "CalibratedClassifierCV" and hasattr(model.calibrated_classifiers_[0].estimator, "coef_"):
        inner = [c.estimator for c in model.calibrated_classifiers_]
        coef = np.mean([e.coef_[0] for e in inner], axis=0)
        intercept = float(np.mean([e.intercept_[0] for e in inner]))
        masker = shap.maskers.Independent(X_background, max_samples=X_background.shape[0])
        return shap.LinearExplainer((coef, intercept), masker), "shap-linear"
    if name in ("LGBMClassifier", "RandomForestClassifier", "ExtraTreesClassifier", "XGBClassifier",
                "GradientBoostingClassifier", "DecisionTreeClassifier"):
        return shap.TreeExplainer(model), "shap-tree"
    return None


def _positive(values, expected) -> tuple[np.ndarray, float]:
    """SHAP output of a binary classifier -> (rows, features) toward class 1, and its base value."""
    if isinstance(values, list):  # older shap: one array per class
        values, expected = values[-1], np.atleast_1d(expected)[-1]
    values = values.toarray() if sp.issparse(values) else np.asarray(values)
    if values.ndim == 3:  # (rows, features, classes)
        values = values[:, :, -1]
        expected = np.atleast_1d(expected)[-1]
    return values, float(np.atleast_1d(expected)[-1])


def shap_feature_values(explainer, X) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():  # shap notes LightGBM's output format change on every call
        warnings.filterwarnings("ignore", message=".*output has changed to a list of ndarray.*")
        return _positive(explainer.shap_values(X), explainer.expected_value)


def explain_features(pipeline, codes: Sequence[str], examples: Sequence[int], language: str | None
                     ) -> Attribution | None:
    """SHAP over the rows `codes`; per-example records for the row indices in `examples`."""
    model, transform = pipeline[-1], pipeline[:-1]
    X = sp.csr_matrix(transform.transform(list(codes)))
    found = feature_explainer(model, X)
    if found is None:
        return None
    explainer, method = found
    names = [str(n) for n in transform[-1].get_feature_names_out()]
    total, total_abs, base, rows = np.zeros(X.shape[1]), np.zeros(X.shape[1]), float("nan"), {}
    for start in range(0, X.shape[0], CHUNK):
        chunk = X[start:start + CHUNK]
        values, base = shap_feature_values(explainer, chunk)
        # Where a feature is absent its interventional SHAP value only mirrors the background mean (a linear
        # model's SHAP values average to 0 over the background): the push of an n-gram is where it occurs.
        total += np.asarray((chunk != 0).multiply(values).sum(0)).ravel()
        total_abs += np.abs(values).sum(0)
        for k in (i for i in examples if start <= i < start + CHUNK):
            rows[k] = _feature_row(values[k - start], X[k], names, codes[k], transform, language)
    n = max(X.shape[0], 1)
    return Attribution(method, base, names, total / n, total_abs / n, [rows[k] for k in examples if k in rows])


def _feature_row(values: np.ndarray, x, names: list[str], code: str, transform, language) -> dict[str, Any]:
    order = np.argsort(-np.abs(values))[:TOP]
    dense = np.asarray(x.todense()).ravel()
    top = [{"name": names[j], "value": float(dense[j]), "attribution": float(values[j])} for j in order]
    tokens = transform[0].transform([code])[0].split()
    return {"tokens": tokens, "token_attr": ngram_token_attr(tokens, values, transform[-1]).tolist(),
            "top_features": top}


def ngram_token_attr(tokens: list[str], values: np.ndarray, featurizer) -> np.ndarray:
    """Each n-gram feature's attribution split evenly over the tokens of its occurrences in `tokens`."""
    attr = np.zeros(len(tokens))
    vocab = getattr(featurizer.vectorizer_, "vocabulary_", None)
    if vocab is None:  # hashed features have no names to find in the code
        return attr
    occurrences: dict[int, list[tuple[int, int]]] = {}
    for n in range(1, int(featurizer.ngram_max) + 1):
        for i in range(len(tokens) - n + 1):
            col = vocab.get(" ".join(tokens[i:i + n]))
            if col is not None:
                occurrences.setdefault(col, []).append((i, n))
    for col, where in occurrences.items():
        share = values[col] / len(where)
        for i, n in where:
            attr[i:i + n] += share / n
    return attr


# --- token nets: integrated gradients ------------------------------------------------------------
def explain_token_net(pipeline, codes: Sequence[str], examples: Sequence[int], n_steps: int = 32
                      ) -> Attribution:
    import torch
    from captum.attr import LayerIntegratedGradients

    from cgtrain.engine.data import PAD_ID, UNK_ID, Vocab, encode_docs  # torch: token nets only

    clf = pipeline[-1]
    net = clf._fitted_net().eval()
    docs = pipeline[:-1].transform(list(codes))
    seqs = encode_docs(Vocab(clf.vocab_), docs, clf.max_len)
    target = int(len(clf.classes_) - 1)
    device = next(net.parameters()).device
    lig = LayerIntegratedGradients(lambda ids: net(ids), net.embed)
    per_token: dict[str, list[float]] = {}
    rows = {}
    for k, (doc, ids) in enumerate(zip(docs, seqs)):
        ids = ids[None].to(device)
        if ids.shape[1] < clf._spec().min_len:
            ids = torch.nn.functional.pad(ids, (0, clf._spec().min_len - ids.shape[1]), value=PAD_ID)
        baseline = torch.where(ids != PAD_ID, torch.full_like(ids, UNK_ID), ids)
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN RNNs refuse backward in eval mode
            attr = lig.attribute(ids, baselines=baseline, target=target, n_steps=n_steps)
        scores = attr.sum(-1)[0].detach().cpu().numpy().astype(float)
        tokens = doc.split()
        token_attr = np.zeros(len(tokens))
        m = min(len(tokens), clf.max_len)
        token_attr[:m] = scores[:m]
        for tok, v in zip(tokens[:m], token_attr[:m]):
            per_token.setdefault(tok, []).append(float(v))
        if k in examples:
            top = np.argsort(-np.abs(token_attr))[:TOP]
            rows[k] = {"tokens": tokens, "token_attr": token_attr.tolist(),
                       "top_features": [{"name": f"token:{tokens[j]}@{j}", "value": 1.0,
                                         "attribution": float(token_attr[j])} for j in top]}
    names = sorted(per_token)
    n = max(len(docs), 1)
    return Attribution("integrated-gradients", float("nan"), names,
                       np.asarray([sum(per_token[t]) / n for t in names]),
                       np.asarray([sum(abs(v) for v in per_token[t]) / n for t in names]),
                       [rows[k] for k in examples if k in rows])


# --- anything else: occlusion -----------------------------------------------------------------------
def explain_occlusion(pipeline, codes: Sequence[str], examples: Sequence[int], language: str | None
                      ) -> Attribution:
    """Drop each line; its attribution is the fall in P(flawed), split over the line's tokens."""
    per_token: dict[str, list[float]] = {}
    rows = []
    for k in examples:
        code = codes[k]
        lines = code.split("\n")
        variants = [code] + ["\n".join(lines[:i] + lines[i + 1:]) for i in range(len(lines))]
        proba = np.asarray(pipeline.predict_proba(variants))[:, -1]
        tokens, token_attr = [], []
        for i, line in enumerate(lines):
            line_tokens = tokenize_code(line, language)
            tokens += line_tokens
            token_attr += [(proba[0] - proba[i + 1]) / max(len(line_tokens), 1)] * len(line_tokens)
        for tok, v in zip(tokens, token_attr):
            per_token.setdefault(tok, []).append(v)
        top = np.argsort(-np.abs(token_attr))[:TOP]
        rows.append({"tokens": tokens, "token_attr": [float(v) for v in token_attr],
                     "top_features": [{"name": f"token:{tokens[j]}@{j}", "value": 1.0,
                                       "attribution": float(token_attr[j])} for j in top]})
    names = sorted(per_token)
    n = max(len(examples), 1)
    return Attribution("occlusion", float("nan"), names, np.asarray([sum(per_token[t]) / n for t in names]),
                       np.asarray([sum(abs(v) for v in per_token[t]) / n for t in names]), rows)


# --- models that point at the bug themselves (bug_locator) -------------------------------------------
def explain_pointer(pipeline, codes: Sequence[str], examples: Sequence[int]) -> Attribution:
    """The model's own pointer: each token's probability of being the bug (model.token_scores)."""
    per_token: dict[str, list[float]] = {}
    rows = {}
    wanted = set(examples)
    for k, (tokens, scores) in enumerate(pipeline[-1].token_scores(list(codes))):
        tokens = [t.strip() or t for t in tokens]
        for tok, v in zip(tokens, scores):
            per_token.setdefault(tok, []).append(float(v))
        if k in wanted:
            top = np.argsort(-np.asarray(scores))[:TOP]
            rows[k] = {"tokens": tokens, "token_attr": [float(v) for v in scores],
                       "top_features": [{"name": f"token:{tokens[j]}@{j}", "value": 1.0,
                                         "attribution": float(scores[j])} for j in top]}
    names = sorted(per_token)
    n = max(len(codes), 1)
    totals = np.asarray([sum(per_token[t]) / n for t in names])
    return Attribution("bug-pointer", float("nan"), names, totals, totals.copy(),
                       [rows[k] for k in examples if k in rows])


# --- entry point ---------------------------------------------------------------------------------------
def explain(pipeline, codes: Sequence[str], examples: Sequence[int], language: str | None = None) -> Attribution:
    """The best attribution method for the fitted pipeline (tokenizer [-> featurizer] -> model)."""
    model = pipeline[-1]
    if hasattr(model, "token_scores"):  # bug_locator: its pointer head says where the bug is
        return explain_pointer(pipeline, codes, examples)
    if len(pipeline.steps) >= 3 and hasattr(pipeline[-2], "vectorizer_"):  # tokenizer -> CodeFeaturizer -> model
        found = explain_features(pipeline, codes, examples, language)
        if found is not None:
            return found
    if hasattr(model, "vocab_") and hasattr(model, "_fitted_net") and \
            hasattr(getattr(model._fitted_net(), "embed", None), "weight"):
        return explain_token_net(pipeline, codes, examples)
    return explain_occlusion(pipeline, codes, examples, language)


def global_top(att: Attribution, k: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Names pushing hardest toward flawed (largest mean attribution) and the most important overall."""
    def rows(order):
        return [{"name": att.names[j], "mean": float(att.mean[j]), "mean_abs": float(att.mean_abs[j])} for j in order]

    return {"toward_flawed": rows([j for j in np.argsort(-att.mean)[:k] if att.mean[j] > 0]),
            "toward_clean": rows([j for j in np.argsort(att.mean)[:k] if att.mean[j] < 0]),
            "most_important": rows(np.argsort(-att.mean_abs)[:k])}


def explain_record(att: Attribution, codes: Sequence[str], ids: Sequence[str], y: Sequence[int],
                   proba: Sequence[float], examples: Sequence[int], language: str | None) -> dict[str, Any]:
    """What explanations.json holds: the method, the global top lists, per-example token attributions."""
    examples_out = []
    for k, row in zip(examples, att.rows):
        spans = lexemes(codes[k], language)
        examples_out.append({"id": str(ids[k]), "y_true": int(y[k]), "p_flawed": float(proba[k]), "code": codes[k],
                             "spans": [[s, e, len(t)] for s, e, t in spans] if spans else None, **row})
    return {"method": att.method, "base_value": att.base, "n_rows": None, "global": global_top(att),
            "examples": examples_out}
