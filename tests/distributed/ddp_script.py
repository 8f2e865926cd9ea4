"""A tiny DDP training run for tests/distributed/test_ddp.py (run as a script: ranks are spawned).

usage: python ddp_script.py OUT.json NPROC [CHECKPOINT_DIR] [--resume]
Writes the per-epoch history and the final weights (as lists) to OUT.json."""
import json
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from cgtrain.models.neural import SparseMLP
from cgtrain.engine import SparseData, TrainConfig
from cgtrain.engine.ddp_run import train_model

CFG = TrainConfig(epochs=6, batch_size=24, micro_batch_size=8, lr=1e-2, patience=None, seed=0, device="cpu")


def data() -> SparseData:
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.random((150, 40)) * (rng.random((150, 40)) < 0.25))
    s = np.asarray(X.sum(1)).ravel()
    return SparseData(X, (s > np.median(s)).astype(int))


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return SparseMLP(40, 2, 16, 2, 0.0)


def slow_val(net) -> float:
    """A deterministic metric of the weights; slow, so a test can kill the run between epochs."""
    time.sleep(0.4)
    return -float(sum(p.detach().double().abs().sum() for p in net.parameters()))


if __name__ == "__main__":
    out, nproc = sys.argv[1], int(sys.argv[2])
    ckpt = sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else None
    net = model()
    result = train_model(net, data(), CFG, nproc, "gloo", checkpoint_dir=ckpt, resume="--resume" in sys.argv,
                         val_fn=slow_val)
    with open(out, "w") as f:
        json.dump({"history": result.history, "weights": {k: v.double().flatten().tolist() for k, v in
                                                          net.state_dict().items()},
                   "hex": {k: v.numpy().tobytes().hex() for k, v in net.state_dict().items()}}, f)
