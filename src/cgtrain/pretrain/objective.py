"""Self-supervised objectives as modules cgtrain's training loop can train.

* `electra` (Clark et al., 2020): a small generator fills masked positions
  (masked-token prediction); a discriminator tells, for every token, whether
  it is the original or a generator's replacement (replaced-token
  detection). Generator and discriminator share the token embeddings. The
  discriminator is the encoder kept: it learns from every token, not only the
  15% masked, and "this token does not belong here" is close to "this line
  has a bug".
* `mlm` (BERT): masked-token prediction only (80% [MASK], 10% random, 10% kept).

Both project to the vocabulary only at the masked positions, not at every position as the
models' `labels` call does: the same loss, 2.7x faster steps for `small` on 2 CPU cores
(bench/pretrain_speed.py).

How the loop trains them: each module computes its own per-sequence loss and
returns it as logits whose cross-entropy is that loss (`models.hf.lossfn`), so
accumulation, clipping, AMP, fallbacks, OOM halving and checkpoints that resume
bit for bit all come from the one loop. Masks and replacements are drawn from torch's RNG,
which the loop checkpoints.

The per-step loss curve and the token count are buffers of the module, so they
are checkpointed with the weights and a resumed run has the same curve.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cgtrain.models.hf.codetok import CLS_ID, MASK_ID, PAD_ID, SEP_ID
from cgtrain.models.hf.lossfn import loss_as_logits

OBJECTIVES = ("electra", "mlm")
SIZES = {  # discriminator (the encoder kept); the ELECTRA generator is 1/4 as wide, same depth
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512, embedding_size=128),
    "small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024,
                  embedding_size=128),
    "base": dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=6, intermediate_size=1536,
                 embedding_size=128),
}


def per_sequence_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of values[b, t] over the positions where keep[b, t]; 0 for a row with none."""
    keep = keep.to(values.dtype)
    return (values * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def _at(where: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A [batch, length] tensor holding `values` at the True positions of `where` (row-major order), 0 elsewhere."""
    return torch.zeros(where.shape, dtype=values.dtype, device=values.device).masked_scatter(where, values)


def choose_masked(ids: torch.Tensor, attention: torch.Tensor, prob: float) -> torch.Tensor:
    """Positions to mask: each real, non-special token with probability `prob`, at least one per row."""
    candidates = attention.bool() & (ids != CLS_ID) & (ids != SEP_ID) & (ids != PAD_ID)
    noise = torch.rand(ids.shape, device=ids.device)
    picked = (noise < prob) & candidates
    # at least one per row: the candidate with the smallest noise
    first = torch.where(candidates, noise, torch.full_like(noise, 2.0)).argmin(dim=1)
    forced = torch.zeros_like(picked).scatter_(1, first[:, None], True) & candidates
    return picked | forced


class Pretrainer(nn.Module):
    """Common state: the loss curve (one value per step) and the token count, as buffers."""

    def __init__(self, total_steps: int):
        super().__init__()
        self.register_buffer("loss_curve", torch.full((max(1, total_steps),), float("nan"), dtype=torch.float64))
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.float64))
        self._acc = [0.0, 0]  # this step's per-sequence loss sum and count (not state: reset every step)

    def _record(self, per_seq: torch.Tensor, attention: torch.Tensor) -> None:
        self._acc[0] += float(per_seq.detach().float().sum())
        self._acc[1] += int(per_seq.shape[0])
        self.tokens_seen += float(attention.sum())

    def end_step(self, step: int) -> float:
        """Write the finished step's mean loss into the curve; returns it."""
        value = self._acc[0] / self._acc[1] if self._acc[1] else float("nan")
        self._acc = [0.0, 0]
        if 0 <= step < self.loss_curve.numel():
            self.loss_curve[step] = value
        return value

    def encoder_to_save(self) -> nn.Module:
        raise NotImplementedError

    def bare_encoder(self) -> nn.Module:
        """The encoder without any pre-training head (what AutoModel.from_pretrained builds)."""
        model = self.encoder_to_save()
        return getattr(model, model.base_model_prefix)

    def token_head(self) -> nn.Module | None:
        return None


class ElectraPretrainer(Pretrainer):
    def __init__(self, generator: nn.Module, discriminator: nn.Module, total_steps: int, mask_prob: float = 0.15,
                 disc_weight: float = 50.0):
        super().__init__(total_steps)
        self.generator, self.discriminator = generator, discriminator
        self.generator.electra.embeddings = self.discriminator.electra.embeddings  # shared, as in ELECTRA
        self.generator.tie_weights()
        self.mask_prob, self.disc_weight = mask_prob, disc_weight

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        masked = choose_masked(ids, attention, self.mask_prob)
        gen = self.generator
        hidden = gen.electra(input_ids=ids.masked_fill(masked, MASK_ID), attention_mask=attention).last_hidden_state
        # The vocabulary projection only where a token was masked (15%): over every position it was most of a
        # small model's step (a [batch, length, vocab] tensor, sampled in fp32).
        gen_logits = gen.generator_lm_head(gen.generator_predictions(hidden[masked])).float()
        mlm = per_sequence_mean(_at(masked, F.cross_entropy(gen_logits, ids[masked], reduction="none")), masked)
        with torch.no_grad():  # sample replacements (Gumbel-max on the generator's distribution)
            u = torch.rand(gen_logits.shape, device=ids.device).clamp_(1e-9, 1.0 - 1e-9)
            corrupted = ids.masked_scatter(masked, (gen_logits - torch.log(-torch.log(u))).argmax(-1))
            replaced = (corrupted != ids).float()
        disc_logits = self.discriminator(input_ids=corrupted, attention_mask=attention).logits
        rtd = per_sequence_mean(F.binary_cross_entropy_with_logits(disc_logits.float(), replaced, reduction="none"),
                                attention.bool())
        per_seq = mlm + self.disc_weight * rtd
        self._record(per_seq, attention)
        return loss_as_logits(per_seq)

    def encoder_to_save(self) -> nn.Module:
        return self.discriminator

    def token_head(self) -> nn.Module | None:
        return self.discriminator.discriminator_predictions


class MlmPretrainer(Pretrainer):
    def __init__(self, model: nn.Module, total_steps: int, vocab_size: int, mask_prob: float = 0.15):
        super().__init__(total_steps)
        self.model, self.vocab_size, self.mask_prob = model, vocab_size, mask_prob

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        masked = choose_masked(ids, attention, self.mask_prob)
        r = torch.rand(ids.shape, device=ids.device)
        random_ids = torch.randint(SEP_ID + 2, self.vocab_size, ids.shape, device=ids.device)
        inputs = torch.where(masked & (r < 0.8), torch.full_like(ids, MASK_ID), ids)
        inputs = torch.where(masked & (r >= 0.8) & (r < 0.9), random_ids, inputs)
        model = self.model
        hidden = model.bert(input_ids=inputs, attention_mask=attention).last_hidden_state
        logits = model.cls(hidden[masked]).float()  # the vocabulary projection at the masked positions only
        per_seq = per_sequence_mean(_at(masked, F.cross_entropy(logits, ids[masked], reduction="none")), masked)
        self._record(per_seq, attention)
        return loss_as_logits(per_seq)

    def encoder_to_save(self) -> nn.Module:
        return self.model


def build(objective: str, size: str, vocab_size: int, max_positions: int, total_steps: int) -> Pretrainer:
    """A freshly initialised pre-training module (call under a seeded torch RNG)."""
    from transformers import BertConfig, BertForMaskedLM, ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    dims = dict(SIZES[size])
    common = dict(vocab_size=vocab_size, max_position_embeddings=max_positions, pad_token_id=PAD_ID,
                  type_vocab_size=1)
    if objective == "mlm":
        dims.pop("embedding_size")
        return MlmPretrainer(BertForMaskedLM(BertConfig(**common, **dims)), total_steps, vocab_size)
    disc = ElectraForPreTraining(ElectraConfig(**common, **dims))
    heads = max(1, dims["num_attention_heads"] // 4)
    gen_dims = dict(dims, hidden_size=max(64, dims["hidden_size"] // 4), num_attention_heads=heads,
                    intermediate_size=max(256, dims["intermediate_size"] // 4))
    gen = ElectraForMaskedLM(ElectraConfig(**common, **gen_dims))
    return ElectraPretrainer(gen, disc, total_steps)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def steps_for(n_sequences: int, batch_size: int, epochs: int) -> int:
    return epochs * math.ceil(n_sequences / batch_size)
