"""Fine-tuning step time: cgtrain's loop against a bare Hugging Face fine-tuning loop.

Same model (the packaged all-MiniLM-L6-v2 + a linear head over mean-pooled states,
`cgtrain.models.hf.net.EncoderClassifier`), same Juliet functions tokenized the same
way (head+tail truncation, dynamic padding), same batches in the same order, same
AdamW parameter groups (no decay on biases / norms), warm-up + cosine schedule,
gradient clipping and number of steps. Runs are interleaved (ours, theirs, ours,
theirs, ...) so a busy neighbour slows both alike; the median step time of each
(first step of a run left out: warm-up) and their ratio are printed
(target: ours / theirs <= 1.0), with the per-step losses side by side.

"Theirs" is `transformers.Trainer` where it can run (it needs the `accelerate`
package); otherwise the loop Trainer runs for one step, written out bare
(forward, loss, backward, clip, optimizer step, schedule, zero_grad), which is the
floor any trainer adds overhead to. The script says which one it measured.

    HF_HUB_OFFLINE=1 python bench/finetune_vs_hf_trainer.py [--steps 8] [--batch 16] [--max-length 128]
        [--repeats 2] [--threads 2] [--clock cpu|wall]
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cgtrain.models.hf.encoder import load_encoder
from cgtrain.models.hf.net import EncoderClassifier
from cgtrain.models.hf.tokens import CodeTokens, Truncation
from cgtrain.engine.data import plan_epoch
from cgtrain.engine.loop import Hooks, TrainConfig, train
from cgtrain.engine.schedules import lr_factor, make_optimizer, set_lr

DATA = Path(__file__).resolve().parents[1] / "../shared/datasets/juliet_c_functions.jsonl.gz"
LR, WD, WARMUP, CLIP, SEED = 5e-5, 0.01, 0.1, 1.0, 0
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def juliet_rows(n: int) -> tuple[list[str], np.ndarray]:
    codes, labels = [], []
    with gzip.open(DATA, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            codes.append(row["code"])
            labels.append(int(row["label"]))
            if len(codes) == n:
                break
    return codes, np.asarray(labels)


def fresh_net(state: dict[str, torch.Tensor]) -> EncoderClassifier:
    encoder, _ = load_encoder(None)
    net = EncoderClassifier(encoder, 2)
    net.load_state_dict(state)
    return net


def run_ours(state, data, steps: int, batch: int, clock) -> tuple[list[float], list[float]]:
    torch.manual_seed(SEED)
    net = fresh_net(state)
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=LR, weight_decay=WD, warmup_frac=WARMUP, max_grad_norm=CLIP,
                      patience=None, bucket=False, seed=SEED, device="cpu")
    stamps = [clock()]
    result = train(net, data, cfg, hooks=Hooks(after_step=lambda step, ok: stamps.append(clock())))
    return list(np.diff(stamps)), [result.history[0]["train_loss"]]


def run_bare(state, data, steps: int, batch: int, clock) -> tuple[list[float], list[float]]:
    """One Trainer step, written out: what transformers.Trainer runs per step, minus its bookkeeping."""
    torch.manual_seed(SEED)
    net = fresh_net(state).train()
    opt = make_optimizer(net, "adamw", LR, WD)  # the same parameter groups
    plan = plan_epoch(data.lengths, batch, torch.Generator().manual_seed(SEED), bucket=False)
    times, losses = [], []
    for step, idx in enumerate(plan[:steps]):
        start = clock()
        set_lr(opt, LR * lr_factor("warmup_cosine", step, steps, WARMUP))
        (ids, mask), y = data.collate(idx, torch.device("cpu"))
        loss = F.cross_entropy(net(ids, mask), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(clock() - start)
        losses.append(float(loss.detach()))
    return times, losses


def run_trainer(state, data, steps: int, batch: int, clock) -> tuple[list[float], list[float]]:
    """transformers.Trainer on the same net (a forward that returns the loss), rows and batches."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Wrapped(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask, labels):
            logits = self.net(input_ids, attention_mask)
            return {"loss": F.cross_entropy(logits, labels), "logits": logits}

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            stamps.append(clock())

        def on_step_end(self, *a, **k):
            stamps[-1] = clock() - stamps[-1]

    plan = plan_epoch(data.lengths, batch, torch.Generator().manual_seed(SEED), bucket=False)
    order = np.concatenate(plan[:steps])
    rows = [{"input_ids": data.seqs[i], "labels": int(data.y[i])} for i in order]

    def collate(items):
        sub = type(data)([it["input_ids"] for it in items], np.array([it["labels"] for it in items]), data.pad_id)
        (ids, mask), y = sub.collate(np.arange(len(items)), torch.device("cpu"))
        return {"input_ids": ids, "attention_mask": mask, "labels": y}

    torch.manual_seed(SEED)
    args = TrainingArguments(output_dir="/tmp/cgtrain-bench-trainer", per_device_train_batch_size=batch,
                             max_steps=steps, learning_rate=LR, weight_decay=WD, warmup_steps=WARMUP,  # < 1: a ratio (transformers 5)
                             lr_scheduler_type="cosine", max_grad_norm=CLIP, save_strategy="no", report_to=[],
                             logging_strategy="no", use_cpu=True, seed=SEED, dataloader_num_workers=0)
    trainer = Trainer(model=Wrapped(fresh_net(state)), args=args, train_dataset=rows, data_collator=collate,
                      callbacks=[Clock()])
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(rows)  # our batch order
    trainer.train()
    return stamps, []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    have_trainer = importlib.util.find_spec("accelerate") is not None
    theirs, name = (run_trainer, "transformers.Trainer") if have_trainer else (run_bare, "bare HF-style loop")
    if not have_trainer:
        print("transformers.Trainer needs the `accelerate` package, which is not installed here; "
              "comparing with the bare loop Trainer runs per step instead")

    encoder, tokenizer = load_encoder(None)
    torch.manual_seed(SEED)
    state = {k: v.clone() for k, v in EncoderClassifier(encoder, 2).state_dict().items()}
    codes, y = juliet_rows(args.steps * args.batch)
    data = CodeTokens(tokenizer, Truncation(args.max_length), "bench", None).data(codes, y)
    print(f"model: packaged all-MiniLM-L6-v2 + linear head; {args.steps} steps x batch {args.batch}, "
          f"max_length {args.max_length}, mean tokens/row {data.lengths.mean():.0f}; "
          f"torch threads {args.threads}; clock: {args.clock}")

    ours_t, theirs_t, losses = [], [], {}
    for r in range(args.repeats):
        t, ours_loss = run_ours(state, data, args.steps, args.batch, clock)
        ours_t += t[1:]
        t, their_loss = theirs(state, data, args.steps, args.batch, clock)
        theirs_t += t[1:]
        losses = {"cgtrain": ours_loss[0], name: float(np.mean(their_loss)) if their_loss else None}
        print(f"repeat {r + 1}: ours {statistics.median(ours_t):.3f} s/step, {name} "
              f"{statistics.median(theirs_t):.3f} s/step", flush=True)
    ours_med, theirs_med = statistics.median(ours_t), statistics.median(theirs_t)
    print(f"\nstep time (median of {len(ours_t)} steps, {args.clock} clock): cgtrain loop {ours_med:.3f} s, "
          f"{name} {theirs_med:.3f} s")
    print(f"ratio cgtrain / {name}: {ours_med / theirs_med:.3f}  (target <= 1.0)")
    print("mean training loss over the steps (same numbers expected): "
          + ", ".join(f"{k} {v:.5f}" for k, v in losses.items() if v is not None))

if __name__ == "__main__":
    main()
