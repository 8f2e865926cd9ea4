"""A pre-trained encoder family through the CLI: `cgtrain train` -> run dir -> `cgtrain predict`."""
import json

from helpers.cli import cgtrain, read_jsonl
from helpers.requests import write_request


def test_hf_embed_trains_and_predicts_from_the_run_dir(tmp_path, easy_jsonl, monkeypatch):
    rows = read_jsonl(easy_jsonl)[:96]  # 24 groups: enough for 2 folds and a test split
    data = tmp_path / "easy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    req = write_request(tmp_path, data, dataset={"language": "c", "segment_columns": []},
                        candidates=[{"family": "hf_embed", "params": {"max_length": 64, "C": 0.5}}],
                        hpo={"n_trials": 1}, validation={"folds": 2, "test_fraction": 0.25},
                        qa={"enabled": False})  # QA's explanations re-encode perturbed code: not what this checks
    monkeypatch.setenv("CGTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"]["family"] == "hf_embed" and metrics["test"]["f1"] > 0.8
    assert json.loads((run / "model.json").read_text())["family"] == "hf_embed"
    assert list((tmp_path / "cache").iterdir())  # token ids and embeddings were cached

    proc = cgtrain("predict", "--run", run, data, check=True)
    preds = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(preds) == len(rows)
    accuracy = sum(p["label"] == r["label"] for p, r in zip(preds, rows)) / len(rows)
    assert accuracy > 0.8 and all(0.0 <= p["probability"] <= 1.0 for p in preds)
