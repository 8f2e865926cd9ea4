"""Our QA figures against direct library calls (scikit-learn, statsmodels, fairlearn, scipy)."""
import numpy as np
import pytest
from fairlearn.metrics import MetricFrame
from scipy import stats
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from cgtrain.qa import bias as audits
from cgtrain.evaluate import calibration as cal
from cgtrain.evaluate import significance as sig
from cgtrain.evaluate.significance import mcnemar_test


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.3 * y + rng.beta(2, 3, 400), 0, 1)
    return y, p


# --- calibration -----------------------------------------------------------------------------------------
def test_brier_and_reliability_match_sklearn(scored):
    y, p = scored
    rec = cal.reliability(y, p, n_bins=10)
    assert rec["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10)
    np.testing.assert_allclose(rec["prob_true"], prob_true)
    np.testing.assert_allclose(rec["prob_pred"], prob_pred)
    counts = np.asarray(rec["bin_counts"])
    assert counts.sum() == len(y)
    nonzero = counts[counts > 0]
    assert rec["ece"] == pytest.approx(np.sum(nonzero / len(y) * np.abs(prob_true - prob_pred)))


def test_isotonic_and_sigmoid_calibrators(scored):
    y, p = scored
    iso = cal.fit_calibrator("isotonic", y, p)
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y)
    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(cal.apply_calibration(iso, grid), ref.predict(grid), atol=1e-12)
    sig_cal = cal.fit_calibrator("sigmoid", y, p)
    assert np.all(np.diff(cal.apply_calibration(sig_cal, grid)) >= 0)
    chosen = cal.choose_calibration("auto", y, p)
    assert chosen["method"] == min(chosen["cv_brier"], key=chosen["cv_brier"].get)


def _brute(y, p):
    """(threshold, F1, precision, recall, FPR) at every distinct score, by counting."""
    for t in np.unique(p):
        pred = p >= t
        tp, fp = np.sum(pred & (y == 1)), np.sum(pred & (y == 0))
        prec, rec = tp / max(tp + fp, 1), tp / np.sum(y == 1)
        yield t, 2 * tp / (2 * tp + fp + np.sum(~pred & (y == 1))), prec, rec, fp / np.sum(y == 0)


def test_threshold_policies_are_optimal_by_brute_force(scored):
    y, p = scored
    table = list(_brute(y, p))
    t = cal.choose_threshold("max_f1", y, p)
    assert cal.at_threshold(y, p, t.threshold)["f1"] == pytest.approx(max(r[1] for r in table))
    t = cal.choose_threshold("fpr", y, p, max_fpr=0.1)
    got = cal.at_threshold(y, p, t.threshold)
    assert got["fpr"] <= 0.1
    assert got["recall"] == pytest.approx(max(r[3] for r in table if r[4] <= 0.1))
    t = cal.choose_threshold("precision", y, p, min_precision=0.8)
    got = cal.at_threshold(y, p, t.threshold)
    assert got["precision"] >= 0.8
    assert got["recall"] == pytest.approx(max(r[3] for r in table if r[2] >= 0.8))
    assert cal.choose_threshold("argmax", y, p).threshold == 0.5


def test_precision_at_k(scored):
    y, p = scored
    order = np.argsort(-p, kind="stable")
    assert cal.precision_at_k(y, p, [10, 50, 1000]) == {
        "10": pytest.approx(y[order[:10]].mean()), "50": pytest.approx(y[order[:50]].mean()),
        "1000": pytest.approx(y.mean())}


# --- audit --------------------------------------------------------------------------------------------------
def test_segment_metrics_match_sklearn_and_fairlearn():
    rng = np.random.default_rng(1)
    seg = rng.choice(["CWE121", "CWE190", "CWE476"], 600)
    y = rng.integers(0, 2, 600)
    pred = np.where(seg == "CWE476", rng.integers(0, 2, 600), y)  # CWE476: a coin flip
    pred = np.where((seg != "CWE476") & (rng.random(600) < 0.05), 1 - y, pred)
    chars = rng.integers(50, 2000, 600)
    a = audits.audit(y, pred, {"cwe": seg}, chars, n_buckets=4, alpha=0.05)
    assert a["overall"]["recall"] == pytest.approx(skm.recall_score(y, pred))
    rows = {r["segment"]: r for r in a["columns"]["cwe"]}
    for name, r in rows.items():
        m = seg == name
        assert r["recall"] == pytest.approx(skm.recall_score(y[m], pred[m]))
        assert r["precision"] == pytest.approx(skm.precision_score(y[m], pred[m]))
        tp = int(np.sum((pred[m] == 1) & (y[m] == 1)))
        np.testing.assert_allclose(r["recall_ci"], proportion_confint(tp, int(y[m].sum()), 0.05, "wilson"))
        np.testing.assert_allclose(r["precision_ci"], proportion_confint(tp, int(pred[m].sum()), 0.05, "wilson"))
    assert rows["CWE476"]["flags"] and not rows["CWE121"]["flags"] and not rows["CWE190"]["flags"]
    frame = MetricFrame(metrics=skm.recall_score, y_true=y, y_pred=pred, sensitive_features=seg)
    d = a["largest_disparity"]
    assert d["column"] == "cwe" and d["worst"] == "CWE476"
    if d["metric"] == "recall":
        assert d["difference"] == pytest.approx(frame.difference())
    buckets = {r["segment"]: r["n"] for r in a["columns"]["code_length"]}
    assert sum(buckets.values()) == 600 and len(buckets) == 4


# --- significance -------------------------------------------------------------------------------------------
def test_mcnemar_matches_statsmodels(scored):
    y, p = scored
    rng = np.random.default_rng(2)
    pb = np.clip(p + rng.normal(0, 0.2, len(p)), 0, 1)
    A, B = np.c_[1 - p, p], np.c_[1 - pb, pb]
    stat, pval, exact, only_a, only_b = mcnemar_test(y, A, B)
    ra, rb = (p >= 0.5) == y, (pb >= 0.5) == y
    table = [[np.sum(ra & rb), np.sum(ra & ~rb)], [np.sum(~ra & rb), np.sum(~ra & ~rb)]]
    ref = mcnemar(table, exact=only_a + only_b < 25, correction=True)
    assert pval == pytest.approx(ref.pvalue) and stat == pytest.approx(ref.statistic)


def _naive_delong(y, a, b):
    """Textbook DeLong: structural components by explicit pairwise comparisons."""
    def comps(s):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(), psi.mean(1), psi.mean(0)
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = comps(a), comps(b)
    m, n = len(v10a), len(v01a)
    s10, s01 = np.cov(np.vstack([v10a, v10b])), np.cov(np.vstack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (auc_b - auc_a) / np.sqrt(var)
    return auc_a, auc_b, z, 2 * stats.norm.sf(abs(z))


def test_delong_matches_sklearn_auc_and_textbook_variance(scored):
    y, p = scored
    rng = np.random.default_rng(3)
    pb = np.round(np.clip(p + rng.normal(0, 0.15, len(p)), 0, 1), 2)  # rounding makes ties
    d = sig.delong_test(y, p, pb)
    assert d.auc_a == pytest.approx(skm.roc_auc_score(y, p))
    assert d.auc_b == pytest.approx(skm.roc_auc_score(y, pb))
    auc_a, auc_b, z, pval = _naive_delong(y, p, pb)
    assert d.z == pytest.approx(z) and d.p == pytest.approx(pval)
    assert d.ci_low < d.difference < d.ci_high


def test_5x2cv_statistic_and_identical_procedures():
    d = np.array([[0.02, 0.01], [0.03, -0.01], [0.0, 0.02], [0.01, 0.01], [0.02, 0.03]])
    t, p = sig.five_by_two_t(d)
    s2 = ((d - d.mean(1, keepdims=True)) ** 2).sum(1)
    assert t == pytest.approx(d[0, 0] / np.sqrt(s2.mean()))
    assert p == pytest.approx(2 * stats.t.sf(abs(t), 5))
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(200, 5, random_state=0)
    res = sig.paired_5x2cv(LogisticRegression(), LogisticRegression(), X, y,
                           lambda m, X_, y_: skm.accuracy_score(y_, m.predict(X_)), "accuracy")
    assert np.allclose(res.differences, 0) and res.p == 1.0


def test_mean_ci_matches_scipy():
    values = [0.81, 0.84, 0.79, 0.83]
    ci = sig.mean_ci(values)
    low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert (ci["mean"], ci["ci_low"], ci["ci_high"]) == pytest.approx((np.mean(values), low, high))


# --- the request's qa section ---------------------------------------------------------------------------------
def test_qa_section_is_strict_and_names_the_fix():
    from cgtrain.request import RequestError, parse_request

    base = {"dataset": {"path": "x.jsonl"}}
    assert parse_request(base).qa.threshold == "argmax"
    with pytest.raises(RequestError) as exc:
        parse_request({**base, "qa": {"threshold": "fpr"}})
    assert exc.value.problems == ["qa: threshold 'fpr' needs max_fpr, e.g. qa.max_fpr=0.05"]
    with pytest.raises(RequestError) as exc:
        parse_request({**base, "qa": {"calibartion": "auto"}})
    assert "did you mean 'calibration'" in exc.value.problems[0]
