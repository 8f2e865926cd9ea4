"""Family `bug_spotter`: token supervision from clean/flawed twins, function scores, the explanation
per token, plain-data state that saves and loads, and its token / data-flow features."""

import numpy as np
import pytest

from helpers.bugs import SOURCES, twin_rows
from cgtrain.data.synth_bugs import bug_location
from cgtrain.models.bug_spotter import BugSpotter
from cgtrain.features.bug_tokens import function_tokens, name_facts, relation_features, tokenize
from cgtrain.models import FAMILIES
from cgtrain.artifacts.files import load_model, save_model

def make_rows(n_per_source: int = 12) -> tuple[list[str], np.ndarray]:
    return twin_rows(n_per_source, SOURCES)


@pytest.fixture(scope="module")
def rows():
    return make_rows()


@pytest.fixture(scope="module")
def fitted(rows):
    codes, y = rows
    return BugSpotter(n_features=2 ** 16).fit(codes, y)


def test_tokens_carry_offsets_into_the_code():
    code = "def f(a, b):\n    return a[1:] <= 'x' + b"
    toks = tokenize(code)
    assert [t[1] for t in toks][:6] == ["def", "f", "(", "a", ",", "b"]
    assert all(code[s:e] == text for kind, text, s, e in toks if kind != "nl")
    assert "<=" in [t[1] for t in toks] and "'x'" in [t[1] for t in toks]


def test_data_flow_facts_flag_a_local_that_is_never_read():
    facts = name_facts("def f(a, b):\n    c = a + 1\n    d = c * 2\n    return c")
    assert facts["d"]["store"] == 1 and facts["d"]["load"] == 0
    assert facts["b"]["param"] == 1 and facts["b"]["load"] == 0
    _, stats = function_tokens("def f(a, b):\n    c = a + 1\n    d = c * 2\n    return c")
    assert stats["unread_locals"] == 1 and stats["unused_params"] == 1


def test_an_attribute_knows_its_receiver_and_a_name_its_other_uses():
    toks, _ = function_tokens("def f(self, x):\n    y = x.size\n    return self.size + y")
    rel = relation_features(toks)
    attr = [k for k, t in enumerate(toks) if t.role == "A"]
    assert attr and any(f.startswith("ra=self.size") for k in attr for f in rel[k])
    y_uses = [k for k, t in enumerate(toks) if t.text == "y"]
    assert all(k in rel for k in y_uses)


def test_flawed_rows_score_above_their_clean_twins(fitted, rows):
    codes, y = rows
    p = fitted.predict_proba(codes)[:, 1]
    assert p.shape == (len(codes),) and np.all((p >= 0) & (p <= 1))
    ranked = np.mean([p[i + 1] > p[i] for i in range(0, len(codes), 2)])
    assert ranked >= 0.8
    assert set(fitted.predict(codes)) <= {0, 1}


def test_the_top_token_points_at_the_bug(fitted, rows):
    codes, _ = rows
    hits = []
    for i in range(0, len(codes), 2):
        _, start, end = bug_location(codes[i], codes[i + 1])
        texts, scores = fitted.token_scores([codes[i + 1]])[0]
        spans = fitted.token_spans([codes[i + 1]])[0]
        assert len(texts) == len(scores) == len(spans)
        assert all(codes[i + 1][s:e] == t for t, (s, e) in zip(texts, spans))
        s, e = spans[int(np.argmax(scores))]
        hits.append(s < end and e > start)
    assert np.mean(hits) >= 0.7


def test_the_explanation_is_the_models_own_token_scores(fitted, rows):
    from cgtrain.qa.explain import explain
    from sklearn.pipeline import Pipeline

    codes, _ = rows
    found = explain(Pipeline([("code", "passthrough"), ("model", fitted)]), codes[:6], [1, 3])
    assert found.method == "bug-pointer" and len(found.rows) == 2


def test_rows_without_twins_still_train(rows):
    codes, y = rows
    model = BugSpotter(n_features=2 ** 14, find_pairs=False, epochs=5).fit(codes, y)
    assert model.predict_proba(codes[:4]).shape == (4, 2)


def test_saved_model_is_plain_data_and_scores_the_same(fitted, rows, tmp_path):
    codes, _ = rows
    checksum = save_model(fitted, tmp_path / "m.skops")
    loaded = load_model(tmp_path / "m.skops", checksum)
    np.testing.assert_allclose(loaded.predict_proba(codes), fitted.predict_proba(codes))


def test_the_family_is_registered_for_raw_code():
    fam = FAMILIES.get("bug_spotter")
    assert fam.input == "code" and fam.tasks == frozenset({"binary"})
    model = fam.make({"alpha": 3e-5, "negatives": 20}, seed=1)
    assert model.alpha == 3e-5 and model.random_state == 1
    with pytest.raises(ValueError, match="binary"):
        BugSpotter().fit(["def f():\n    return 1"] * 3, np.array([0, 1, 2]))
