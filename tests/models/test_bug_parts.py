"""The parts of `bug_spotter` beyond its token model: the slot model of normal code (surprisal), the
one-token rewrites of clean code (extra bug tokens) with their like-for-like contrasts, the n-gram
channel, the syntax context of a token, and the cross-fitted folds that score new code."""
import random

import numpy as np

from helpers.bugs import twin_rows
from cgtrain.features.bug_tokens import function_tokens, syntax_context, syntax_features
from cgtrain.models.bug_augment import contrast_features, replacements, rewritten
from cgtrain.models.bug_ngrams import NgramScorer
from cgtrain.models.bug_slots import SlotModel, slot_positions
from cgtrain.models.bug_spotter import BugSpotter


def _loop(i: int, op: str) -> str:
    return f"def f{i}(items, n{i}):\n    for k in range(len(items)):\n        if k {op} n{i}:\n            return k\n    return -1"


def test_the_slot_model_finds_the_operator_that_normal_code_does_not_use_there():
    other = "def g{i}(x):\n    if x >= 0:\n        return x\n    return 0"  # `>=` is normal elsewhere
    clean = [function_tokens(c)[0] for i in range(30) for c in (_loop(i, "<"), other.format(i=i))]
    model = SlotModel(n_features=2 ** 12).fit(clean)
    odd, usual = function_tokens(_loop(99, ">="))[0], function_tokens(_loop(99, "<"))[0]
    s_odd, s_usual = model.surprisal([odd, usual])
    k_odd = next(k for k in slot_positions(odd) if odd[k].text == ">=")
    k_usual = next(k for k in slot_positions(usual) if usual[k].text == "<")
    assert s_odd[k_odd] > s_usual[k_usual] + 1.0
    rebuilt = SlotModel(n_features=2 ** 12, classes=model.classes, coef=model.coef, intercept=model.intercept)
    assert rebuilt.surprisal([odd]) == model.surprisal([odd])


def test_a_slot_model_without_anything_to_learn_gives_no_surprisal():
    toks = function_tokens("def f(a):\n    return a")[0]
    assert SlotModel().fit([toks]).surprisal([toks]) == [{}]


def test_rewrites_change_one_token_and_say_where():
    code = "def f(a, b):\n    if a < b and not a.x:\n        return a + 1\n    return b.y"
    toks = function_tokens(code)[0]
    made = replacements(code, toks, 6, random.Random(0))
    assert made == replacements(code, toks, 6, random.Random(0)) and len(made) == 6
    for k, new, start, end in made:
        assert new != code and 0 <= start < end <= len(new) and 0 <= k < len(toks)
        assert new[:start] == code[:start]
    rows = rewritten([code], [toks], [0], 3, seed=1)
    assert len(rows) == 3 and all(row == 0 and changed for row, _, _, changed in rows)


def test_contrasts_compare_the_token_with_its_alternatives_like_for_like():
    toks = function_tokens("def f(a, b):\n    if a < b:\n        return True\n    return a.x")[0]
    found = dict(contrast_features(toks, syntax_context(toks)))
    lt = next(k for k, t in enumerate(toks) if t.text == "<")
    assert [r[0] for r in found[lt]] == ["t=<", "t=<=", "t=>", "t=>="]
    assert len({len(r) for r in found[lt]}) == 1
    true = next(k for k, t in enumerate(toks) if t.text == "True")
    assert [r[0] for r in found[true]] == ["t=True", "t=False"]


def test_syntax_features_name_the_call_and_keyword_a_token_sits_in():
    toks = function_tokens("def f(xs):\n    return sorted(xs, reverse=True)")[0]
    feats = syntax_features(toks)
    k = next(i for i, t in enumerate(toks) if t.text == "True")
    assert "in=sorted#1|True" in feats[k] and "kw=reverse|True" in feats[k] and "hd=return|True" in feats[k]


def test_the_ngram_channel_separates_what_it_was_shown():
    codes, y = twin_rows(6)
    toks = [function_tokens(c)[0] for c in codes]
    scorer = NgramScorer(n_features=2 ** 14, alpha=1e-5, epochs=30).fit(toks, y)
    d = scorer.decision(toks)
    assert d.shape == (len(codes),) and d[y == 1].mean() > d[y == 0].mean()
    assert NgramScorer().decision(toks[:2]).tolist() == [0.0, 0.0]


def test_each_fold_keeps_its_token_slot_and_ngram_models():
    codes, y = twin_rows(8)
    model = BugSpotter(n_features=2 ** 14, epochs=5, folds=3, rewrites=2).fit(codes, y)
    assert model.coef_.shape == (3, 2 ** 14) and model.ngram_coef_.shape[0] == 3
    assert len(model.slot_coef_) == 3
    p = model.predict_proba(codes)[:, 1]
    assert np.all((p >= 0) & (p <= 1)) and np.mean([p[i + 1] > p[i] for i in range(0, len(codes), 2)]) >= 0.7
