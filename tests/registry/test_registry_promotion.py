"""Model registry on a real MLflow SQLite store: champion/challenger aliases, the significance-gated
promotion (unit tests on constructed predictions + end to end through `cgtrain models`), loading
by registry name, and refusal of tampered or pickled registered artifacts."""
import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cgtrain.cli.models import models_app
from cgtrain.evaluate.metrics import score
from cgtrain.flows.supervised import train
from cgtrain.serve.predictor import load_predictor
from cgtrain.artifacts.files import UnsafeModelError
from cgtrain.registry.model_registry import RegistryError, load_registered, parse_spec
from cgtrain.evaluate.significance import resampled_scores
from cgtrain.registry.promotion import (NotComparable, Predictions, compare, decide, pair, write_predictions,
                                        read_predictions)
from cgtrain.request import parse_request
from cgtrain.track.mlflow_tracking import log_run
from cgtrain.track.store import tracking_client

# MLflow 3.17's store with SQLAlchemy 2.1: a deprecation inside MLflow, nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
WORDS = ("alpha beta gamma delta value count index total name item data node size left right "
         "parse load save user path text").split()


# --- the gate on constructed predictions ---------------------------------------------------
def predictions(y: np.ndarray, correct: np.ndarray, ids=None) -> Predictions:
    """Confident probabilities that are right exactly where `correct` is True."""
    label = np.where(correct, y, 1 - y)
    proba = np.where(label[:, None] == np.arange(2)[None, :], 0.9, 0.1)
    ids = np.asarray(ids if ids is not None else [f"row{i}" for i in range(len(y))], dtype=object)
    return Predictions(ids, y, proba)


@pytest.fixture()
def paired():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    weak = rng.random(200) < 0.60
    strong = weak | (rng.random(200) < 0.75)  # right wherever weak is, and on most other rows
    return y, weak, strong


def test_a_clearly_better_challenger_passes_the_gate(paired):
    y, weak, strong = paired
    evidence = compare(predictions(y, weak), predictions(y, strong), "accuracy")
    assert evidence.improvement > 0.2 and evidence.mcnemar_p < 1e-6 and evidence.ci_low > 0
    assert evidence.only_champion_right == 0
    assert decide(evidence).promote


def test_a_worse_challenger_is_refused_with_the_statistics(paired):
    y, weak, strong = paired
    decision = decide(compare(predictions(y, strong), predictions(y, weak), "f1"))
    assert not decision.promote
    assert "not higher" in decision.reason
    for stat in ("McNemar", "p=", "CI", "f1: challenger"):
        assert stat in decision.reason


def test_a_small_improvement_without_evidence_is_refused(paired):
    y, weak, _ = paired
    better_by_one = weak.copy()
    better_by_one[np.flatnonzero(~weak)[0]] = True
    evidence = compare(predictions(y, weak), predictions(y, better_by_one), "accuracy")
    assert evidence.improvement > 0 and evidence.mcnemar_p >= 0.05 and evidence.ci_low <= 0
    assert not decide(evidence).promote


def test_the_gate_pairs_rows_by_id_and_refuses_different_test_sets(paired, tmp_path):
    y, weak, strong = paired
    a = predictions(y, weak)
    shuffled = np.random.default_rng(1).permutation(len(y))
    b = predictions(y, strong)
    b = Predictions(b.ids[shuffled], b.y_true[shuffled], b.proba[shuffled])
    np.testing.assert_array_equal(pair(a, b)[2], predictions(y, strong).proba)
    write_predictions(tmp_path / "p.jsonl", b.ids, b.y_true, b.proba)
    assert compare(a, read_predictions(tmp_path / "p.jsonl"), "f1") == compare(a, b, "f1")
    other_rows = predictions(y, strong, ids=[f"other{i}" for i in range(len(y))])
    with pytest.raises(NotComparable, match="different rows"):
        compare(a, other_rows, "f1")


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "precision", "recall", "f1", "mcc"])
def test_the_vectorised_bootstrap_metrics_equal_scikit_learns(metric):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    proba = rng.dirichlet([1, 1], 40)
    idx = rng.integers(0, 40, size=(50, 40))
    idx[0] = np.flatnonzero(y == 0)[0]  # a resample with one class only: the zero-division cases
    expected = [score(metric, y[i], proba[i]) for i in idx]
    np.testing.assert_allclose(resampled_scores(metric, y, proba, idx), expected, atol=1e-12)


def test_model_specs():
    assert parse_spec("bugs") == parse_spec("bugs@champion")
    assert parse_spec("bugs@challenger").alias == "challenger"
    assert parse_spec("bugs/3").version == "3"
    with pytest.raises(RegistryError):
        parse_spec("@x")


# --- end to end on a real store --------------------------------------------------------------
def easy_dataset(path: Path, n: int = 240) -> Path:
    """Label 1 where the function calls eval, 0 where it calls int: easy to learn from tokens."""
    rng = random.Random(1)
    with path.open("w") as fh:
        for i in range(n):
            a, b, c, d = rng.sample(WORDS, 4)
            call = "eval" if i % 2 else "int"
            code = f"def {a}_{b}_{c}({d}):\n    {a}_{d} = {call}({d}.{b})\n    return {a}_{d} + {c}_{b}"
            fh.write(json.dumps({"id": f"f{i}", "code": code, "label": i % 2, "group": f"g{i // 2}"}) + "\n")
    return path


def train_run(base: Path, data: Path, name: str, **sections) -> Path:
    request = {"name": "tiny", "seed": 0, "dataset": {"path": str(data), "language": "python"},
               "hpo": {"n_trials": 1}, "validation": {"folds": 2, "test_fraction": 0.3}, **sections}
    train(parse_request(request), base / name, say=lambda _m: None)
    return base / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    data = easy_dataset(base / "easy.jsonl")
    good = train_run(base, data, "good", candidates=[{"family": "logreg"}], features={"max_features": 2000})
    # one feature, and it is in every function: a constant model
    bad = train_run(base, data, "bad", candidates=[{"family": "random_forest", "params": {"n_estimators": 10}}],
                    features={"max_features": 1, "metrics": False})
    return good, bad


def copy_run(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("tracking.json"))
    return dst


def models(*args) -> "object":
    return CliRunner().invoke(models_app, [str(a) for a in args], env={"COLUMNS": "250"})


def test_promotion_through_the_cli_follows_the_gate(runs, tmp_path, mlflow_store):
    good, bad = runs
    uri = mlflow_store(tmp_path / "store")
    client = tracking_client(uri)
    assert log_run(bad, uri, "tiny").alias == "champion"  # the first version ever
    assert log_run(good, uri, "tiny").alias == "challenger"

    result = models("promote", "tiny", 2, "--tracking-uri", uri)
    assert result.exit_code == 0, result.output
    assert "now @champion (was 1), promoted" in result.output
    v2 = client.get_model_version("tiny", "2")
    assert v2.aliases == ["champion"]  # no longer the challenger
    assert v2.tags["cgtrain.gate.decision"] == "promote" and float(v2.tags["cgtrain.gate.mcnemar_p"]) < 0.05
    assert client.get_model_version("tiny", "1").tags["cgtrain.promotion.superseded_by"] == "2"

    worse = log_run(copy_run(bad, tmp_path / "bad-again"), uri, "tiny")
    assert (worse.model_version, worse.alias) == ("3", "challenger")
    refused = models("promote", "tiny", 3, "--tracking-uri", uri)
    assert refused.exit_code == 1
    for stat in ("PromotionRefused", "McNemar", "p=", "bootstrap", "CI", "not higher"):
        assert stat in refused.output, refused.output
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "2"
    assert client.get_model_version("tiny", "3").tags["cgtrain.gate.decision"] == "refuse"

    no_reason = models("promote", "tiny", 3, "--force", "--tracking-uri", uri)
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    forced = models("promote", "tiny", 3, "--force", "--reason", "rollback drill", "--tracking-uri", uri)
    assert forced.exit_code == 0, forced.output
    v3 = client.get_model_version("tiny", "3")
    assert "champion" in v3.aliases
    assert v3.tags["cgtrain.promotion.forced"] == "true"
    assert v3.tags["cgtrain.promotion.reason"] == "rollback drill"
    assert float(v3.tags["cgtrain.gate.improvement"]) < 0  # the statistics are kept with the override

    listing = models("list", "--tracking-uri", uri)
    assert listing.exit_code == 0 and "tiny" in listing.output
    assert "forced past the gate (reason: rollback drill)" in forced.output
    assert "cgtrain.promotion.superseded_by" not in client.get_model_version("tiny", "3").tags
    shown = models("show", "tiny", "--tracking-uri", uri)
    assert shown.exit_code == 0 and "forced" in shown.output and "superseded by 3" in shown.output
    listed = json.loads(models("list", "--tracking-uri", uri, "--json").stdout)
    assert [(m["name"], m["champion"], m["versions"]) for m in listed] == [("tiny", "3", 3)]
    versions = json.loads(models("show", "tiny", "--tracking-uri", uri, "--json").stdout)["versions"]
    assert [v["version"] for v in versions] == ["1", "2", "3"] and "champion" in versions[2]["aliases"]
    unknown = models("show", "tiyn", "--tracking-uri", uri)
    assert unknown.exit_code == 2 and "did you mean 'tiny'" in unknown.output
    nowhere = models("list", "--tracking-uri", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    assert nowhere.exit_code == 2 and "no MLflow store" in nowhere.output
    assert not (tmp_path / "none").exists()  # looking does not create a store


def test_registered_models_load_by_alias_or_version(runs, tmp_path, mlflow_store):
    good, _ = runs
    uri = mlflow_store(tmp_path / "store")
    log_run(good, uri, "tiny")
    items = [{"id": "a", "code": "def f(x):\n    return eval(x)"}, {"id": "b", "code": "def g(y):\n    return int(y)"}]
    expected = list(load_predictor(run_dir=good).predict(items))
    for spec in ("tiny", "tiny@champion", "tiny/1"):
        assert list(load_registered(spec, uri).predict(items)) == expected
    with pytest.raises(RegistryError, match="no alias @challenger"):
        load_registered("tiny@challenger", uri)
    with pytest.raises(RegistryError, match="no registered model 'nope'"):
        load_registered("nope/1", uri)


class WritesMarker:
    """Unpickling this runs code: it creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_placed_as_the_registered_artifact_is_refused_and_never_runs(runs, tmp_path, mlflow_store):
    from cgtrain.artifacts.files import sha256_file

    good, _ = runs
    uri = mlflow_store(tmp_path / "store")
    tracked = log_run(good, uri, "tiny")
    client = tracking_client(uri)
    version = client.get_model_version("tiny", tracked.model_version)
    stored = Path(version.source.removeprefix("file://")) / "model.skops"
    assert stored.is_file()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(WritesMarker(str(marker)))

    stored.write_bytes(payload)  # swapped in the artifact store after registration
    with pytest.raises(UnsafeModelError, match="checksum"):
        load_registered("tiny@champion", uri)
    assert not marker.exists()

    # an attacker who also controls the registration (checksum of the pickle itself)
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    (evil_dir / "model.skops").write_bytes(payload)
    tags = {**version.tags, "cgtrain.sha256": sha256_file(evil_dir / "model.skops")}
    evil = client.create_model_version("tiny", source=evil_dir.as_uri(), run_id=version.run_id, tags=tags)
    with pytest.raises(UnsafeModelError, match="pickle"):
        load_registered(f"tiny/{evil.version}", uri)
    assert not marker.exists()


def test_held_out_predictions_are_rebuilt_when_a_run_lacks_them(runs, tmp_path):
    from cgtrain.evaluate.metrics import compute
    from cgtrain.registry.promotion import PREDICTIONS_FILE, ensure_test_predictions

    good, _ = runs
    run = copy_run(good, tmp_path / "run")
    written = read_predictions(run / PREDICTIONS_FILE) if (run / PREDICTIONS_FILE).is_file() else None
    (run / PREDICTIONS_FILE).unlink(missing_ok=True)
    path, held = ensure_test_predictions(run)
    rebuilt = read_predictions(path)
    assert held is not None and held.ids == list(rebuilt.ids)
    test_metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert compute(rebuilt.y_true, rebuilt.proba) == pytest.approx(test_metrics)  # the same rows, the same model
    if written is not None:  # the pipeline's own file, when it writes one
        np.testing.assert_array_equal(rebuilt.ids, written.ids)
        np.testing.assert_allclose(rebuilt.proba, written.proba, atol=1e-6)
