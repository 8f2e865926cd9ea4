"""Label conflicts: the same code, up to names used nowhere else, carrying different labels.

No model can be right about such rows beyond chance: the label is not a function
of the code. They arise when a corpus renames identifiers at random (Juliet's
`tc_80ba56(data)` one-line sinks exist in a "bad" and a "good" copy that differ
only in a random callee name) or when labelling is noisy.

Two bodies are the same when they are equal after (a) collapsing whitespace and
(b) masking every identifier that occurs in no other row of the dataset (a hapax
name cannot teach anything that transfers). Names shared across rows are kept,
so `strcpy` vs `strncpy`, or a variable-misuse mutant that swaps two local
names, stay distinct.

Policy `keep` reports the conflicts and trains on everything; `drop` removes
every row of a conflicting body before splitting and lists them in
`label_conflicts.jsonl`, so neither training nor the test score sees them.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from cgtrain.fsutil import atomic_write_text
from cgtrain import rundir

CONFLICTS_FILE = rundir.CONFLICTS
_IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_SPACE = re.compile(r"\s+")


def _name_counts(codes: list[str]) -> Counter:
    """identifier -> number of rows it occurs in."""
    counts: Counter = Counter()
    for code in codes:
        counts.update(set(_IDENT.findall(code)))
    return counts


def body_keys(codes: Iterable[str], counts: Counter | None = None) -> list[str]:
    """Whitespace-collapsed code with hapax identifiers (in one row only) masked as `ID`."""
    codes = list(codes)
    counts = _name_counts(codes) if counts is None else counts

    def mask(m: re.Match) -> str:
        return m.group(0) if counts[m.group(0)] > 1 else "ID"

    return [_SPACE.sub(" ", _IDENT.sub(mask, code)).strip() for code in codes]


def _labels_disagree(keys: list, labels: list) -> np.ndarray:
    frame = pd.DataFrame({"key": keys, "label": labels})
    return (frame.groupby("key")["label"].transform("nunique") > 1).to_numpy()


def conflict_mask(codes: Iterable[str], labels: Iterable) -> np.ndarray:
    """True for every row whose body (see body_keys) occurs with more than one label.

    Bodies equal under hapax masking are also equal with every name masked, so a
    cheap all-names-masked pass finds the candidates and only they get the exact key."""
    codes, labels = list(codes), list(labels)
    coarse = [_SPACE.sub(" ", _IDENT.sub("ID", code)).strip() for code in codes]
    candidates = np.flatnonzero(_labels_disagree(coarse, labels))
    out = np.zeros(len(codes), dtype=bool)
    if len(candidates):
        keys = body_keys([codes[i] for i in candidates], _name_counts(codes))
        out[candidates] = _labels_disagree(keys, [labels[i] for i in candidates])
    return out


def conflict_bodies(codes: list[str], mask: np.ndarray) -> int:
    """How many distinct bodies the conflicting rows share."""
    rows = np.flatnonzero(mask)
    return len(set(body_keys([codes[i] for i in rows], _name_counts(codes)))) if len(rows) else 0


@dataclasses.dataclass(frozen=True)
class ConflictReport:
    policy: str
    rows: int            # rows whose body carries more than one label
    bodies: int          # distinct such bodies
    dropped: int         # rows removed (policy drop), else 0
    path: str | None     # label_conflicts.jsonl when rows were dropped

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def apply_policy(ds, policy: str, run_dir: Path):
    """(dataset without conflicting rows when policy is 'drop', report). `ds` is a LoadedDataset."""
    frame = ds.frame
    if policy == "off" or frame.empty or "label" not in frame or frame["label"].isna().all():
        return ds, ConflictReport(policy, 0, 0, 0, None)
    codes = frame["code"].astype(str).tolist()
    mask = conflict_mask(codes, frame["label"].astype(str).tolist())
    bodies = conflict_bodies(codes, mask)
    if policy != "drop" or not mask.any():
        return ds, ConflictReport(policy, int(mask.sum()), bodies, 0, None)
    path = Path(run_dir) / CONFLICTS_FILE
    dropped = frame[mask]
    lines = [json.dumps({"id": str(i), "label": str(lab), "group": str(g), "reason": "label_conflict",
                         "detail": "the same code (up to names found in no other row) also occurs with another label"})
             for i, lab, g in zip(dropped["id"], dropped["label"], dropped["group"])]
    atomic_write_text(path, "\n".join(lines) + "\n")
    kept = dataclasses.replace(ds, frame=frame[~mask].reset_index(drop=True),
                               table=None if ds.table is None else ds.table[~mask].reset_index(drop=True))
    return kept, ConflictReport(policy, int(mask.sum()), bodies, int(mask.sum()), str(path))
