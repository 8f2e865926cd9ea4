"""The torch side of the `autoencoder` anomaly family (`unsupervised.AutoencoderDetector`).

Kept apart so that the unsupervised families import torch only when an autoencoder is fitted
or scores rows: a core install without torch still has isolation_forest, kmeans and hdbscan.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn


class AutoencoderNet(nn.Module):
    def __init__(self, n_in: int, hidden: int, code: int):
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, code), nn.ReLU())
        self.decode = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@contextmanager
def one_thread() -> Iterator[None]:
    """Intra-op threads only slow a net this small down (sync costs, more so on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(Z: np.ndarray, est: Any) -> tuple[AutoencoderNet, dict[str, np.ndarray], list[float]]:
    """Train on standardised rows Z with est's settings; (net, weights as numpy, loss per epoch)."""
    data = torch.from_numpy(Z.astype(np.float32))
    with torch.random.fork_rng(devices=[]), one_thread():  # the caller's RNG is left as it was
        torch.manual_seed(est.random_state)
        net = AutoencoderNet(data.shape[1], int(est.hidden), int(est.code))
        losses = _train(net, data, est)
    weights = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
    return net.eval(), weights, losses


def rebuild(n_in: int, hidden: int, code: int, weights: dict[str, Any]) -> AutoencoderNet:
    net = AutoencoderNet(n_in, hidden, code)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return net.eval()


def reconstruction_error(net: nn.Module, Z: np.ndarray) -> np.ndarray:
    """Mean squared reconstruction error per row of standardised rows Z."""
    data = torch.from_numpy(Z.astype(np.float32))
    with torch.inference_mode(), one_thread():
        error = (net(data) - data).pow(2).mean(dim=1)
    return error.numpy().astype(np.float64)


def _train(net: nn.Module, data: torch.Tensor, est: Any) -> list[float]:
    """Mini-batch Adam on the reconstruction MSE; returns the mean loss per epoch."""
    opt = torch.optim.AdamW(net.parameters(), lr=est.lr, weight_decay=est.weight_decay)
    gen = torch.Generator().manual_seed(int(est.random_state))
    losses = []
    net.train()
    for _ in range(int(est.epochs)):
        total = 0.0
        for idx in torch.randperm(len(data), generator=gen).split(int(est.batch_size)):
            batch = data[idx]
            loss = (net(batch) - batch).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach().item() * len(idx)
        losses.append(total / max(1, len(data)))
    net.eval()
    return losses
