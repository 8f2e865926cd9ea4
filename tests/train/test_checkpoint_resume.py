"""Checkpoints: atomic, pickle-free, and a resumed run equals an uninterrupted one bit for bit."""
import io
import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.kill import kill_when
import torch

from cgtrain.models.neural import NeuralClassifier
from cgtrain.engine import checkpoint as ckpt
from cgtrain.engine.checkpoint import DirStore, MemoryStore, capture_rng, from_bytes, pack, restore_rng, to_bytes, unpack
from cgtrain.engine.data import SequenceData
from cgtrain.engine.loop import Hooks, TrainConfig, train

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent


# --- a tiny problem for the loop -------------------------------------------------------
class BagModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8, padding_idx=0)
        self.drop = torch.nn.Dropout(0.2)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, ids):
        mask = (ids != 0).unsqueeze(-1).float()
        return self.out(self.drop((self.embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1)))


def tiny_data(n=30):
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(2, 20, (2 + i % 7,), generator=g) for i in range(n)]
    for i in range(1, n, 2):
        seqs[i][0] = 1
    return SequenceData(seqs, np.array([i % 2 for i in range(n)]))


CFG = TrainConfig(epochs=4, batch_size=4, lr=0.02, schedule="warmup_cosine", patience=None, bucket=True,
                  curriculum=True, curriculum_epochs=2, checkpoint_every=3)


def val_fn(model):
    data = tiny_data()
    (ids,), y = data.collate(np.arange(data.n), torch.device("cpu"))
    return float((model(ids).argmax(1) == y).float().mean())


class Crash(Exception):
    pass


def run_loop(store=None, resume=False, crash_at=None):
    torch.manual_seed(0)
    model = BagModel()

    def after_step(step, ok):
        if step == crash_at:
            raise Crash()

    result = train(model, tiny_data(), CFG, val_fn=val_fn, store=store, resume=resume,
                   hooks=Hooks(after_step=after_step))
    return model, result


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), k


@pytest.mark.parametrize("crash_at", [0, 2, 3, 7, 16, 23])
def test_resume_after_a_crash_at_any_step_is_bit_identical(tmp_path, crash_at):
    reference, ref_result = run_loop()
    with pytest.raises(Crash):
        run_loop(DirStore(tmp_path), crash_at=crash_at)
    model, result = run_loop(DirStore(tmp_path), resume=True)
    assert_same_weights(reference.state_dict(), model.state_dict())
    assert result.history == ref_result.history
    assert result.optimizer_steps == ref_result.optimizer_steps
    again, _ = run_loop(DirStore(tmp_path), resume=True)  # a finished run resumes to the same model
    assert_same_weights(reference.state_dict(), again.state_dict())


def test_resume_refuses_a_checkpoint_of_other_data(tmp_path):
    run_loop(DirStore(tmp_path))
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="other data"):
        train(BagModel(), tiny_data(n=20), CFG, store=DirStore(tmp_path), resume=True)


# --- a real SIGKILL ---------------------------------------------------------------------
def make_docs(n, seed):
    rng = np.random.default_rng(seed)
    words = ["if", "(", ")", "{", "}", "x", "y", "=", "+", "len", "buf", ";"]
    docs, y = [], []
    for i in range(n):
        toks = list(rng.choice(words, size=int(rng.integers(4, 24))))
        if i % 2:
            toks.insert(int(rng.integers(0, len(toks))), "strcpy")
        docs.append(" ".join(toks))
        y.append(i % 2)
    return docs, np.array(y)


def estimator():
    return NeuralClassifier("textcnn", embed_dim=16, width=8, epochs=4, batch_size=8, lr=3e-3, dropout=0.2,
                            patience=None, checkpoint_every=3, val_metric="accuracy", device="cpu", random_state=3)


CHILD = """
import sys, time, torch
torch.set_num_threads(1)
sys.path[:0] = [{here!r}, {tests!r}]  # the test module, and the helpers package it imports
import test_checkpoint_resume as t
from cgtrain.models.neural import TextCNN
# slow each training step down (numbers unchanged) so the parent can kill it mid-run
torch.nn.modules.module.register_module_forward_pre_hook(
    lambda module, inputs: time.sleep(0.01) if isinstance(module, TextCNN) else None)
X, y = t.make_docs(64, 0)
Xv, yv = t.make_docs(24, 1)
t.estimator().fit(X, y, X_val=Xv, y_val=yv, checkpoint_dir=sys.argv[1])
"""


def checkpoint_step(directory: Path):
    path = directory / ckpt.CHECKPOINT_FILE
    if not path.is_file():
        return None
    progress = from_bytes(path.read_bytes())["progress"]
    return progress["step"], progress["done"]


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(HERE), tests=str(HERE.parent)))
    run_dir = tmp_path / "ckpt"
    child = subprocess.Popen([sys.executable, str(script), str(run_dir)], stderr=subprocess.PIPE)
    def at_step_11() -> bool:  # 32 steps in all; kill once a checkpoint at step >= 11 exists
        seen = checkpoint_step(run_dir)
        return seen is not None and seen[0] >= 11

    kill_when(child, at_step_11, timeout=120, poll=0.005, what="a checkpoint at step 11")
    step, done = checkpoint_step(run_dir)
    assert child.returncode == -signal.SIGKILL and not done and step < 32

    X, y = make_docs(64, 0)
    Xv, yv = make_docs(24, 1)
    resumed = estimator().fit(X, y, X_val=Xv, y_val=yv, checkpoint_dir=run_dir, resume=True)
    reference = estimator().fit(X, y, X_val=Xv, y_val=yv)
    assert_same_weights(reference.weights_, resumed.weights_)
    assert resumed.history_ == reference.history_
    assert not list(run_dir.glob("*.tmp"))


# --- the file itself ------------------------------------------------------------------
def test_an_interrupted_write_never_replaces_the_last_good_checkpoint(tmp_path, monkeypatch):
    store = DirStore(tmp_path)
    store.save({"w": torch.ones(1000), "step": 1})
    good = store.path.read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError("disk went away mid-write")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="mid-write"):
        store.save({"w": torch.zeros(1000), "step": 2})
    monkeypatch.undo()
    assert store.path.read_bytes() == good
    assert store.load()["step"] == 1 and torch.equal(store.load()["w"], torch.ones(1000))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_temp_file_left_by_a_killed_writer_is_ignored_then_dropped(tmp_path):
    store = DirStore(tmp_path)
    store.save({"step": 3})
    stale = tmp_path / f".{ckpt.CHECKPOINT_FILE}.abc123.tmp"
    stale.write_bytes(b"PK\x03\x04 half a zip")
    assert store.load() == {"step": 3}
    store.discard_partial_writes()
    assert not stale.exists() and store.load() == {"step": 3}


def test_loading_never_unpickles_objects():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    torch.save({"tensors": {}, "skeleton": "{}", "x": Evil()}, buf)
    with pytest.raises(pickle.UnpicklingError):
        from_bytes(buf.getvalue())


def test_torch_save_format_without_safetensors(monkeypatch):
    monkeypatch.setattr(ckpt, "_safetensors", None)
    state = {"model": {"w": torch.arange(3.0)}, "step": 4}
    data = to_bytes(state)
    raw = torch.load(io.BytesIO(data), weights_only=True)  # plain tensors and a JSON string
    assert set(raw) == {"tensors", "skeleton"} and isinstance(raw["skeleton"], str)
    monkeypatch.undo()
    back = from_bytes(data)  # readable whichever format is current
    assert back["step"] == 4 and torch.equal(back["model"]["w"], torch.arange(3.0))


def test_pack_round_trips_optimizer_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "none": None, "nan": float("nan"), "tuple": (1, 2.5, "x")}
    back = unpack(*pack(state))
    assert back["optimizer"]["state"].keys() == {0, 1}  # int keys survive
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert back["none"] is None and back["tuple"] == [1, 2.5, "x"] and back["nan"] != back["nan"]
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    fresh.load_state_dict(from_bytes(to_bytes(state))["optimizer"])
    with pytest.raises(TypeError):
        pack({"x": object()})


def test_rng_capture_and_restore():
    gen = torch.Generator().manual_seed(5)
    state = unpack(*pack(capture_rng(gen)))  # through the checkpoint format

    def draw():
        return (random.random(), float(np.random.rand()), float(torch.rand(1)),
                torch.randperm(5, generator=gen).tolist())

    first = draw()
    restore_rng(state, gen)
    assert draw() == first


def test_memory_store_returns_copies():
    store = MemoryStore()
    w = torch.ones(2)
    store.save({"w": w})
    w.add_(1)
    loaded = store.load()
    loaded["w"].add_(5)
    assert torch.equal(store.load()["w"], torch.ones(2))


def test_safetensors_format_when_installed():
    if ckpt._safetensors is None:
        pytest.skip("safetensors is not installed")
    data = to_bytes({"w": torch.arange(4.0), "meta": {"step": 2}})
    assert data[:2] != b"PK"
    back = from_bytes(data)
    assert torch.equal(back["w"], torch.arange(4.0)) and back["meta"] == {"step": 2}
