"""This run against the registered champion, after tracking registered it: McNemar, a bootstrap CI
and DeLong on the same held-out rows, written to champion.json, then the report is rebuilt.
Needs the registry (the [mlflow] extra); `after_tracking` never fails a run."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgtrain import rundir
from cgtrain.evaluate.significance import delong_test
from cgtrain.fsutil import atomic_write_json
from cgtrain.qa.checks import QA_FILE
from cgtrain.registry import model_registry as reg
from cgtrain.registry.promotion import (PREDICTIONS_FILE, NotComparable, compare, decide, pair, read_predictions,
                                        version_predictions)
from cgtrain.report import build_report
from cgtrain.track.store import quiet_mlflow, tracking_client

CHAMPION_FILE = "champion.json"
_json = rundir.read_json


def champion_section(run_dir: Path, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """This run vs the registered champion on the same held-out rows (McNemar, bootstrap CI, DeLong);
    written to champion.json. None when the run was never registered."""

    run_dir = Path(run_dir)
    tracking = _json(run_dir / rundir.TRACKING)
    if not tracking.get("model_name") or not tracking.get("model_version"):
        return None
    name, mine = tracking["model_name"], str(tracking["model_version"])
    with quiet_mlflow():
        client = tracking_client(tracking_uri or tracking.get("tracking_uri"), create=False)
        champion = reg.alias_version(client, name, reg.CHAMPION)
        record: dict[str, Any] = {"model": name, "version": mine,
                                  "champion_version": str(champion.version) if champion else None}
        if champion is None:
            record["status"] = "no champion registered"
        elif str(champion.version) == mine:
            record["status"] = "this run is the champion"
        else:
            metric = _json(run_dir / rundir.METRICS).get("cv", {}).get("metric", "f1")
            try:
                theirs, ours = version_predictions(client, champion), read_predictions(run_dir / PREDICTIONS_FILE)
                evidence = compare(theirs, ours, metric)
                decision = decide(evidence)
                record.update({"status": "compared", "metric": metric, "evidence": evidence.__dict__,
                               "summary": evidence.describe(), "significantly_better": decision.promote})
                y, pa, pb = pair(theirs, ours)
                if pa.shape[1] == 2 and len(np.unique(y)) == 2:
                    record["delong"] = delong_test(y, pa[:, 1], pb[:, 1]).as_dict()
            except NotComparable as exc:
                record.update({"status": "not comparable", "reason": str(exc)})
    atomic_write_json(run_dir / CHAMPION_FILE, record)
    return record


def after_tracking(run_dir: Path, tracking_uri: str | None, say: Callable[[str], None]) -> None:
    """After a run's model was registered: significance against the champion, report rebuilt.
    Never fails the run: a problem is said and the report stays as it was."""

    run_dir = Path(run_dir)
    if not (run_dir / QA_FILE).is_file() or not (run_dir / rundir.TRACKING).is_file():
        return
    try:
        record = champion_section(run_dir, tracking_uri)
        build_report(run_dir)
        if record and record.get("status") == "compared":
            say(f"vs champion {record['model']}/{record['champion_version']}: {record['summary']}")
    except Exception as exc:  # noqa: BLE001 - the run and its report stay as they are
        say(f"note: no champion comparison in the report ({type(exc).__name__}: {exc})")
