"""Benchmark (not a test): do numbered names (`features.ordinal_names`) help on unseen Juliet families?

Same split as bench/juliet_vs_baselines.py (20% of the families held out per seed, a 60k-row sample of whole
training families). For each seed, the practitioner's TF-IDF 1-3-grams + LogisticRegression(C=10, balanced) and
a LightGBM (200 trees, 63 leaves, 30% of the columns per tree) are fitted on cgtrain's token docs with names as
they are, then with the numbered copy appended (`<names> ... <v0> = <v1> ;`); F1 and ROC-AUC are printed on the
held-out rows free of label conflicts under cgtrain's `label_conflicts` rule, with the featurising and fitting
seconds.

    python bench/ordinal_names.py --seeds 0,1
    python bench/ordinal_names.py --seeds 0 --no-lightgbm      # the linear model only (~1 min per seed)
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
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from cgtrain.features.tokenizer import token_docs
    from juliet_vs_baselines import DATA, bench_lightgbm, clean_f1_auc, load_rows, seed_splits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--sample", type=int, default=60000)
    parser.add_argument("--no-lightgbm", action="store_true")
    args = parser.parse_args()
    rows = load_rows(DATA)
    print(f"{'seed':>4} {'model':>9} {'names':>9} {'F1 clean':>8} {'AUC clean':>9} {'seconds':>7}")
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed, train, test, y, y_test, clean in seed_splits(rows, seeds, args.sample, hapax_only=True):
        for ordinal in (False, True):
            started = time.perf_counter()
            docs = token_docs([r["code"] for r in train + test], "c", False, True, ordinal)
            vec = TfidfVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False, ngram_range=(1, 3),
                                  sublinear_tf=True, min_df=3, dtype=np.float32)
            X = vec.fit_transform(docs[:len(train)])
            X_test = vec.transform(docs[len(train):])
            feat_s = time.perf_counter() - started
            models = [("logreg", LogisticRegression(C=10, class_weight="balanced", max_iter=3000))]
            if not args.no_lightgbm:
                models.append(("lightgbm", bench_lightgbm(seed)))
            for name, model in models:
                started = time.perf_counter()
                p = model.fit(X, y).predict_proba(X_test)[:, 1]
                seconds = feat_s + time.perf_counter() - started
                print(f"{seed:>4} {name:>9} {'numbered' if ordinal else 'as is':>9} "
                      f"{clean_f1_auc(y_test, p, clean)} {seconds:7.1f}", flush=True)

if __name__ == "__main__":
    main()
