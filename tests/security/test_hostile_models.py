"""Hostile model files are refused through every entry point, with one line and exit code 2,
and nothing in them runs (the marker file each would create never appears)."""
import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

import hostile
from hostile import invoke
from cgtrain.artifacts.files import UnsafeModelError, load_model, save_model

NAMES = sorted(hostile.HOSTILE)


def assert_refused(result, marker: Path, model: Path | None = None):
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, text
    assert "Traceback" not in text, text
    assert "refus" in text.lower() or "not a skops archive" in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) <= 3, text  # "error: UnsafeModelError" + the one line saying why
    assert not marker.exists() and not Path(f"{marker}.npy").exists(), "the hostile file ran"


@pytest.mark.parametrize("name", hostile.LIVE)
def test_the_hostile_files_are_real(tmp_path, name):
    """Loaded the permissive way (skops' own audit, every reported type trusted) and used, each
    one does run code or write a file: so the refusals below are refusals of real attacks."""
    marker = tmp_path / "marker"
    data = hostile.HOSTILE[name](marker)
    model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    with pytest.raises(Exception):
        model.predict_proba(np.zeros((4, 3)))
    assert marker.exists() or Path(f"{marker}.npy").exists()


@pytest.mark.parametrize("name", NAMES)
def test_load_model_refuses(tmp_path, name):
    marker = tmp_path / "marker"
    path = tmp_path / "m.skops"
    path.write_bytes(hostile.HOSTILE[name](marker))
    with pytest.raises(UnsafeModelError, match="refus"):
        load_model(path, expected_sha256=None)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["exec_chain", "save_chain", "savetxt_chain", "os_system", "builtins_eval",
                                  "nested_exec", "with_lambda", "renamed_function"])
def test_trusting_the_transformer_still_refuses_its_function(tmp_path, name):
    """No free callables: even with FunctionTransformer vouched for, the function it holds is checked."""
    marker = tmp_path / "marker"
    path = tmp_path / "m.skops"
    path.write_bytes(hostile.HOSTILE[name](marker))
    with pytest.raises(UnsafeModelError, match="refers to a (function that is not one of cgtrain's|type that cgtrain never stores)"):
        load_model(path, None, trust=["sklearn.preprocessing._function_transformer.FunctionTransformer"])
    assert not marker.exists()


@pytest.mark.parametrize("name,what", [("with_partial", "functools.partial"), ("with_method", "bound method"),
                                       ("with_operator", "operator")])
def test_partials_methods_and_operators_are_refused_even_when_trusted(tmp_path, name, what):
    path = tmp_path / "m.skops"
    path.write_bytes(hostile.HOSTILE[name](tmp_path / "marker"))
    with pytest.raises(UnsafeModelError, match=what):
        load_model(path, None, trust=["sklearn.preprocessing._function_transformer.FunctionTransformer",
                                      "numpy.save", "pathlib.PosixPath", "pathlib._local.PosixPath"])


@pytest.mark.parametrize("name", NAMES)
def test_predict_model_file(hostile_run, name):
    run_dir, model, marker = hostile_run(name)
    assert_refused(invoke("predict", "--model", model, run_dir / "request.yaml"), marker)


@pytest.mark.parametrize("name", NAMES)
def test_predict_run_dir_with_matching_checksum(hostile_run, name, tmp_path):
    run_dir, model, marker = hostile_run(name)
    src = tmp_path / "f.py"
    src.write_text("def f(a):\n    return a + 1\n")
    assert_refused(invoke("predict", "--run", run_dir, src), marker)


@pytest.mark.parametrize("name", ["exec_chain", "save_chain", "untrusted_estimator", "pickle_file"])
def test_report_qa_compare_and_onnx_refuse(hostile_run, trained, name):
    from cgtrain.export.onnx import export_run_artifacts

    run_dir, model, marker = hostile_run(name)
    assert_refused(invoke("report", run_dir, "--qa"), marker)
    assert_refused(invoke("compare", trained[0], run_dir), marker)
    with pytest.raises(UnsafeModelError):
        export_run_artifacts(run_dir, ["def f():\n    pass\n"])
    assert not marker.exists()


@pytest.mark.parametrize("name", ["exec_chain", "os_system", "nested_exec", "joblib_file"])
def test_registry_alias_refuses(hostile_run, trained, name, tmp_path):
    """A registered version whose model file was replaced, with its tags rewritten to match."""
    from cgtrain.registry.model_registry import TAG, alias_version, register
    from cgtrain.artifacts.files import sha256_file
    from cgtrain.track.store import tracking_client

    run_dir, model, marker = hostile_run(name)
    _, uri = trained
    client = tracking_client(uri)
    champion = alias_version(client, "tiny-sec", "champion")
    tags = {k: v for k, v in champion.tags.items()}
    tags[TAG + "sha256"] = sha256_file(model)
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "model.skops").write_bytes(model.read_bytes())
    version = register(client, f"evil-{name.replace('_', '-')}", champion.run_id, str(folder), tags)
    spec = f"{version.name}@champion"
    assert_refused(invoke("predict", "--model", spec, "--tracking-uri", uri, run_dir / "request.yaml"), marker)
    assert_refused(invoke("compare", trained[0], spec, "--tracking-uri", uri), marker)


def test_trust_escape_hatch_is_explicit_and_said(hostile_run):
    """--trust names one exact type, is said on stderr, and trusts that type only: the audit then
    stops at the next name the file needs (the neighbours' KD-tree)."""
    run_dir, model, marker = hostile_run("untrusted_estimator")
    result = invoke("predict", "--model", model, "--trust",
                    "sklearn.neighbors._classification.KNeighborsClassifier", run_dir / "request.yaml")
    assert "warning: --trust sklearn.neighbors._classification.KNeighborsClassifier" in result.output
    assert result.exit_code == 2 and "outside the allowlist: sklearn.neighbors._kd_tree.KDTree" in result.output
    prefix = invoke("predict", "--model", model, "--trust", "sklearn.", run_dir / "request.yaml")
    assert prefix.exit_code == 2 and "KNeighborsClassifier" in prefix.output  # a prefix trusts nothing


def test_a_real_run_loads_and_predicts(trained, tmp_path):
    run_dir, _ = trained
    src = tmp_path / "f.py"
    src.write_text("def f(a):\n    return a + 1\n")
    result = invoke("predict", "--run", run_dir, src)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0.0 <= row["probability"] <= 1.0


def test_saving_refuses_what_loading_would(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(UnsafeModelError, match="FunctionTransformer"):
        save_model(FunctionTransformer(np.log1p), tmp_path / "m.skops")
    assert not (tmp_path / "m.skops").exists()


def test_hf_config_naming_remote_code_is_refused():
    from cgtrain.models.hf.encoder import HFModelError, rebuild_encoder

    config = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 37, "vocab_size": 99, "auto_map": {"AutoModel": "evil.EvilModel"}}
    with pytest.raises(HFModelError, match="remote code"):
        rebuild_encoder(json.dumps(config))
