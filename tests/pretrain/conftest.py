"""Shared fixtures: a tiny generated corpus and one encoder pre-trained on it (module-scoped)."""
from pathlib import Path

import numpy as np
import pytest

from cgtrain.pretrain import PretrainSettings, pretrain

OPS = ["+", "-", "*", "//"]
CMPS = ["<", "<=", "==", "!="]


def write_corpus(root: Path, n_files: int = 6, per_file: int = 8) -> Path:
    """A few hundred lines of regular Python: patterns an encoder can learn in a few dozen steps."""
    rng = np.random.default_rng(0)
    for f in range(n_files):
        lines = []
        for i in range(per_file):
            a, b = rng.choice(["items", "values", "count", "total", "limit", "index"], 2, replace=False)
            op, cmp = OPS[int(rng.integers(4))], CMPS[int(rng.integers(4))]
            lines += [f"def func_{f}_{i}({a}, {b}):",
                      f"    '''Docstring {i}.'''",
                      f"    result = {a} {op} {b}",
                      f"    if result {cmp} {b}:",
                      f"        return result {op} 1",
                      f"    for x in range({b}):",
                      f"        result = result {op} x",
                      "    return result", ""]
        (root / f"mod{f}.py").write_text("\n".join(lines), encoding="utf-8")
    (root / "broken.py").write_text("def f(:\n", encoding="utf-8")
    return root


def tiny_settings(root: Path, **kw) -> PretrainSettings:
    base = dict(sources=(str(root),), size="tiny", vocab_size=400, seq_len=48, steps=40, batch_size=8,
                lr=2e-3, warmup_frac=0.1, checkpoint_every=5, device="cpu", seed=0)
    return PretrainSettings(**{**base, **kw})


@pytest.fixture
def make_corpus():
    """make_corpus(root, n_files=, per_file=) -> root, holding that generated corpus (and one broken file)."""
    return write_corpus


@pytest.fixture
def tiny():
    """tiny(corpus_root, **overrides) -> PretrainSettings of a seconds-long run."""
    return tiny_settings


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("code")
    return write_corpus(root)


@pytest.fixture(scope="session")
def encoder_dir(corpus_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("enc") / "encoder"
    pretrain(tiny_settings(corpus_dir), out)
    return out


