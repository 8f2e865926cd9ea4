"""A `cgtrain pretrain` encoder against the packaged MiniLM as the base of hf_embed and hf_finetune, side by side.

    python bench/encoder_vs_minilm.py --encoder runs/encoders/gpu3 --datasets juliet,synth \
        --families hf_embed,hf_finetune --max-train 2000 --max-test 1500 --out bench_encoders.json

Both encoders get the same training rows, the same test rows and the same settings, except the fine-tuning
learning rate (--lr-encoder, --lr-minilm: a model pre-trained for a few minutes wants a larger step than one
pre-trained for days). Printed per dataset, family and encoder: F1 at p >= 0.5, ROC-AUC, fit seconds.

- juliet: `../shared/datasets/juliet_c_functions.jsonl.gz`, the family split of bench/juliet_vs_baselines.py with
  --split-seed (20% of families held out). Training rows: whole training families, seeded, up to --max-train.
  Test rows: a seeded sample of --max-test held-out rows whose code carries one label. An encoder pre-trained on
  Juliet must have seen the training families of that very split only (bench/pretrain_gpu.sh's extra source).
- synth: the default synthetic bug set (data/pybugs.jsonl, `make demo` makes it), split as `cgtrain train`
  splits it for examples/python-bugs.yaml (held-out modules; bench/bug_models.py), training and test rows taken
  as whole clean/mutant pairs. An encoder must not have pre-trained on the standard library it comes from.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


def juliet_rows(args) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    from juliet_vs_baselines import DATA, load_rows, seed_splits

    _, train, test, _, _, clean = next(seed_splits(load_rows(DATA), [args.split_seed], args.max_train))
    test = [r for r, keep in zip(test, clean) if keep]
    rng = np.random.default_rng(args.seed)
    if len(test) > args.max_test:
        test = [test[i] for i in sorted(rng.choice(len(test), size=args.max_test, replace=False))]
    codes = [r["code"] for r in train + test]
    y = np.array([r["label"] for r in train + test])
    return codes, y, np.arange(len(train)), np.arange(len(train), len(train) + len(test))


def synth_rows(args) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    from bug_models import sample_pairs
    from cgtrain.core.prepared import prepare, raw_codes
    from cgtrain.request import load_request

    req = load_request(ROOT / "examples" / "python-bugs.yaml", [f"dataset.path={args.synth_data}",
                                                                 f"seed={args.seed}"])
    with tempfile.TemporaryDirectory() as work:
        p = prepare(req, Path(work), say=lambda m: None)
    ids = p.dataset.frame["id"].to_numpy()
    train = sample_pairs(ids, p.split.train, args.max_train, args.seed)
    test = sample_pairs(ids, p.split.test, args.max_test, args.seed)
    return raw_codes(p), np.asarray(p.y), train, test


def params_for(family: str, encoder: str | None, args) -> dict:
    params: dict = {"max_length": args.max_length, "truncation": "head_tail"}
    if encoder:
        params["model_path"] = encoder
    if family == "hf_finetune":
        params.update(epochs=args.epochs, batch_size=16, lr=args.lr_encoder if encoder else args.lr_minilm,
                      warmup_frac=0.1, patience=None)
    return params


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", required=True, help="a `cgtrain pretrain` output directory")
    ap.add_argument("--datasets", default="juliet,synth")
    ap.add_argument("--families", default="hf_embed,hf_finetune")
    ap.add_argument("--synth-data", default=str(ROOT / "data" / "pybugs.jsonl"))
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--max-test", type=int, default=1500)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr-encoder", type=float, default=2e-4)
    ap.add_argument("--lr-minilm", type=float, default=5e-5)
    ap.add_argument("--split-seed", type=int, default=0, help="the Juliet family split (bench/juliet_vs_baselines)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from cgtrain.core.fit import fit_family
    from cgtrain.request import load_request

    req = load_request(ROOT / "examples" / "juliet-transfer.yaml", [f"seed={args.seed}"])
    results = []
    for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        codes, y, train, test = (juliet_rows if dataset == "juliet" else synth_rows)(args)
        print(f"{dataset}: {len(train)} training rows ({y[train].mean():.2f} flawed), {len(test)} test rows "
              f"({y[test].mean():.2f} flawed)", flush=True)
        X_tr, X_te = [codes[i] for i in train], [codes[i] for i in test]
        for family in [f.strip() for f in args.families.split(",") if f.strip()]:
            for name, encoder in (("minilm", None), ("pretrained", args.encoder)):
                params = params_for(family, encoder, args)
                t0 = time.perf_counter()
                model = fit_family(req, family, params, X_tr, y[train])
                fit_s = time.perf_counter() - t0
                p = np.asarray(model.predict_proba(X_te))[:, 1]
                row = {"dataset": dataset, "family": family, "encoder": name, "f1": float(f1_score(y[test], p >= 0.5)),
                       "roc_auc": float(roc_auc_score(y[test], p)), "fit_s": round(fit_s, 1),
                       "train_rows": int(len(train)), "test_rows": int(len(test)),
                       "params": {k: v for k, v in params.items() if k != "model_path"}}
                results.append(row)
                print(f"  {family:12s} {name:10s} F1 {row['f1']:.4f}  ROC-AUC {row['roc_auc']:.4f}  "
                      f"fit {fit_s:7.1f} s", flush=True)
    print(f"\n{'dataset':8s} {'family':12s} {'MiniLM F1 / AUC':>18s} {'pre-trained F1 / AUC':>22s}")
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        for family in dict.fromkeys(r["family"] for r in results):
            got = {r["encoder"]: r for r in results if r["dataset"] == dataset and r["family"] == family}
            if len(got) == 2:
                m, e = got["minilm"], got["pretrained"]
                print(f"{dataset:8s} {family:12s} {m['f1']:8.4f} / {m['roc_auc']:.4f} "
                      f"{e['f1']:12.4f} / {e['roc_auc']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"encoder": args.encoder, "args": vars(args), "results": results},
                                             indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
