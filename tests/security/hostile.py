"""Hostile model files, one per class of attack on a model loader. Each one, if it were ever
built and used to predict, would create `marker` (proof that code ran or a file was written).

Imported by the security tests as a module of this directory (no `from conftest import`)."""
from __future__ import annotations

import functools
import io
import json
import operator
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import numpy.testing._private.utils as np_testing_utils
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer


def invoke(*args):
    """`cgtrain ARGS` in-process: the loader refuses before anything heavy runs."""
    from typer.testing import CliRunner

    from cgtrain.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


class WritesMarker:
    """Unpickling this runs code: it creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _head(X_shape=(4, 3)) -> LogisticRegression:
    rng = np.random.default_rng(0)
    return LogisticRegression().fit(rng.normal(size=(20, X_shape[1])), np.arange(20) % 2)


def _dump(model) -> bytes:
    return sio.dumps(model)


def exec_chain(marker: Path) -> bytes:
    """numpy functions only, inside default-trusted FunctionTransformers: full_like fills the
    input with Python source, take picks one string, numpy's runstring exec()s it."""
    source = f"open({str(marker)!r}, 'w').write('ran')"
    return _dump(Pipeline([
        ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": source, "dtype": object})),
        ("pick", FunctionTransformer(np.take, kw_args={"indices": 0})),
        ("run", FunctionTransformer(np_testing_utils.runstring, kw_args={"dict": {}})),
        ("model", _head()),
    ]))


def save_chain(marker: Path) -> bytes:
    """numpy functions only: the input becomes a path string, np.save writes an array there."""
    return _dump(Pipeline([
        ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": str(marker), "dtype": object})),
        ("pick", FunctionTransformer(np.take, kw_args={"indices": 0})),
        ("write", FunctionTransformer(np.save, kw_args={"arr": np.zeros(1)})),
        ("model", _head()),
    ]))


def savetxt_chain(marker: Path) -> bytes:
    return _dump(Pipeline([
        ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": str(marker), "dtype": object})),
        ("pick", FunctionTransformer(np.take, kw_args={"indices": 0})),
        ("write", FunctionTransformer(np.savetxt, kw_args={"X": np.zeros(1)})),
        ("model", _head()),
    ]))


def os_system(marker: Path) -> bytes:
    return _dump(Pipeline([("fill", FunctionTransformer(np.full_like, kw_args={
        "fill_value": f"touch {marker}", "dtype": object})), ("pick", FunctionTransformer(np.take, kw_args={
            "indices": 0})), ("run", FunctionTransformer(os.system)), ("model", _head())]))


def builtins_eval(marker: Path) -> bytes:
    return _dump(Pipeline([("fill", FunctionTransformer(np.full_like, kw_args={
        "fill_value": f"open({str(marker)!r}, 'w')", "dtype": object})), ("pick", FunctionTransformer(np.take, kw_args={
            "indices": 0})), ("run", FunctionTransformer(eval)), ("model", _head())]))


def untrusted_estimator(marker: Path) -> bytes:
    """A type from a trusted package (skops trusts every sklearn estimator) that cgtrain never writes."""
    rng = np.random.default_rng(0)
    return _dump(Pipeline([("model", KNeighborsClassifier(n_neighbors=1).fit(rng.normal(size=(6, 3)),
                                                                            np.arange(6) % 2))]))


def nested_exec(marker: Path) -> bytes:
    """The exec chain hidden two levels down: a Pipeline inside a ColumnTransformer inside a Pipeline."""
    source = f"open({str(marker)!r}, 'w').write('ran')"
    inner = Pipeline([
        ("fill", FunctionTransformer(np.full_like, kw_args={"fill_value": source, "dtype": object})),
        ("pick", FunctionTransformer(np.take, kw_args={"indices": 0})),
        ("run", FunctionTransformer(np_testing_utils.runstring, kw_args={"dict": {}})),
    ])
    return _dump(Pipeline([("columns", ColumnTransformer([("x", inner, [0])])), ("model", _head())]))


def with_lambda(marker: Path) -> bytes:
    return _dump(Pipeline([("f", FunctionTransformer(lambda X: X)), ("model", _head())]))


def with_partial(marker: Path) -> bytes:
    return _dump(Pipeline([("f", FunctionTransformer(functools.partial(np.save, str(marker)))),
                           ("model", _head())]))


def with_method(marker: Path) -> bytes:
    return _dump(Pipeline([("f", FunctionTransformer(Path(marker).write_text)), ("model", _head())]))


def with_operator(marker: Path) -> bytes:
    return _dump(Pipeline([("f", FunctionTransformer(operator.methodcaller("write_text", "ran"))),
                           ("model", _head())]))


def renamed_function(marker: Path) -> bytes:
    """cgtrain's own tokenizer function reference, edited in schema.json to name os.system."""
    from cgtrain.features.featurizer import split_tokens

    data = _dump(Pipeline([("f", FunctionTransformer(split_tokens)), ("model", _head())]))
    return edit_schema(data, lambda s: s.replace('"cgtrain.features.featurizer"', '"posix"')
                       .replace('"split_tokens"', '"system"'))


def old_protocol(marker: Path) -> bytes:
    return edit_schema(_dump(Pipeline([("model", _head())])),
                       lambda s: s.replace('"protocol": 2', '"protocol": 0'))


def deep_nesting(marker: Path) -> bytes:
    """5,000 nested lists: a walk by recursion would blow the stack."""
    node = '{"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": ['
    schema = ('{"protocol": 2, "_skops_version": "0.16.0", "__class__": "list", "__module__": "builtins", '
              '"__loader__": "ListNode", "content": [' + node * 5000 + "]}" * 5000 + "]}")
    return zip_with({"schema.json": schema.encode()})


def pickle_file(marker: Path) -> bytes:
    return pickle.dumps(WritesMarker(str(marker)))


def joblib_file(marker: Path) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(WritesMarker(str(marker)), buf)
    return buf.getvalue()


def edit_schema(data: bytes, change) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    members = {n: src.read(n) for n in src.namelist()}
    members["schema.json"] = change(members["schema.json"].decode()).encode()
    return zip_with(members)


def zip_with(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return out.getvalue()


HOSTILE = {f.__name__: f for f in (
    exec_chain, save_chain, savetxt_chain, os_system, builtins_eval, untrusted_estimator, nested_exec,
    with_lambda, with_partial, with_method, with_operator, renamed_function, old_protocol, deep_nesting,
    pickle_file, joblib_file)}
# The chains that really run code or write files when loaded the permissive way and used.
LIVE = ("exec_chain", "save_chain", "os_system", "builtins_eval")


def reads_files_by_name(marker: Path) -> bytes:
    """Only allowed types, but the vectorizer is told its input strings are file names to open."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer().fit(["alpha beta", "beta gamma"])
    head = LogisticRegression().fit(vec.transform(["alpha", "gamma"]), [0, 1])
    vec.input = "filename"
    return _dump(Pipeline([("features", vec), ("model", head)]))


def zip_bomb(marker: Path) -> bytes:
    data = _dump(Pipeline([("model", _head())]))
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in src.namelist():
            z.writestr(name, src.read(name))
        z.writestr("0.npy", b"\0" * (300 << 20))  # 300 MiB of zeros, ~300 KiB compressed
    return out.getvalue()


HOSTILE.update({f.__name__: f for f in (reads_files_by_name, zip_bomb)})
