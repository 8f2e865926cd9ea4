"""Family `bug_locator`: "is there a bug, and where" — a token pointer trained with the label (BugLab/GREAT).

A transformer encoder (a local pre-trained one, e.g. the directory `cgtrain pretrain` writes, via
`model_path`; or, without it, a small one trained from scratch with a code tokenizer fitted on the
training rows) reads the raw code. Two heads sit on its token states:

* the function head (mean-pooled states -> flawed or not), the score `predict_proba` returns;
* the pointer head: a distribution over the row's tokens plus a "no bug" slot (the [CLS] position).
  A clean row points at the slot; a flawed row at its bug tokens when their place is known, else
  anywhere but the slot.

Where the bug is comes from the training rows themselves: a flawed row whose clean twin is also in
the training rows (the same function, one line different, as `synth-bugs` writes them, or a buggy
hunk and its fix) gets the differing tokens as its target (`synth_bugs.bug_location`). Such a pair
also gets a ranking loss, softplus(score(clean) - score(flawed)), so the flawed one scores higher.
Pairs stay in one batch: the loop's examples are units (a pair, or a single row).

It trains on cgtrain's loop like every torch family; the unit's loss enters the loop as two-class
logits whose cross-entropy is the loss (`cgtrain.models.hf.lossfn`).
`token_scores(codes)` gives each token's pointer probability: the explanation of a prediction.
Fitted state is plain data (encoder config JSON, tokenizer files and weights as numpy arrays).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from cgtrain.features.codetext import bug_location, find_twins
from cgtrain.evaluate.metrics import METRICS, score
from cgtrain.models.hf import encoder as enc
from cgtrain.models.hf.codetok import train_code_tokenizer
from cgtrain.models.hf.common import EncoderBacked
from cgtrain.models.hf.lossfn import loss_as_logits
from cgtrain.models.hf.net import pool
from cgtrain.models.hf.tokens import codes_of
from cgtrain.engine.checkpoint import DirStore
from cgtrain.engine.device import resolve_device
from cgtrain.engine.loop import TrainConfig, train

_TRAIN_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_frac", "patience", "device")
SCRATCH = dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512)


# --- twins and targets -------------------------------------------------------------------------


class Rows:
    """Token ids (head-truncated), offsets and bug-token masks of code rows."""

    def __init__(self, tokenizer, codes: Sequence[str], max_length: int, spans: dict[int, tuple[int, int]] | None = None):
        enc_ = tokenizer(list(codes), add_special_tokens=True, truncation=True, max_length=max_length,
                         return_offsets_mapping=True, verbose=False)
        self.ids = [torch.tensor(r, dtype=torch.long) for r in enc_["input_ids"]]
        self.bug = []  # per row: bool mask of its bug tokens, or None (unknown / clean)
        for i, offsets in enumerate(enc_["offset_mapping"]):
            span = (spans or {}).get(i)
            mask = None
            if span is not None:
                m = torch.tensor([e > span[0] and s < span[1] and e > s for s, e in offsets], dtype=torch.bool)
                mask = m if m.any() else None  # the bug was cut off by truncation
            self.bug.append(mask)


class UnitData:
    """The loop's examples: units of rows (a clean/flawed pair, or one row). y is a dummy 0 per unit."""

    def __init__(self, rows: Rows, labels: np.ndarray, units: list[list[int]], pad_id: int):
        self.rows, self.labels, self.units, self.pad_id = rows, torch.as_tensor(labels, dtype=torch.long), units, pad_id
        self.n = len(units)
        self.lengths = np.array([max(len(rows.ids[r]) for r in u) for u in units], dtype=np.int64)
        self.y = torch.zeros(self.n, dtype=torch.long)

    def padded_tokens(self, idx: np.ndarray) -> int:
        return int(sum(len(self.units[i]) for i in idx) * self.lengths[idx].max())

    def collate(self, idx: np.ndarray, device: torch.device):
        members = [r for i in idx for r in self.units[i]]
        unit_of = torch.tensor([k for k, i in enumerate(idx) for _ in self.units[i]], dtype=torch.long)
        ids = pad_sequence([self.rows.ids[r] for r in members], batch_first=True, padding_value=self.pad_id)
        width = ids.shape[1]
        lengths = torch.tensor([len(self.rows.ids[r]) for r in members])
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        bug = torch.zeros(len(members), width, dtype=torch.bool)
        for k, r in enumerate(members):
            if self.rows.bug[r] is not None:
                bug[k, :len(self.rows.bug[r])] = self.rows.bug[r]
        labels = self.labels[members]
        inputs = (ids, mask, labels, bug, unit_of)
        return tuple(t.to(device) for t in inputs) + (len(idx),), self.y[idx].to(device)


# --- the net --------------------------------------------------------------------------------------
class LocatorNet(nn.Module):
    def __init__(self, encoder: nn.Module, dropout: float = 0.1):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder, self.drop = encoder, nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 2)
        self.pointer = nn.Linear(hidden, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(function logits [B, 2], pointer logits [B, T]: position 0 is the no-bug slot, padding -inf)."""
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        func = self.head(self.drop(pool(states, mask, "mean")))
        point = self.pointer(self.drop(states)).squeeze(-1).float().masked_fill(mask == 0, float("-inf"))
        return func, point


class LocatorObjective(nn.Module):
    """The unit loss: CE(function) + loc_weight * pointer loss per row, + pair_weight * ranking per pair."""

    def __init__(self, net: LocatorNet, loc_weight: float, pair_weight: float):
        super().__init__()
        self.net, self.loc_weight, self.pair_weight = net, loc_weight, pair_weight

    def forward(self, ids, mask, labels, bug, unit_of, n_units: int) -> torch.Tensor:
        func, point = self.net(ids, mask)
        row = F.cross_entropy(func.float(), labels, reduction="none")
        logp = torch.log_softmax(point, dim=1)
        no_bug = logp[:, 0]
        known = bug.any(1)
        safe = bug.clone()
        safe[:, 0] |= ~known  # rows without a known place: a finite stand-in, never selected below
        on_bug = torch.logsumexp(logp.masked_fill(~safe, float("-inf")), dim=1)
        some_bug = torch.log1p(-no_bug.exp().clamp(max=1 - 1e-6))
        loc = torch.where(labels == 0, -no_bug, torch.where(known, -on_bug, -some_bug))
        per_unit = torch.zeros(n_units, device=ids.device).index_add(0, unit_of, row + self.loc_weight * loc)
        margin = func[:, 1].float() - func[:, 0].float()
        signed = torch.where(labels == 1, margin, -margin)  # a pair: clean + flawed -> score(bug) - score(clean)
        pair_sum = torch.zeros(n_units, device=ids.device).index_add(0, unit_of, signed)
        is_pair = torch.zeros(n_units, device=ids.device).index_add(0, unit_of, torch.ones_like(signed)) == 2
        per_unit = per_unit + self.pair_weight * torch.where(is_pair, F.softplus(-pair_sum), torch.zeros_like(pair_sum))
        return loss_as_logits(per_unit)


# --- the estimator ----------------------------------------------------------------------------------
class BugLocator(EncoderBacked, ClassifierMixin, BaseEstimator):
    """Function-level flaw probability plus a token pointer to the flaw, trained jointly (see the module)."""

    def __init__(self, model_path: str | None = None, *, max_length: int = 256, epochs: int = 3,
                 batch_size: int = 16, lr: float = 1e-4, weight_decay: float = 0.01, warmup_frac: float = 0.1,
                 loc_weight: float = 1.0, pair_weight: float = 1.0, dropout: float = 0.1, patience: int | None = 2,
                 val_metric: str = "roc_auc", scratch_vocab: int = 4000, device: str = "auto",
                 class_weight: str | None = None, random_state: int = 0):
        self.model_path, self.max_length, self.epochs, self.batch_size = model_path, max_length, epochs, batch_size
        self.lr, self.weight_decay, self.warmup_frac = lr, weight_decay, warmup_frac
        self.loc_weight, self.pair_weight, self.dropout, self.patience = loc_weight, pair_weight, dropout, patience
        self.val_metric, self.scratch_vocab, self.device = val_metric, scratch_vocab, device
        self.class_weight, self.random_state = class_weight, random_state
        # EncoderBacked reads these; the locator tokenises itself (offsets), without a cache
        self.truncation, self.head_frac, self.use_cache, self.cache_dir = "head", 1.0, False, None

    def fit(self, X, y, *, X_val=None, y_val=None, on_epoch: Callable[[int, float], None] | None = None,
            checkpoint_dir=None, resume: bool = False):
        codes, y = codes_of(X), np.asarray(y)
        self.classes_ = np.unique(y)
        if list(self.classes_) != [0, 1]:
            raise ValueError(f"bug_locator is binary with labels 0 (clean) / 1 (flawed), got classes {self.classes_}")
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(self.random_state)
            encoder, tokenizer = self._encoder_and_tokenizer(codes)
            net = LocatorNet(encoder, self.dropout)
            twins = find_twins(codes, y)
            spans = {b: bug_location(codes[c], codes[b])[1:] for b, c in twins.items()}
            paired = set(twins) | set(twins.values())
            units = [[c, b] for b, c in sorted(twins.items())] + [[i] for i in range(len(codes)) if i not in paired]
            data = UnitData(Rows(tokenizer, codes, self.max_length, spans), y, units, tokenizer.pad_token_id or 0)
            cfg = TrainConfig(**{f: getattr(self, f) for f in _TRAIN_FIELDS}, seed=self.random_state)
            val_fn = self._val_fn(X_val, y_val)
            result = train(LocatorObjective(net, self.loc_weight, self.pair_weight), data, cfg, val_fn=val_fn,
                           on_epoch=on_epoch, greater_is_better=METRICS.get(self.val_metric).greater_is_better,
                           store=DirStore(checkpoint_dir) if checkpoint_dir is not None else None, resume=resume)
        self.history_ = {**result.as_dict(), "pairs": len(twins), "located": sum(m is not None for m in data.rows.bug)}
        self.weights_ = enc.encoder_arrays(net)
        self._module = net.eval()
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "weights_")
        func, _ = self._forward(codes_of(X))
        return func

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def token_scores(self, X) -> list[tuple[list[str], np.ndarray]]:
        """Per row: its tokens (as text) and the pointer's probability that each is the bug."""
        check_is_fitted(self, "weights_")
        codes = codes_of(X)
        _, points = self._forward(codes)
        tok = self._tokenizer()
        out = []
        for code, p in zip(codes, points):
            e = tok(code, add_special_tokens=True, truncation=True, max_length=self.max_length,
                    return_offsets_mapping=True)
            texts = [code[s:t] for s, t in e["offset_mapping"]]
            out.append((texts[1:-1], p[1:len(texts) - 1]))
        return out

    # --- pieces --------------------------------------------------------------------------------
    def _encoder_and_tokenizer(self, codes: list[str]):
        if self.model_path:
            return self._load_pretrained()
        from transformers import BertConfig, BertModel

        tokenizer = train_code_tokenizer(codes, self.scratch_vocab, max(512, self.max_length))
        encoder = BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=max(512, self.max_length),
                                       pad_token_id=tokenizer.pad_token_id, type_vocab_size=1, **SCRATCH),
                            add_pooling_layer=False)
        self.encoder_config_ = encoder.config.to_json_string(use_diff=False)
        self.tokenizer_files_ = enc.tokenizer_files(tokenizer)
        self.__dict__["_live"] = {"tokenizer": tokenizer}
        return encoder, tokenizer

    def _fitted_net(self) -> LocatorNet:
        net = self.__dict__.get("_module")
        if net is None:
            encoder = enc.rebuild_encoder(self.encoder_config_)
            net = LocatorNet(encoder, self.dropout)
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.weights_.items()}, strict=False)
            self._module = net.to(resolve_device(self.device)).eval()
        return net

    def _forward(self, codes: list[str], net: LocatorNet | None = None, batch_size: int = 32):
        net = net or self._fitted_net()
        rows = Rows(self._tokenizer(), codes, self.max_length)
        device = next(net.parameters()).device
        pad = self._tokenizer().pad_token_id or 0
        func_out, point_out = np.zeros((len(codes), 2)), [None] * len(codes)
        was = net.training
        net.eval()
        try:
            with torch.inference_mode():
                for i in range(0, len(codes), batch_size):
                    ids = pad_sequence(rows.ids[i:i + batch_size], batch_first=True, padding_value=pad)
                    lengths = torch.tensor([len(r) for r in rows.ids[i:i + batch_size]])
                    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
                    func, point = net(ids.to(device), mask.to(device))
                    func_out[i:i + len(lengths)] = torch.softmax(func.float(), 1).cpu().numpy()
                    probs = torch.softmax(point, 1).cpu().numpy()
                    for k, n in enumerate(lengths.tolist()):
                        point_out[i + k] = probs[k, :n]
        finally:
            net.train(was)
        return func_out, point_out

    def _val_fn(self, X_val, y_val):
        if X_val is None or y_val is None:
            return None
        codes, y_val = codes_of(X_val), np.asarray(y_val)

        def val(objective: LocatorObjective) -> float:
            func, _ = self._forward(codes, objective.net)
            return score(self.val_metric, y_val, func)

        return val


def build(params: dict[str, Any], seed: int, class_weight: str | None) -> BugLocator:
    return BugLocator(random_state=seed, class_weight=class_weight, **params)
