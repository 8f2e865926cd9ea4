"""Overhead of cgtrain's training loop against a minimal hand-written PyTorch loop.

Same model (TextCNN), data, seed, optimizer (AdamW), gradient clipping and batch
order; cgtrain's loop runs with its defaults for everything else that costs time
per step (non-finite checks, schedule, accumulation bookkeeping, memory cap check,
in-memory rollback snapshot at each epoch end). Prints both times, the median ratio
over interleaved pairs (target <= 1.05 on CPU) and the per-epoch losses side by
side, which must agree to 5 decimals (exit status 1 if they do not).

    python bench/loop_overhead.py [--epochs 3] [--repeats 9] [--threads 1] [--dim 32] [--max-len 120] [--clock cpu|wall]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from cgtrain.models.neural import KERNEL_SIZES, TextCNN
from cgtrain.engine.data import SequenceData
from cgtrain.engine.loop import TrainConfig, train

VOCAB, N, BATCH, LR, WD, CLIP, SEED = 2000, 1024, 32, 1e-3, 0.01, 1.0, 0
# CPU seconds of this process by default: with one torch thread they count our work only, so a busy
# neighbour on a shared machine distorts them far less than wall-clock seconds (--clock wall).
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
CLOCK = CLOCKS["cpu"]


def make_data(max_len: int, seed: int = 0) -> SequenceData:
    rng = np.random.default_rng(seed)
    seqs, y = [], []
    for i in range(N):
        ids = rng.integers(2, VOCAB, size=int(rng.integers(max_len // 10, max_len)))
        if i % 2:
            ids[rng.integers(0, len(ids))] = 2  # the "bug" token
        seqs.append(torch.from_numpy(ids.astype(np.int64)))
        y.append(i % 2)
    return SequenceData(seqs, np.array(y), min_len=max(KERNEL_SIZES))


def new_model(dim: int) -> torch.nn.Module:
    torch.manual_seed(SEED)
    return TextCNN(VOCAB, 2, embed_dim=dim, width=dim, dropout=0.1)


def cgtrain_loop(data: SequenceData, epochs: int, dim: int) -> tuple[float, list[float], torch.nn.Module]:
    model = new_model(dim)
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, weight_decay=WD, max_grad_norm=CLIP,
                      schedule="constant", patience=None, bucket=False, seed=SEED, device="cpu")
    start = CLOCK()
    result = train(model, data, cfg)
    return CLOCK() - start, [h["train_loss"] for h in result.history], model


def hand_loop(data: SequenceData, epochs: int, dim: int) -> tuple[float, list[float], torch.nn.Module]:
    model = new_model(dim)
    start = CLOCK()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    epoch_losses = []
    for _ in range(epochs):
        perm = torch.randperm(N, generator=gen).numpy()
        total = 0.0
        for i in range(0, N, BATCH):
            idx = perm[i:i + BATCH]
            ids = pad_sequence([data.seqs[j] for j in idx], batch_first=True)
            loss = F.cross_entropy(model(ids), data.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            total += loss.item()
        epoch_losses.append(total / -(-N // BATCH))
    return CLOCK() - start, epoch_losses, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dim", type=int, default=32, help="embedding dim and filters per kernel size")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: process CPU seconds (robust to other load); wall: elapsed seconds")
    parser.add_argument("--max-len", type=int, default=120, help="sequences have max_len/10 .. max_len tokens")
    args = parser.parse_args()
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    data = make_data(args.max_len)
    hand_loop(data, 1, args.dim)  # warm-up: lazy imports, allocator
    ours, theirs = [], []
    for r in range(args.repeats):  # interleaved pairs, order alternating, so load drift hits both alike
        if r % 2:
            t_hand, loss_hand, model_hand = hand_loop(data, args.epochs, args.dim)
            t_ours, loss_ours, model_ours = cgtrain_loop(data, args.epochs, args.dim)
        else:
            t_ours, loss_ours, model_ours = cgtrain_loop(data, args.epochs, args.dim)
            t_hand, loss_hand, model_hand = hand_loop(data, args.epochs, args.dim)
        ours.append(t_ours)
        theirs.append(t_hand)
    # The median of per-pair ratios resists a busy neighbour better than best-of or a single pair.
    pair_ratios = sorted(a / b for a, b in zip(ours, theirs))
    ratio = statistics.median(pair_ratios)
    steps = args.epochs * -(-N // BATCH)
    print(f"TextCNN dim {args.dim}, {N} sequences ({args.max_len // 10}-{args.max_len} tokens), batch {BATCH}, {args.epochs} epochs = {steps} steps, "
          f"{args.threads} thread(s), {args.repeats} interleaved pairs, {args.clock} clock")
    print(f"  hand-written loop : {min(theirs):7.3f} s  (all: {[round(t, 3) for t in theirs]})")
    print(f"  cgtrain loop      : {min(ours):7.3f} s  (all: {[round(t, 3) for t in ours]})")
    print(f"  time ratio        : {ratio:.3f}  median of {len(pair_ratios)} paired runs "
          f"(target <= 1.05: {'met' if ratio <= 1.05 else 'MISSED'}); best-of ratio {min(ours) / min(theirs):.3f}, "
          f"pair ratios {[round(r, 3) for r in pair_ratios]}")
    print("  epoch   hand loss    cgtrain loss")
    for e, (a, b) in enumerate(zip(loss_hand, loss_ours)):
        print(f"  {e:5d}   {a:.7f}    {b:.7f}")
    same = all(round(a, 5) == round(b, 5) for a, b in zip(loss_hand, loss_ours))
    drift = max(float((a - b).abs().max()) for a, b in zip(model_hand.state_dict().values(),
                                                          model_ours.state_dict().values()))
    print(f"  losses equal to 5 decimals: {same}; max |weight difference|: {drift:.2e}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
