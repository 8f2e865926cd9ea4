"""Tiny runs for the QA tests, built once per session (in-process: no CLI start-up cost)."""
import json
import random
from pathlib import Path

import pytest
from helpers.requests import request_dict


def make_rows(seed: int = 0) -> list[dict]:
    """C functions: an unsafe call vs its bounded twin, with a CWE segment; CWE-134 rows are label noise,
    so its recall is far below the rest (the audit must flag it)."""
    rng = random.Random(seed)
    pairs = {"CWE121": ("strcpy(dst, src);", "strncpy(dst, src, sizeof(dst) - 1);"),
             "CWE242": ("gets(buf);", "fgets(buf, sizeof(buf), stdin);"),
             "CWE134": ("printf(data);", 'printf("%s", data);')}
    rows = []
    for g in range(90):
        cwe = list(pairs)[g % 3]
        bad, good = pairs[cwe]
        for v in range(3):
            names = [rng.choice(["count", "total", "idx", "len", "n"]) for _ in range(2 + v)]
            body = "".join(f"    int {n}{i} = {rng.randint(0, 9)};\n" for i, n in enumerate(names))
            for label, call in ((1, bad), (0, good)):
                if cwe == "CWE134":  # the flaw is not in the tokens: labels look random to the model
                    call = rng.choice([bad, good])
                code = f"void f{g}_{v}(char *src) {{\n    char dst[64];\n{body}    {call}\n}}"
                rows.append({"id": f"g{g}:v{v}:{label}", "code": code, "label": label, "group": f"g{g}",
                             "cwe": cwe, "language": "c"})
    return rows


def request_data(path: Path, **sections) -> dict:
    return request_dict(path, "qa", **sections)


@pytest.fixture(scope="session")
def cwe_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qa-data") / "cwe.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_rows()))
    return path


@pytest.fixture(scope="session")
def qa_run(tmp_path_factory, cwe_jsonl) -> Path:
    """A finished logreg run with QA and report.html."""
    from cgtrain.flows.supervised import train as train_run
    from cgtrain.request import parse_request

    run_dir = tmp_path_factory.mktemp("qa-run") / "run"
    train_run(parse_request(request_data(cwe_jsonl)), run_dir, say=lambda _m: None)
    return run_dir


@pytest.fixture(scope="session")
def qa_run_b(tmp_path_factory, cwe_jsonl) -> Path:
    """A second run on the same rows (weaker: strong regularisation, unigrams), without QA."""
    from cgtrain.flows.supervised import train as train_run
    from cgtrain.request import parse_request

    run_dir = tmp_path_factory.mktemp("qa-run-b") / "run"
    data = request_data(cwe_jsonl, features={"max_features": 3000, "ngram_max": 1},
                        candidates=[{"family": "logreg", "space": {"C": {"type": "float", "low": 0.01,
                                                                         "high": 0.02}}}],
                        hpo={"sampler": "random", "n_trials": 1}, qa={"enabled": False})
    train_run(parse_request(data), run_dir, say=lambda _m: None)
    return run_dir


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
