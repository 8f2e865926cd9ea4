"""Benchmark (not a test): `cgtrain automl` vs a TF-IDF + LogisticRegression baseline vs FLAML, on unseen Juliet families.

For each seed, 20% of the Juliet families (../shared/datasets/juliet_c_functions.jsonl.gz) are held out;
a sample of whole training families (--sample rows) is written to a JSONL file, and three contenders
learn from exactly those rows:

- cgtrain: `cgtrain automl TRAIN --budget B --metric f1 --run-dir DIR` (a subprocess: its wall clock
  includes start-up, loading, tokenising and featurising), then `cgtrain predict --run DIR TEST`;
- baseline: TF-IDF 1-3-grams (regex tokens, sublinear tf, min_df 3) + LogisticRegression(C=10,
  class_weight="balanced"), what a practitioner writes first;
- FLAML: `AutoML(time_budget=B, metric="f1")` on the baseline's precomputed TF-IDF features
  (their featurising is not counted in its wall).

F1 is each contender's own decision: `cgtrain predict`'s label (the served threshold the run chose on its
out-of-fold predictions; F1 at p >= 0.5 is printed beside it), p >= 0.5 for the others. Scores on all held-out
rows and on the conflict-free ones: rows whose code, with Juliet's random per-test-case names `tc_xxxxxx` masked
(as ../shared/datasets/README.md defines it), carries one label anywhere in Juliet: no model can learn the others.
(Until 2026-11-30 this bench masked only names found in one row, cgtrain's `label_conflicts` rule, which keeps a
`tc_xxxxxx` global that a source and a sink function share: a flow-variant-68 "goodB2G" source identical to its
"bad" one counted as learnable. F1 on that wider set is printed as "F1 hapax", comparable with earlier notes.)

    python bench/juliet_vs_baselines.py --seeds 0,1,2 --budget 300
    python bench/juliet_vs_baselines.py --seeds 0 --budget 60 --sample 15000 --no-flaml   # a quick look
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "datasets" / "juliet_c_functions.jsonl.gz"
TOKEN_PATTERN = r"[A-Za-z_]\w*|\d+|\S"
TC_NAME = re.compile(r"\btc_[0-9a-f]{6}\b")  # Juliet's random per-test-case names (see the dataset's README)
KEEP = ("id", "code", "label", "family", "cwe")


def load_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [{k: r[k] for k in KEEP} for r in map(json.loads, fh)]


def split(rows: list[dict], seed: int, sample: int | None) -> tuple[list[dict], list[dict]]:
    """Hold out 20% of the families; sample whole training families until `sample` rows."""
    families = sorted({r["family"] for r in rows})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(families))
    test_fams = {families[i] for i in order[: len(families) // 5]}
    train = [r for r in rows if r["family"] not in test_fams]
    test = [r for r in rows if r["family"] in test_fams]
    if sample and len(train) > sample:
        by_fam: dict[str, list[dict]] = {}
        for r in train:
            by_fam.setdefault(r["family"], []).append(r)
        names = sorted(by_fam)
        picked: list[dict] = []
        for i in rng.permutation(len(names)):
            if len(picked) >= sample:
                break
            picked.extend(by_fam[names[i]])
        train = picked
    return train, test


def write_jsonl_gz(path: Path, rows: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


def tc_conflicts(rows: list[dict]) -> np.ndarray:
    """True where the code, `tc_xxxxxx` names masked and whitespace collapsed, occurs with both labels in Juliet."""
    keys = [re.sub(r"\s+", " ", TC_NAME.sub("tc_", r["code"])).strip() for r in rows]
    labels: dict[str, set] = {}
    for key, r in zip(keys, rows):
        labels.setdefault(key, set()).add(r["label"])
    return np.array([len(labels[k]) > 1 for k in keys])


def conflicted_ids(rows: list[dict]) -> tuple[dict[str, bool], dict[str, bool]]:
    """(id -> code carries both labels with `tc_xxxxxx` masked (or under cgtrain's rule), id -> under cgtrain's
    `label_conflicts` rule alone, which masks only names found in one row: the "hapax" set)."""
    from cgtrain.data.conflicts import conflict_mask

    hapax = conflict_mask([r["code"] for r in rows], [r["label"] for r in rows])
    ids = [r["id"] for r in rows]
    return dict(zip(ids, hapax | tc_conflicts(rows))), dict(zip(ids, hapax))


def seed_splits(rows: list[dict], seeds: list[int], sample: int | None, hapax_only: bool = False):
    """Per seed: (seed, train rows, test rows, y_train, y_test, clean test mask). Clean: the code carries one label
    (`conflicted_ids`; `hapax_only`: under cgtrain's `label_conflicts` rule alone)."""
    both, hapax = conflicted_ids(rows)
    conflicted = hapax if hapax_only else both
    for seed in seeds:
        train, test = split(rows, seed, sample)
        yield (seed, train, test, np.array([r["label"] for r in train]), np.array([r["label"] for r in test]),
               np.array([not conflicted[r["id"]] for r in test]))


def bench_lightgbm(seed: int, **extra):
    """The feature benches' tree model: 200 trees, 63 leaves, 30% of the columns per tree, 2 threads."""
    import lightgbm as lgb

    return lgb.LGBMClassifier(n_estimators=200, num_leaves=63, colsample_bytree=0.3, learning_rate=0.1, verbose=-1,
                              n_jobs=2, random_state=seed, **extra)


def clean_f1_auc(y: np.ndarray, p1: np.ndarray, clean: np.ndarray) -> str:
    """F1 at p >= 0.5 and ROC-AUC on the clean rows, as the feature benches print them."""
    from sklearn.metrics import f1_score, roc_auc_score

    return f"{f1_score(y[clean], p1[clean] >= 0.5):8.4f} {roc_auc_score(y[clean], p1[clean]):9.4f}"


def scores(y: np.ndarray, p1: np.ndarray, mask: np.ndarray, labels: np.ndarray | None = None,
           hapax: np.ndarray | None = None) -> dict[str, float]:
    """F1 of each contender's own decision (`labels`: cgtrain's served threshold; else p >= 0.5, the default of
    scikit-learn and FLAML), ROC-AUC of its probabilities."""
    from sklearn.metrics import f1_score, roc_auc_score

    decided = (p1 >= 0.5).astype(int) if labels is None else labels
    out = {}
    sets = [("all", np.ones(len(y), bool)), ("clean", mask)] + ([("hapax", hapax)] if hapax is not None else [])
    for name, m in sets:
        out[f"f1_{name}"] = float(f1_score(y[m], decided[m]))
        out[f"auc_{name}"] = float(roc_auc_score(y[m], p1[m]))
    return out


def run_cgtrain(train_path: Path, test_path: Path, run_dir: Path, budget: float, overrides: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cli = [sys.executable, "-m", "cgtrain"]
    start = time.time()
    proc = subprocess.run([*cli, "automl", str(train_path), "--budget", str(budget), "--metric", "f1",
                           "--run-dir", str(run_dir), *overrides], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - start
    (run_dir.parent / f"{run_dir.name}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"cgtrain automl failed ({proc.returncode}): {proc.stderr[-2000:]}")
    pred = subprocess.run([*cli, "predict", "--run", str(run_dir), str(test_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    probs, labels = {}, {}
    for line in pred.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            probs[str(row["id"])], labels[str(row["id"])] = float(row["probability"]), int(row["label"])
    best = json.loads((run_dir / "metrics.json").read_text())["best"]
    return {"wall_s": wall, "probs": probs, "labels": labels, "best": f"{best['family']} (trial {best['trial']})",
            "run_s": json.loads((run_dir / "run.json").read_text())["seconds"]}


def baseline_features(train: list[dict], test: list[dict]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(token_pattern=TOKEN_PATTERN, lowercase=False, ngram_range=(1, 3), sublinear_tf=True,
                          min_df=3, dtype=np.float32)
    return vec.fit_transform([r["code"] for r in train]), vec.transform([r["code"] for r in test])


def run_baseline(train, test, y_train) -> dict:
    from sklearn.linear_model import LogisticRegression

    start = time.time()
    X_train, X_test = baseline_features(train, test)
    model = LogisticRegression(C=10, class_weight="balanced", max_iter=2000).fit(X_train, y_train)
    return {"wall_s": time.time() - start, "p1": model.predict_proba(X_test)[:, 1], "X": (X_train, X_test)}


def run_flaml(X_train, X_test, y_train, budget: float, seed: int) -> dict:
    from flaml import AutoML

    start = time.time()
    automl = AutoML()
    automl.fit(X_train, y_train, task="classification", metric="f1", time_budget=budget, seed=seed, verbose=0,
               n_jobs=1)
    return {"wall_s": time.time() - start, "p1": automl.predict_proba(X_test)[:, 1], "best": automl.best_estimator}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=float, default=300)
    parser.add_argument("--sample", type=int, default=60000, help="training rows (whole families); 0: all")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-juliet-baselines"))
    parser.add_argument("--no-flaml", action="store_true")
    parser.add_argument("--contenders", default="cgtrain,baseline,flaml", help="which to run, comma-separated")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for cgtrain automl")
    args = parser.parse_args()
    rows = load_rows(DATA)
    conflicted, hapax_of = conflicted_ids(rows)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    table = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train, test = split(rows, seed, args.sample or None)
        y_train = np.array([r["label"] for r in train])
        y_test = np.array([r["label"] for r in test])
        clean = np.array([not conflicted[r["id"]] for r in test])
        wide = np.array([not hapax_of[r["id"]] for r in test])
        print(f"seed {seed}: {len(train)} training rows, {len(test)} held-out rows ({clean.sum()} conflict-free)",
              flush=True)
        train_path = write_jsonl_gz(work / f"train_{seed}.jsonl.gz", train)
        test_path = write_jsonl_gz(work / f"test_{seed}.jsonl.gz", test)
        run_dir, res, which = work / f"cgtrain_{seed}", {}, args.contenders.split(",")
        if "cgtrain" in which:
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            ours = run_cgtrain(train_path, test_path, run_dir, args.budget, args.overrides)
            p1 = np.array([ours["probs"][r["id"]] for r in test])
            served = np.array([ours["labels"][r["id"]] for r in test])  # what `cgtrain predict` answers
            (work / f"cgtrain_{seed}.predictions.json").write_text(json.dumps(
                {r["id"]: [float(a), int(b)] for r, a, b in zip(test, p1, served)}))  # for error analysis
            res["cgtrain"] = {**scores(y_test, p1, clean, served, wide),
                              "f1_clean_p05": scores(y_test, p1, clean)["f1_clean"],
                              "wall_s": ours["wall_s"], "best": ours["best"]}
            print(f"  cgtrain {res['cgtrain']} load {os.getloadavg()}", flush=True)
        base = run_baseline(train, test, y_train)
        if "baseline" in which:
            res["baseline"] = {**scores(y_test, base["p1"], clean, hapax=wide), "wall_s": base["wall_s"],
                               "best": "tfidf+logreg"}
            print(f"  baseline {res['baseline']} load {os.getloadavg()}", flush=True)
        if not args.no_flaml and "flaml" in which:
            fl = run_flaml(*base["X"], y_train, args.budget, seed)
            res["flaml"] = {**scores(y_test, fl["p1"], clean, hapax=wide), "wall_s": fl["wall_s"], "best": fl["best"]}
            print(f"  flaml {res['flaml']} load {os.getloadavg()}", flush=True)
        table.append((seed, res))
    print(f"\nload average: {os.getloadavg()}")
    print(f"{'seed':>4} {'contender':>9} {'F1 all':>7} {'F1 clean':>8} {'F1 hapax':>8} {'AUC all':>7} {'AUC clean':>9} "
          f"{'wall s':>7}  best")
    for seed, res in table:
        for name, r in res.items():
            print(f"{seed:>4} {name:>9} {r['f1_all']:>7.4f} {r['f1_clean']:>8.4f} {r['f1_hapax']:>8.4f} "
                  f"{r['auc_all']:>7.4f} {r['auc_clean']:>9.4f} {r['wall_s']:>7.1f}  {r['best']}")
    (work / "results.json").write_text(json.dumps([{"seed": s, **r} for s, r in table], indent=1, default=str))


if __name__ == "__main__":
    main()
