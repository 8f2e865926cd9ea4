"""kill -9 of the whole `cgtrain train` process mid-study, then --resume."""
import os
import sqlite3
import subprocess
import sys

import optuna
from helpers.kill import kill_when

from cgtrain.request import request_to_yaml
from helpers.cli import ROOT
from helpers.requests import parsed_request as make_request

N_TRIALS = 8


def _trials(db):
    return optuna.load_study(study_name=None, storage=f"sqlite:///{db}").get_trials()


def _states(db) -> tuple[int, int]:
    """(complete trials, running trials with params), read with plain SQL: opening the study through
    Optuna while the trainer creates it would race it to create the tables."""
    if not db.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            done = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
            running = con.execute("SELECT COUNT(*) FROM trials t WHERE t.state = 'RUNNING' AND EXISTS "
                                  "(SELECT 1 FROM trial_params p WHERE p.trial_id = t.trial_id)").fetchone()[0]
        return done, running
    except sqlite3.Error:  # tables not there yet, or locked for a moment
        return 0, 0


def _run(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "cgtrain", *map(str, args), "--no-track"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _kill_while_a_trial_runs(db, proc, min_complete=2, timeout=240):
    """SIGKILL once >= min_complete trials finished and another one is running with its params chosen."""
    def ready() -> bool:
        done, running = _states(db)
        return done >= min_complete and bool(running)

    kill_when(proc, ready, timeout=timeout, what=f"{min_complete} finished trials and one running")


def test_sigkill_mid_study_then_resume_keeps_finished_and_retries_stale(tmp_path, bugs_jsonl):
    req = make_request(bugs_jsonl, candidates=[{"family": "logreg"}],
                       hpo={"sampler": "random", "n_trials": N_TRIALS})
    path = tmp_path / "request.yaml"
    path.write_text(request_to_yaml(req))
    run = tmp_path / "run"
    proc = _run(["train", path, "--run-dir", run])
    _kill_while_a_trial_runs(run / "study.db", proc)
    before = _trials(run / "study.db")
    kept = {t.number: t.params for t in before if t.state.name == "COMPLETE"}
    killed = {t.number: t.params for t in before if t.state.name == "RUNNING"}
    assert kept and killed and len(kept) < N_TRIALS

    resumed = _run(["train", path, "--run-dir", run, "--resume"])
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resume: {len(killed)} interrupted trial(s) queued again" in output

    after = _trials(run / "study.db")
    by_number = {t.number: t for t in after}
    assert all(by_number[n].params == p and by_number[n].state.name == "COMPLETE" for n, p in kept.items())
    for number, params in killed.items():  # marked stale, retried once with the same params
        assert by_number[number].state.name == "FAIL" and by_number[number].user_attrs["stale"] is True
        retries = [t for t in after if t.user_attrs.get("retry_of") == number]
        # the same params (a kill between two suggestions leaves the later ones to be sampled by the retry)
        assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
        assert {k: retries[0].params[k] for k in params} == params
    assert sum(1 for t in after if t.state.name == "COMPLETE") == N_TRIALS
    assert not any(t.state.name == "RUNNING" for t in after)
    assert (run / "metrics.json").is_file() and (run / "model.skops").is_file()
