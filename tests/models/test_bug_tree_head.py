"""`bug_spotter`'s syntax-tree context of a token (`features/bug_tree`) and its function-level head with
pairwise products of the pooled inputs (`models/bug_head`)."""
import numpy as np

from helpers.bugs import twin_rows
from cgtrain.features.bug_tokens import function_tokens, relation_features, token_features
from cgtrain.features.bug_tree import NONE, tree_contexts
from cgtrain.models.bug_head import expand, fit_head, head_decision
from cgtrain.models.bug_spotter import BugSpotter


def _at(toks, text, nth=0):
    return [t for t in toks if t.text == text][nth]


def test_an_operator_sees_the_operands_it_stands_between_and_where_its_node_hangs():
    code = "def f(self, items, k):\n    if self.n + k < len(items):\n        return items[0]\n    return None"
    toks = function_tokens(code)[0]
    assert _at(toks, "<").tree == ("Compare", "op", "If.test", "BinOp", "Call:len")
    assert _at(toks, "+").tree == ("BinOp", "op", "Compare.left", "Attribute", "Name")
    assert _at(toks, "0").tree == ("Subscript", "slice", "Return.value", "Name", "^")
    feats = token_features(toks, toks.index(_at(toks, "<")))
    assert "tlr=BinOp|<|Call:len" in feats and "tu=If.test|Compare|op|<" in feats


def test_a_name_is_placed_by_its_parent_and_compared_with_its_other_uses():
    toks = function_tokens("def f(xs, n):\n    for x in xs:\n        n = n + x\n    return xs[n]")[0]
    x_read = _at(toks, "x", 1)
    assert x_read.tree[:3] == ("BinOp", "right", "Assign.value")
    k = toks.index(_at(toks, "xs", 2))  # `xs[n]`: elsewhere `xs` is what a loop walks
    assert "uo=Subscript.value|arguments.args#0" in token_features(toks, k, relation_features(toks))


def test_code_that_does_not_parse_gets_no_tree_context_and_non_ascii_offsets_hold():
    assert tree_contexts("def f(:\n    return", [(0, 3), (4, 5)]) == [NONE, NONE]
    toks = function_tokens("def f(a):\n    s = 'é' + a\n    return s < 'ü'")[0]
    assert _at(toks, "<").tree == ("Compare", "op", "Return.value", "Name", "Constant:str")
    assert all(t.tree == NONE or t.tree[0] for t in toks)


def test_the_head_weighs_products_of_inputs_and_keeps_plain_arrays():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)  # an interaction no linear head can read
    mean, scale, coef, intercept = fit_head(X, y, C=1.0)
    assert expand(np.ones((2, 3))).shape == (2, 3 + 6) and coef.shape == (9,)
    d = head_decision(X, mean, scale, coef, intercept)
    assert ((d > 0) == y).mean() > 0.9
    assert np.array_equal(d, head_decision(X, *fit_head(X, y, C=1.0)))


def test_the_same_seed_gives_the_same_scores():
    codes, y = twin_rows(6)
    a, b = (BugSpotter(n_features=2 ** 14, epochs=3, folds=2, rewrites=1, random_state=3).fit(codes, y)
            for _ in range(2))
    assert np.array_equal(a.decision_function(codes), b.decision_function(codes))
