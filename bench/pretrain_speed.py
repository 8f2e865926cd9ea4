"""Pre-training step time: cgtrain's ELECTRA objective against the same step written the way the Hugging Face
models are documented (ElectraForMaskedLM with `labels`, -100 where no token was masked: the generator's
vocabulary projection over every position, replacements sampled from those full logits).

    python bench/pretrain_speed.py --size base --batch 32 --seq-len 256 --steps 5 [--device cuda]

Same module, same weights, same batch of random ids; each timed step is a forward, a backward and a fused AdamW step
(median of --steps after one warm-up). Prints the ms per step of each and their ratio. cgtrain projects to the
vocabulary only at the masked positions (15%): for a small encoder with a 16k vocabulary that projection was most
of the step.

`--count-ops` also counts the PyTorch operations one cgtrain step dispatches (torch.profiler, every level) and
times a step on a 4 x 32 batch, where the arithmetic is negligible: what a step costs whatever the device. An
H200 ran 6.6-7.5 steps/s (about 140 ms a step) at batch 128, 256 and 512 alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cgtrain.engine.schedules import make_optimizer  # noqa: E402
from cgtrain.models.hf.codetok import MASK_ID  # noqa: E402
from cgtrain.pretrain.objective import build, choose_masked  # noqa: E402


def hf_documented_step(module, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """ELECTRA's loss as the transformers docs write it: `labels` on the generator, logits everywhere."""
    masked = choose_masked(ids, attention, module.mask_prob)
    labels = ids.masked_fill(~masked, -100)
    out = module.generator(input_ids=ids.masked_fill(masked, MASK_ID), attention_mask=attention, labels=labels)
    with torch.no_grad():
        u = torch.rand(out.logits.shape, device=ids.device).clamp_(1e-9, 1.0 - 1e-9)
        sampled = (out.logits.float() - torch.log(-torch.log(u))).argmax(-1)
        corrupted = torch.where(masked, sampled, ids)
    disc = module.discriminator(input_ids=corrupted, attention_mask=attention, labels=(corrupted != ids).long())
    return out.loss + module.disc_weight * disc.loss


def cgtrain_step(module, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    return F.softplus(module(ids, attention)[:, 1]).mean()  # the objective's per-sequence loss, averaged


def time_steps(fn, module, ids, attention, steps: int, device: torch.device) -> float:
    opt = make_optimizer(module, "adamw", 1e-4, 0.01)  # the loop's (fused AdamW)
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = fn(module, ids, attention)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="base")
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--count-ops", action="store_true", help="operations per step and a tiny batch's step time")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    module = build("electra", args.size, args.vocab, 512, 1000).to(device).train()
    ids = torch.randint(5, args.vocab, (args.batch, args.seq_len), device=device)
    ids[:, 0], ids[:, -1] = 2, 3
    attention = torch.ones_like(ids)
    tokens = args.batch * args.seq_len
    hf = time_steps(hf_documented_step, module, ids, attention, args.steps, device)
    ours = time_steps(cgtrain_step, module, ids, attention, args.steps, device)
    print(f"ELECTRA {args.size}, vocab {args.vocab}, batch {args.batch} x {args.seq_len}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.steps} steps")
    print(f"  HF-documented step (logits everywhere): {hf:9.1f} ms  {tokens / hf * 1000:10,.0f} tokens/s")
    print(f"  cgtrain objective (masked positions)  : {ours:9.1f} ms  {tokens / ours * 1000:10,.0f} tokens/s")
    print(f"  ratio (HF-documented / cgtrain): {hf / ours:.2f}x")
    if args.count_ops:
        count_ops(module, device, args.steps)
    return 0


def count_ops(module, device: torch.device, steps: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    ids = torch.randint(5, module.generator.config.vocab_size, (4, 32), device=device)
    ids[:, 0], ids[:, -1] = 2, 3
    attention = torch.ones_like(ids)
    time_steps(cgtrain_step, module, ids, attention, 1, device)  # warm
    opt = make_optimizer(module, "adamw", 1e-4, 0.01)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        cgtrain_step(module, ids, attention).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
    ms = time_steps(cgtrain_step, module, ids, attention, steps, device)
    print(f"  one step dispatches {ops:,} PyTorch operations; a 4 x 32 batch's step takes {ms:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
