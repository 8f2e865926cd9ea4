"""Tiny end-to-end fixtures: a small synthetic-bug dataset and a fast request."""
import json
from pathlib import Path

import pytest



@pytest.fixture(scope="session")
def bugs_jsonl(tmp_path_factory) -> Path:
    from cgtrain.data.synth_bugs import write_dataset

    path = tmp_path_factory.mktemp("data") / "bugs.jsonl"
    write_dataset(path, seed=0, max_functions=200)
    return path


@pytest.fixture(scope="session")
def easy_jsonl(tmp_path_factory) -> Path:
    """C functions whose flaw is visible in the tokens: an unbounded copy vs its bounded twin."""
    import random

    rng = random.Random(0)
    unsafe = [("strcpy(dst, src);", "strncpy(dst, src, sizeof(dst) - 1);"),
              ("gets(buf);", "fgets(buf, sizeof(buf), stdin);"),
              ("sprintf(out, fmt, x);", "snprintf(out, sizeof(out), fmt, x);")]
    rows = []
    for g in range(60):
        for v in range(4):
            bad, good = unsafe[(g + v) % 3]
            names = [rng.choice(["count", "total", "idx", "len", "n"]) for _ in range(3)]
            body = "".join(f"    int {n}{i} = {rng.randint(0, 9)};\n" for i, n in enumerate(names))
            for label, call in ((1, bad), (0, good)):
                code = f"void f{g}_{v}(char *src) {{\n    char dst[64];\n{body}    {call}\n}}"
                rows.append({"id": f"g{g}:v{v}:{label}", "code": code, "label": label, "group": f"g{g}"})
    path = tmp_path_factory.mktemp("easy") / "easy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
