"""hpo.executor: ray - trials of the study as Ray tasks on a local Ray cluster; a killed Ray worker's trial."""
import os
import signal
import threading
import time

import optuna
import pytest

from cgtrain import pipeline
from cgtrain.tune import parallel
from cgtrain.tune import study as studies

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")


def test_ray_local_cluster_runs_study_and_retries_killed_worker_trial(tmp_path, study_request):
    req = study_request(n_trials=4, workers=2, executor="ray")
    journal = tmp_path / "run" / parallel.JOURNAL_FILE
    killed = {}

    def killer():  # kill -9 the Ray worker process running the first trial seen
        deadline = time.time() + 200
        while time.time() < deadline and not killed:
            time.sleep(0.05)
            try:
                storage = parallel.open_storage(f"journal:{journal}") if journal.exists() else None
                trials = optuna.load_study(study_name="cgtrain", storage=storage).get_trials(
                    states=(optuna.trial.TrialState.RUNNING,)) if storage else []
            except Exception:  # noqa: BLE001 - not created yet
                continue
            for t in trials:
                if "ray_task" in t.user_attrs and "family" in t.user_attrs:
                    os.kill(t.user_attrs["worker"]["pid"], signal.SIGKILL)
                    killed[t.number] = t.params
                    return

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    said = []
    pipeline.train(req, tmp_path / "run", say=said.append)
    thread.join(timeout=5)
    study = optuna.load_study(study_name="cgtrain", storage=parallel.open_storage(f"journal:{journal}"))
    assert studies.counted_trials(study) == 4 and len(studies.leaderboard(study, "f1")) == 4
    assert all("ray_task" in t.user_attrs for t in study.trials if "family" in t.user_attrs)  # run as Ray tasks
    assert any("Ray task(s) at a time" in s for s in said)
    assert killed, "no trial was seen running"
    (number, params), = killed.items()
    dead = {t.number: t for t in study.trials}[number]
    if dead.state.name == "COMPLETE":
        pytest.skip("the trial finished before the kill landed")
    assert dead.state.name == "FAIL" and dead.user_attrs["stale"] is True
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == number]
    assert len(retries) == 1 and retries[0].params == params and retries[0].state.name == "COMPLETE"
