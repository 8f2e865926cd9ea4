"""A pre-trained encoder with a classification head, and its fine-tuning controls.

Parameters are ranked by depth: 0 = the embeddings, 1..L = the encoder's
layers bottom to top, L+1 = everything above (pooler, final norms, the head).
Depth drives all three controls, so they compose:

* freezing: `freeze_embeddings` fixes depth 0, `freeze_layers=n` depths 0..n,
  for the whole run (those parameters never reach the optimizer);
* gradual unfreezing (ULMFiT): with `unfreeze_per_epoch=k`, epoch e trains
  depths >= L+1 - e*k only, so the head settles before the encoder moves;
  the training loop tells the net its epoch through `set_epoch`, also after
  a resume, so a resumed run freezes exactly what the original froze;
* layer-wise LR decay: depth d's learning rate is lr * decay**(L+1-d), given
  to the loop as per-group `lr_scale` (see `optimizer_groups`); biases and
  norm weights get no weight decay, as in BERT's recipe.
"""
from __future__ import annotations

import torch
from torch import nn


class EncoderClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float = 0.1, pooling: str = "mean",
                 freeze_embeddings: bool = False, freeze_layers: int = 0, unfreeze_per_epoch: int = 0,
                 layer_lr_decay: float = 1.0):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder, self.pooling = encoder, pooling
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)
        self.n_layers = int(encoder.config.num_hidden_layers)
        if not 0 <= freeze_layers <= self.n_layers:
            raise ValueError(f"freeze_layers must be in 0..{self.n_layers} (the encoder's layers), got {freeze_layers}")
        self.frozen_below = freeze_layers + 1 if freeze_layers else (1 if freeze_embeddings else 0)
        self.unfreeze_per_epoch, self.layer_lr_decay = unfreeze_per_epoch, layer_lr_decay
        self.depths = {name: depth for name, depth in parameter_depths(self)}
        self._epoch: int | None = None
        self.set_epoch(0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.head(self.drop(pool(hidden, mask, self.pooling)))

    def set_epoch(self, epoch: int) -> None:
        """Which parameters train in this epoch: permanent freezes, then gradual unfreezing."""
        if epoch == self._epoch:
            return
        self._epoch = epoch
        lowest = self.frozen_below
        if self.unfreeze_per_epoch:
            lowest = max(lowest, self.n_layers + 1 - epoch * self.unfreeze_per_epoch)
        for name, p in self.named_parameters():
            p.requires_grad_(self.depths[name] >= lowest)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups for the loop's optimizer: one per (depth, decayed or not), each with its
        lr_scale. Every parameter that may train at some epoch is included (gradual unfreezing flips
        requires_grad; the optimizer skips parameters without gradients)."""
        groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
        for name, p in self.named_parameters():
            depth = self.depths[name]
            if depth >= self.frozen_below:
                groups.setdefault((depth, p.ndim > 1), []).append(p)
        top = self.n_layers + 1
        return [{"params": params, "weight_decay": weight_decay if decayed else 0.0,
                 "lr_scale": float(self.layer_lr_decay ** (top - depth))}
                for (depth, decayed), params in sorted(groups.items())]


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Mean over real tokens (padding excluded), or the first token's state."""
    if how == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def parameter_depths(model: EncoderClassifier) -> list[tuple[str, int]]:
    """(name, depth) of each parameter of `model` (see the module docstring)."""
    encoder, n_layers = model.encoder, model.n_layers
    layers = _layer_list(encoder, n_layers)
    embed_root = _embedding_root(encoder)
    out = []
    for name, _ in model.named_parameters():
        inner = name[len("encoder."):] if name.startswith("encoder.") else None
        depth = n_layers + 1
        if inner is not None and layers and inner.startswith(layers + "."):
            depth = int(inner[len(layers) + 1:].split(".", 1)[0]) + 1
        elif inner is not None and embed_root and inner.startswith(embed_root + "."):
            depth = 0
        out.append((name, depth))
    return out


def _layer_list(encoder: nn.Module, n_layers: int) -> str | None:
    """Dotted name of the ModuleList holding the encoder's num_hidden_layers blocks."""
    for name, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers and n_layers:
            return name
    return None


def _embedding_root(encoder: nn.Module) -> str | None:
    """The top-level child that holds the input embeddings ('embeddings' in BERT/RoBERTa)."""
    target = encoder.get_input_embeddings()
    for name, child in encoder.named_children():
        if any(m is target for m in child.modules()):
            return name
    return None
