"""`cgtrain pretrain` on a tiny generated corpus: loss falls, the directory loads with transformers,
a resumed run is exact, hf_embed / hf_finetune accept the encoder, errors are one line."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from cgtrain.cli import app  # noqa: E402
from cgtrain.pretrain import PretrainError, pretrain  # noqa: E402
from cgtrain.models.hf.lossfn import loss_as_logits  # noqa: E402
from cgtrain.pretrain.corpus import collect  # noqa: E402
from cgtrain.pretrain.objective import choose_masked  # noqa: E402


def test_loss_as_logits_gives_the_loss_and_its_gradient():
    loss = torch.tensor([0.01, 0.7, 3.0, 40.0], requires_grad=True)
    ce = F.cross_entropy(loss_as_logits(loss), torch.zeros(4, dtype=torch.long), reduction="none")
    assert torch.allclose(ce, loss.detach(), rtol=1e-4)
    ce.sum().backward()
    assert torch.allclose(loss.grad, torch.ones(4), rtol=1e-3)


def test_masking_picks_real_tokens_only_at_least_one_per_row():
    ids = torch.tensor([[2, 10, 11, 12, 3, 0], [2, 13, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    for seed in range(5):
        torch.manual_seed(seed)
        m = choose_masked(ids, mask, 0.15)
        assert m.sum(1).min() >= 1 and not m[ids <= 4].any()


@pytest.mark.parametrize("objective", ["mlm", "electra"])
def test_the_vocabulary_is_projected_at_masked_positions_only_with_the_full_projections_loss(objective):
    """The objectives project to the vocabulary only where a token was masked (4x faster on CPU, see
    bench/pretrain_speed.py); the masked-language loss is the one the full projection gives there."""
    from cgtrain.models.hf.codetok import MASK_ID
    from cgtrain.pretrain.objective import build, per_sequence_mean

    torch.manual_seed(0)
    module = build(objective, "tiny", 300, 64, 10).eval()
    ids = torch.randint(5, 300, (3, 20))
    ids[:, 0], ids[:, -1] = 2, 3
    attention = torch.ones_like(ids)
    attention[2, 12:] = 0
    mlm = module.model if objective == "mlm" else module.generator
    seen = []
    hook = (mlm.cls if objective == "mlm" else mlm.generator_lm_head).register_forward_hook(
        lambda mod, args, out: seen.append(out.shape))
    torch.manual_seed(1)
    per_seq = F.softplus(module(ids, attention)[:, 1])
    hook.remove()
    torch.manual_seed(1)
    masked = choose_masked(ids, attention, module.mask_prob)
    assert seen == [torch.Size([int(masked.sum()), 300])]  # one row per masked token, not per position
    with torch.no_grad():
        if objective == "mlm":
            r = torch.rand(ids.shape)
            rand_ids = torch.randint(5, 300, ids.shape)
            inputs = torch.where(masked & (r < 0.8), torch.full_like(ids, MASK_ID), ids)
            inputs = torch.where(masked & (r >= 0.8) & (r < 0.9), rand_ids, inputs)
        else:
            inputs = ids.masked_fill(masked, MASK_ID)
        full = mlm(input_ids=inputs, attention_mask=attention).logits
        want = per_sequence_mean(F.cross_entropy(full.transpose(1, 2), ids, reduction="none"), masked)
    if objective == "mlm":
        assert torch.allclose(per_seq, want, atol=1e-5)
    else:  # the generator's loss plus the weighted replaced-token loss, which is positive
        assert (per_seq > want).all() and torch.isfinite(per_seq).all()


def test_corpus_is_functions_normalised_like_synth_bugs(corpus_dir):
    c = collect([corpus_dir])
    assert c.n_files == 6 and c.n_files_skipped == 1 and len(c.documents) == 48
    assert all(d.startswith("def func_") and "Docstring" not in d for d in c.documents)


def test_a_dataset_file_gives_one_document_per_row_read_whole_beside_sampled_files(corpus_dir, tmp_path):
    """A user pre-trains on the code of their own training rows (any language) beside source directories."""
    import gzip

    rows = [{"id": i, "code": f"int f{i}(int a) {{ return a + {i}; }}", "label": i % 2} for i in range(30)]
    data = tmp_path / "train.jsonl.gz"
    with gzip.open(data, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows[:20]) + "\n\n" + json.dumps(rows[0]) + "\n")
    c = collect([corpus_dir, data], max_files=2, seed=0)
    assert c.n_files == 3  # two sampled source files + the dataset, never sampled away
    assert [d for d in c.documents if d.startswith("int ")] == [r["code"] for r in rows[:20]]  # duplicate dropped
    plain = tmp_path / "more.jsonl"
    plain.write_text("\n".join(json.dumps(r) for r in rows[20:]), encoding="utf-8")
    assert len(collect([plain]).documents) == 10

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"id": 1, "source": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl line 2 has no string 'code' field"):
        collect([bad])
    res = CliRunner().invoke(app, ["pretrain", "--out", str(tmp_path / "e"), "--source", str(bad)])
    assert res.exit_code == 2 and "line 2" in res.output and "Traceback" not in res.output


def test_many_files_are_parsed_in_parallel_into_the_same_corpus(make_corpus, tmp_path, monkeypatch):
    from cgtrain.pretrain import corpus as corp

    root = make_corpus(tmp_path, n_files=12, per_file=3)
    serial = collect([root])
    monkeypatch.setattr(corp, "PARALLEL_FROM", 2)
    parallel = collect([root])
    assert parallel == serial and len(serial.documents) == 36 and serial.n_files_skipped == 1


def test_pretraining_lowers_the_loss_and_writes_a_report(encoder_dir):
    report = json.loads((encoder_dir / "pretrain_report.json").read_text())
    assert report["steps_done"] == report["steps_planned"] >= 36
    assert report["loss_last_10pct"] < 0.8 * report["loss_first_10pct"]
    assert report["tokens_per_s"] > 0 and report["tokens_seen"] > 0 and report["loss_curve"]
    assert "Loss curve" in (encoder_dir / "pretrain_report.md").read_text()


def test_directory_loads_with_transformers_safetensors_only(encoder_dir):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(encoder_dir, local_files_only=True, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(encoder_dir, local_files_only=True)
    assert type(model).__name__ == "ElectraModel" and tok.is_fast
    assert not list(encoder_dir.glob("*.bin")) and (encoder_dir / "model.safetensors").is_file()
    code = "def f(a, b):\n    return a + b"
    ids = tok(code, return_tensors="pt")
    assert tok.decode(ids["input_ids"][0], skip_special_tokens=True) == code
    with torch.no_grad():
        hidden = model(**ids).last_hidden_state
    assert hidden.shape == (1, ids["input_ids"].shape[1], 128) and torch.isfinite(hidden).all()


def test_resume_after_an_interruption_is_exact(corpus_dir, tmp_path, one_thread, tiny):
    import shutil

    own = shutil.copytree(corpus_dir, tmp_path / "code")
    settings = tiny(own, steps=12, checkpoint_every=4)
    pretrain(settings, tmp_path / "whole")
    with pytest.raises(PretrainError, match="--resume"):
        pretrain(settings, tmp_path / "whole")  # a second run into the same directory needs --resume
    part = pretrain(settings, tmp_path / "cut", _interrupt_at=6)  # dies after step 6; last checkpoint: step 4
    assert part.report["stopped"] and part.report["steps_done"] == 6
    (own / "new.py").write_text("def added(a, b):\n    c = a + b\n    return c * a\n")  # sources change
    resumed = pretrain(settings, tmp_path / "cut", resume=True)  # ... the run keeps the corpus it started with
    whole = json.loads((tmp_path / "whole" / "pretrain_report.json").read_text())
    assert resumed.report["loss_curve"] == whole["loss_curve"]
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()


def test_a_time_budget_stop_is_checkpointed_and_resumed_from_that_step(corpus_dir, tmp_path, one_thread, tiny):
    """--time-budget stops after a step; that step is checkpointed (not only every checkpoint_every steps), so
    --resume repeats nothing, and the resumed run still equals an uninterrupted one."""
    settings = tiny(corpus_dir, steps=12, checkpoint_every=4)
    whole = pretrain(settings, tmp_path / "whole").report
    part = pretrain(settings, tmp_path / "cut", time_budget_s=1e-9).report  # the budget is over after step 1
    assert part["stopped"].startswith("time budget") and part["steps_done"] == 1
    resumed = pretrain(settings, tmp_path / "cut", resume=True).report
    assert resumed["steps_this_process"] == whole["steps_planned"] - 1  # from step 1, not from step 0
    assert resumed["loss_curve"] == whole["loss_curve"]
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()


def test_hf_embed_and_hf_finetune_take_the_encoder_dir(encoder_dir, tmp_path, monkeypatch):
    from cgtrain.models.hf import HFClassifier, HFEmbedClassifier

    monkeypatch.setenv("CGTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    codes = [f"def f{i}(a, b):\n    return a {'+' if i % 2 else '-'} b" for i in range(12)]
    y = np.arange(12) % 2
    emb = HFEmbedClassifier(model_path=str(encoder_dir), max_length=32, device="cpu").fit(codes, y)
    assert emb.transform(codes).shape == (12, 128) and emb.score(codes, y) >= 0.5
    ft = HFClassifier(model_path=str(encoder_dir), max_length=32, epochs=1, batch_size=4, device="cpu").fit(codes, y)
    assert ft.predict_proba(codes).shape == (12, 2) and ft.history_["optimizer_steps"] == 3


def test_cli_pretrain_and_its_one_line_errors(corpus_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "e"), "--resume"])
    assert res.exit_code == 2 and "--resume" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "e"), "--size", "huge"])
    assert res.exit_code == 2 and "--size" in res.output
    res = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "e"), "--source", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.output
    res = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "e"), "--source", str(corpus_dir), "--size", "tiny",
                              "--vocab-size", "400", "--seq-len", "32", "--steps", "4", "--batch-size", "8",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "encoder ->" in res.output and (tmp_path / "e" / "model.safetensors").is_file()


def test_mlm_objective_writes_a_bert_encoder(corpus_dir, tmp_path, tiny):
    from transformers import AutoModel

    report = pretrain(tiny(corpus_dir, objective="mlm", steps=6), tmp_path / "mlm").report
    assert report["objective"] == "mlm" and report["steps_done"] >= 6
    model = AutoModel.from_pretrained(tmp_path / "mlm", local_files_only=True, use_safetensors=True)
    assert type(model).__name__ == "BertModel" and not (tmp_path / "mlm" / "cgtrain_rtd_head.safetensors").exists()
