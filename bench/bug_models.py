"""Bug-detection families side by side on the synthetic set: same held-out modules for all.

    python bench/bug_models.py --data data/pybugs.jsonl --encoder runs/encoder \
        --families logreg,lightgbm,bug_spotter,textcnn,bug_locator,hf_finetune --max-train 2000 --out bench_bug_models.json

The split is exactly `cgtrain train`'s for the request (default examples/python-bugs.yaml: grouped by
module, 20% of modules held out), made by the pipeline's own `prepare`. Every family is fit once with
its default parameters (no search) on the training rows; the slow ones (torch, encoders) on a seeded
sample of at most --max-train training rows, taken as whole clean/mutant pairs (bug_spotter, a linear
token model, is fast and takes all of them). Printed per family:
test ROC-AUC and accuracy overall, per bug kind (that kind's mutants against all clean test rows:
ROC-AUC; share of its mutants flagged: accuracy), and the pair ranking rate (how often the mutant
scores above its own clean function — the measure used on real bug fixes), with fit seconds.
`--encoder DIR` (a `cgtrain pretrain` directory) is the `model_path` of hf_finetune, hf_embed and
bug_locator; without it they use their defaults (MiniLM; a from-scratch transformer for bug_locator).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
SLOW_INPUTS = ("tokens", "code")
FAST_CODE = ("bug_spotter",)  # code-input families that need neither sampling nor an epoch count


def pair_of(row_id: str) -> str:
    return row_id[:-len(":clean")] if row_id.endswith(":clean") else row_id.rsplit(":", 2)[0]


def metrics(y: np.ndarray, p: np.ndarray, kinds: np.ndarray, ids: np.ndarray) -> dict:
    out = {"roc_auc": float(roc_auc_score(y, p)), "accuracy": float(accuracy_score(y, p >= 0.5)), "per_kind": {}}
    clean = kinds == "none"
    for kind in sorted(set(kinds) - {"none"}):
        k = kinds == kind
        sel = clean | k
        out["per_kind"][kind] = {"n": int(k.sum()), "roc_auc": float(roc_auc_score(y[sel], p[sel])),
                                 "accuracy": float((p[k] >= 0.5).mean())}
    by_pair: dict[str, dict[int, float]] = {}
    for rid, label, score in zip(ids, y, p):
        by_pair.setdefault(pair_of(rid), {})[int(label)] = float(score)
    pairs = [v for v in by_pair.values() if len(v) == 2]
    out["pair_rank"] = float(np.mean([v[1] > v[0] for v in pairs])) if pairs else None
    out["pairs"] = len(pairs)
    return out


def sample_pairs(ids: np.ndarray, rows: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    if not max_rows or len(rows) <= max_rows:
        return rows
    pairs = np.array(sorted({pair_of(ids[i]) for i in rows}))
    keep = set(np.random.default_rng(seed).choice(pairs, size=max(1, max_rows // 2), replace=False).tolist())
    return np.array([i for i in rows if pair_of(ids[i]) in keep])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/pybugs.jsonl")
    ap.add_argument("--request", default=str(ROOT / "examples" / "python-bugs.yaml"))
    ap.add_argument("--families", default="logreg,lightgbm,bug_spotter,textcnn,bug_locator,hf_finetune")
    ap.add_argument("--encoder", default=None, help="model_path for hf_finetune / hf_embed / bug_locator")
    ap.add_argument("--max-train", type=int, default=2000, help="training rows for torch / encoder families")
    ap.add_argument("--max-test", type=int, default=None, help="test rows (whole pairs) for every family")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from cgtrain.models import FAMILIES
    from cgtrain.core.fit import fit_family, make_featurizer
    from cgtrain.core.prepared import prepare, raw_codes
    from cgtrain.request import load_request

    req = load_request(Path(args.request), [f"dataset.path={args.data}", f"seed={args.seed}"])
    with tempfile.TemporaryDirectory() as work:
        p = prepare(req, Path(work), say=lambda m: print(m, file=sys.stderr))
    codes, docs, y = raw_codes(p), p.docs, p.y
    ids = p.dataset.frame["id"].to_numpy()
    kinds = p.dataset.frame["bug_kind"].to_numpy() if "bug_kind" in p.dataset.frame else np.array(["?"] * len(y))
    test = sample_pairs(ids, p.split.test, args.max_test, args.seed)
    test_digest = hashlib.sha256("\n".join(sorted(ids[test])).encode()).hexdigest()[:12]
    print(f"split: {len(p.split.train)} training rows, {len(test)} test rows "
          f"({p.dataset.frame['group'].iloc[test].nunique()} held-out modules, ids {test_digest})", file=sys.stderr)
    results = {}
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        fam = FAMILIES.get(family)
        slow = fam.input in SLOW_INPUTS and family not in FAST_CODE
        train = sample_pairs(ids, p.split.train, args.max_train if slow else None, args.seed)
        params = {}
        if slow and "epochs" in fam.param_names():  # hf_embed fits a linear head: no epochs
            params["epochs"] = args.epochs
        if family in ("hf_finetune", "hf_embed", "bug_locator"):
            params["max_length"] = args.max_length
            if args.encoder:
                params["model_path"] = args.encoder
        if family == "hf_finetune":
            params.update(lr=2e-4 if args.encoder else 5e-5, batch_size=16)
        if family == "bug_locator":
            params.update(lr=2e-4 if args.encoder else 5e-4, batch_size=16)
        t0 = time.perf_counter()
        if fam.input == "features":
            featurizer = make_featurizer(req)
            X_tr = featurizer.fit_transform([docs[i] for i in train], y[train])
            X_te = featurizer.transform([docs[i] for i in test])
        elif fam.input == "code":
            X_tr, X_te = [codes[i] for i in train], [codes[i] for i in test]
        else:
            X_tr, X_te = [docs[i] for i in train], [docs[i] for i in test]
        model = fit_family(req, family, params, X_tr, y[train])
        fit_s = time.perf_counter() - t0
        proba = np.asarray(model.predict_proba(X_te))[:, 1]
        res = metrics(y[test], proba, kinds[test], ids[test])
        res.update(family=family, train_rows=int(len(train)), fit_seconds=round(fit_s, 1), params=params,
                   predict_seconds=round(time.perf_counter() - t0 - fit_s, 1))
        results[family] = res
        print(f"{family:12s} rows {len(train):6d}  ROC-AUC {res['roc_auc']:.3f}  acc {res['accuracy']:.3f}  "
              f"pairs ranked {res['pair_rank']:.3f}  fit {fit_s:7.1f} s", flush=True)
    kinds_all = sorted({k for r in results.values() for k in r["per_kind"]})
    print("\nper bug kind: ROC-AUC (mutants of the kind vs all clean rows) / share of the kind's mutants flagged")
    print(f"{'kind':22s}" + "".join(f"{f:>20s}" for f in results))
    for kind in kinds_all:
        print(f"{kind:22s}" + "".join(f"{r['per_kind'][kind]['roc_auc']:>12.3f} / {r['per_kind'][kind]['accuracy']:.2f}"
                                      if kind in r["per_kind"] else f"{'-':>20s}" for r in results.values()))
    if args.out:
        Path(args.out).write_text(json.dumps({"data": args.data, "request": args.request, "seed": args.seed,
                                              "test_rows": int(len(test)), "test_ids_sha256_12": test_digest,
                                              "results": results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
