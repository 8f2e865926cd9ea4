"""Benchmark (not a test): do name-flow terms (`features.name_flow`) help on unseen Juliet families?

Same split and conflict-free rows as bench/juliet_vs_baselines.py (20% of the families held out per seed, a
60k-row sample of whole training families; rows whose code, `tc_xxxxxx` names masked, carries one label). For each
seed, cgtrain's own featurizer (`CodeFeaturizer`: TF-IDF 1-3-grams, sublinear tf, min_df 3, on token docs with
names whole, string words and the numbered copy) is fitted on the training rows without and with the name-flow
block; the practitioner's LogisticRegression(C=10, balanced) and a LightGBM (200 trees, 63 leaves, 30% of the
columns per tree, on the chi² top 8k columns as `cgtrain automl` gives a tree family) are fitted on each, and F1
and ROC-AUC are printed on the conflict-free held-out rows with the featurising and fitting seconds.

    python bench/name_flow.py --seeds 0,1,2
    python bench/name_flow.py --seeds 2 --no-lightgbm      # the linear model only (~2 min per seed)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.linear_model import LogisticRegression

    from cgtrain.features.featurizer import CodeFeaturizer
    from cgtrain.features.tokenizer import token_docs
    from juliet_vs_baselines import DATA, bench_lightgbm, clean_f1_auc, load_rows, seed_splits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sample", type=int, default=60000)
    parser.add_argument("--no-lightgbm", action="store_true")
    args = parser.parse_args()
    rows = load_rows(DATA)
    print(f"{'seed':>4} {'model':>9} {'name flow':>9} {'columns':>8} {'F1 clean':>8} {'AUC clean':>9} {'seconds':>7}")
    for seed, train, test, y, y_test, clean in seed_splits(rows, [int(s) for s in args.seeds.split(",")], args.sample):
        docs = token_docs([r["code"] for r in train + test], "c", False, True, True)
        probs = {}
        for flow in (False, True):
            started = time.perf_counter()
            feat = CodeFeaturizer(kind="tfidf", ngram_max=3, min_df=3, max_features=None, metrics=False,
                                  name_flow=flow)
            X = feat.fit_transform(docs[:len(train)])
            X_test = feat.transform(docs[len(train):])
            feat_s = time.perf_counter() - started
            models = [("logreg", LogisticRegression(C=10, class_weight="balanced", max_iter=3000), None)]
            if not args.no_lightgbm:
                models.append(("lightgbm", bench_lightgbm(seed, max_bin=15), 8000))
            for name, model, k in models:
                started = time.perf_counter()
                A, B = X, X_test
                if k:
                    sel = SelectKBest(chi2, k=min(k, X.shape[1])).fit(X, y)
                    A, B = sel.transform(X), sel.transform(X_test)
                p = model.fit(A, y).predict_proba(B)[:, 1]
                seconds = feat_s + time.perf_counter() - started
                probs[name, flow] = p
                print(f"{seed:>4} {name:>9} {'on' if flow else 'off':>9} {X.shape[1]:>8} "
                      f"{clean_f1_auc(y_test, p, clean)} {seconds:7.1f}", flush=True)
        for tree_flow in (False, True) if not args.no_lightgbm else ():  # the two blended as AutoML's voting does
            for lin_flow in (False, True):
                p = (probs["logreg", lin_flow] + probs["lightgbm", tree_flow]) / 2
                print(f"{seed:>4} {'blend':>9} {f'{lin_flow:d}/{tree_flow:d}':>9} {'':>8} "
                      f"{clean_f1_auc(y_test, p, clean)} {'':>7}  (name flow for logreg/lightgbm)", flush=True)


if __name__ == "__main__":
    main()
