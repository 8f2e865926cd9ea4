"""hpo.executor: ray - trials of the study as Ray tasks on a local Ray cluster; a killed Ray worker's trial."""

import optuna
import pytest
from helpers.kill import TrialWorkerKiller

from cgtrain.flows.supervised import train as train_run
from cgtrain.tune import parallel
from cgtrain.tune import study as studies

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")


def test_ray_local_cluster_runs_study_and_retries_killed_worker_trial(tmp_path, study_request):
    req = study_request(n_trials=4, workers=2, executor="ray")
    journal = tmp_path / "run" / parallel.JOURNAL_FILE
    said = []
    with TrialWorkerKiller((lambda: optuna.load_study(study_name="cgtrain", storage=parallel.open_storage(f"journal:{journal}")) if journal.exists() else None), marker="ray_task", timeout=200) as killer:  # kill -9 a worker mid-trial
        train_run(req, tmp_path / "run", say=said.append)
    killed = killer.killed
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
