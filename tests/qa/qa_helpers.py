"""Helpers shared by the QA tests."""
import json
from pathlib import Path


def held_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "test_predictions.jsonl").read_text().splitlines() if line]


def held_codes(run_dir: Path) -> list[str]:
    from cgtrain.registry.promotion import held_out_codes

    ids = [r["id"] for r in held_rows(run_dir)]
    return held_out_codes(run_dir, ids, len(ids))
