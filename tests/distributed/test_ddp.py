"""train.distributed: 2-rank DDP on CPU (gloo) equals 1 rank at the same global batch; resume after kill -9."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgtrain.engine import checkpoint as ckpt

SCRIPT = Path(__file__).with_name("ddp_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, nproc: int, *extra, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out), str(nproc), *map(str, extra)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if wait:
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, output[-3000:]
        return json.loads(out.read_text())
    return proc


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """An uninterrupted 2-rank run, checkpointing to a directory."""
    tmp = tmp_path_factory.mktemp("ddp")
    return _run(tmp / "two.json", 2, tmp / "ckpt")


def test_ddp_two_ranks_give_the_one_rank_loss_curve(two_ranks):
    import ddp_script  # the same run in this process, one rank

    net = ddp_script.model()
    result = ddp_script.train_model(net, ddp_script.data(), ddp_script.CFG, 1, val_fn=ddp_script.slow_val)
    one = {"history": result.history,
           "weights": {k: v.double().flatten().tolist() for k, v in net.state_dict().items()}}
    losses1 = [h["train_loss"] for h in one["history"]]
    losses2 = [h["train_loss"] for h in two_ranks["history"]]
    assert len(losses1) == len(losses2) == 6
    assert max(abs(a - b) for a, b in zip(losses1, losses2)) < 1e-5, (losses1, losses2)
    assert losses1[-1] < losses1[0]  # it learned something
    for name, w in one["weights"].items():
        assert max(abs(a - b) for a, b in zip(w, two_ranks["weights"][name])) < 1e-5, name


def test_ddp_resume_after_kill_is_bit_identical(tmp_path, two_ranks):
    store = ckpt.DirStore(tmp_path / "ckpt")
    proc = _run(tmp_path / "killed.json", 2, tmp_path / "ckpt", wait=False)
    deadline, epoch = time.time() + 180, 0
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read()[-3000:]
        try:
            saved = store.load()
        except Exception:  # noqa: BLE001 - written while we read (atomic rename: retry)
            saved = None
        epoch = saved["progress"]["epoch"] if saved else 0
        if 2 <= epoch < 6:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
            proc.wait()
            break
        time.sleep(0.05)
    assert 2 <= epoch < 6, "no mid-run checkpoint seen"
    resumed = _run(tmp_path / "resumed.json", 2, tmp_path / "ckpt", "--resume")
    assert resumed["hex"] == two_ranks["hex"]  # bit for bit
    assert resumed["history"] == two_ranks["history"]


def test_ddp_neural_family_trains_with_train_distributed():
    """A family's fit under `train.distributed` (what the pipeline calls): the same model as one process,
    and the per-epoch callback (Optuna pruning) still hears every epoch."""
    import ddp_script
    from cgtrain.models.neural import NeuralClassifier
    from cgtrain.request import DistributedConfig, TrainSection
    from cgtrain.engine.distributed import fit_with

    X, y = ddp_script.data().X, ddp_script.data().y.numpy()
    make = lambda: NeuralClassifier(net="mlp", width=16, dropout=0.0, epochs=2, batch_size=24, patience=None)  # noqa: E731
    one = fit_with(TrainSection(device="cpu"), make(), X, y, {"X_val": X[:30], "y_val": y[:30]})
    heard = []
    two = fit_with(TrainSection(device="cpu", distributed=DistributedConfig(nproc=2)), make(), X, y,
                   {"X_val": X[:30], "y_val": y[:30], "on_epoch": lambda e, v: heard.append(e)})
    assert heard == [0, 1]
    assert abs(one.predict_proba(X) - two.predict_proba(X)).max() < 1e-5
