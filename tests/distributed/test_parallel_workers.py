"""hpo.workers: N worker processes on one shared study (JournalStorage, PostgreSQL); kill -9 of a worker."""
import os
import uuid

import optuna
import pytest
from helpers.kill import TrialWorkerKiller
from typer.testing import CliRunner

from cgtrain.core.runs import open_run
from cgtrain.core.prepared import prepare
from cgtrain.flows.supervised import train as train_run
from cgtrain.request import RequestError, parse_request
from cgtrain.tune import parallel
from cgtrain.tune import study as studies

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _study(uri, name="cgtrain"):
    return optuna.load_study(study_name=name, storage=parallel.open_storage(uri))


def _check_exact(study, n):
    """Exactly n counted trials; the leaderboard shows exactly those."""
    assert studies.counted_trials(study) == n
    board = studies.leaderboard(study, "f1")
    assert len(board) == n and set(board["state"]) == {"complete"}


def test_worker_journal_two_workers_resume_and_complete_exactly_n_trials(tmp_path, study_request):
    """A run killed with a trial RUNNING, resumed with hpo.workers=2: the trial is retried, n_trials exact."""
    req = study_request(n_trials=4, workers=2)
    run, said = tmp_path / "run", []
    prepared = open_run(req, run, resume=False, say=said.append)[2]  # the killed run's first steps
    _, study = parallel.prepare_study(req, run, prepared.dataset.fingerprint, None, said.append)
    left = study.ask()  # its lead and workers died here: the trial stays RUNNING
    left.set_user_attr("worker", {"host": "gone", "pid": 1})

    result = train_run(req, run, resume=True, say=said.append)
    assert (run / parallel.JOURNAL_FILE).is_file() and not (run / "study.db").exists()
    study = _study(f"journal:{run / parallel.JOURNAL_FILE}")
    _check_exact(study, 4)
    assert "resume: 1 interrupted trial(s) queued again with the same parameters" in said
    stale = study.trials[left.number]
    assert stale.state.name == "FAIL" and stale.user_attrs["stale"] is True
    assert [t.state.name for t in study.trials if t.user_attrs.get("retry_of") == left.number] == ["COMPLETE"]
    assert len(result.leaderboard) == 4 and (run / "model.skops").is_file()
    assert all(t.user_attrs["worker"]["pid"] != os.getpid() for t in study.trials)  # run by worker processes
    assert any("2 worker process(es)" in s for s in said)
    with pytest.raises(Exception, match="already holds a run"):  # a fresh run into the same dir is refused
        train_run(req, run, say=said.append)


def test_worker_sigkill_mid_trial_is_retried_and_count_exact(tmp_path, study_request):
    req = study_request(n_trials=5, workers=2)
    journal = tmp_path / "run" / parallel.JOURNAL_FILE
    said = []
    with TrialWorkerKiller(lambda: _study(f"journal:{journal}") if journal.exists() else None, marker="worker", timeout=150) as killer:  # kill -9 a worker mid-trial
        train_run(req, tmp_path / "run", say=said.append)
    killed = killer.killed
    assert killed, "no trial was seen running"
    (number, params), = killed.items()
    study = _study(f"journal:{journal}")
    by_number = {t.number: t for t in study.trials}
    if by_number[number].state.name == "COMPLETE":  # it finished between the look and the kill
        pytest.skip("the trial finished before the kill landed")
    assert by_number[number].state.name == "FAIL" and by_number[number].user_attrs["stale"] is True
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == number]
    assert len(retries) == 1 and retries[0].params == params and retries[0].state.name == "COMPLETE"
    assert any("died" in s and "1 trial(s) queued again" in s for s in said)
    _check_exact(study, 5)


def _postgres_or_skip():
    try:
        import psycopg

        conn = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        reason = f"PostgreSQL not reachable at {PG}: {' '.join(str(exc).split())[:200]}"
        print(reason)
        pytest.skip(reason)
    return conn


def test_worker_postgres_two_workers_complete_exactly_n_trials(tmp_path, study_request):
    conn = _postgres_or_skip()
    schema = f"cgt_{uuid.uuid4().hex[:12]}"  # a schema of our own, dropped at the end
    conn.execute(f"CREATE SCHEMA {schema}")
    uri = f"{PG}?options=-csearch_path%3D{schema}"
    try:
        req = study_request(n_trials=3, workers=2, storage=uri, study_name=schema)
        train_run(req, tmp_path / "run", say=lambda _m: None)
        storage = parallel.open_storage(uri)
        _check_exact(optuna.load_study(study_name=schema, storage=storage), 3)
        storage.engine.dispose()
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def test_worker_cli_joins_a_study_in_process(tmp_path, study_request):
    """`cgtrain worker --study URI --run-dir DIR`: what a second machine runs (here: in-process, journal)."""
    from cgtrain.cli.service import app

    req = study_request(n_trials=2, workers=2)
    prepared = prepare(req, tmp_path / "lead", lambda _m: None)
    uri, _ = parallel.prepare_study(req, tmp_path / "lead", prepared.dataset.fingerprint, None, lambda _m: None)
    out = CliRunner().invoke(app, ["worker", "--study", uri, "--run-dir", str(tmp_path / "remote")])
    assert out.exit_code == 0, out.output
    _check_exact(_study(uri), 2)
    assert len(list((tmp_path / "remote" / "oof").glob("trial_*.npz"))) == 2  # trial files on the worker's side

    bad = CliRunner().invoke(app, ["worker", "--study", f"journal:{tmp_path / 'none.journal'}",
                                   "--run-dir", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "no study" in bad.output and "Traceback" not in bad.output
    sqlite = CliRunner().invoke(app, ["worker", "--study", "sqlite:///x.db", "--run-dir", str(tmp_path / "r")])
    assert sqlite.exit_code == 2 and "SQLite cannot be shared" in sqlite.output


def test_worker_request_refuses_sqlite_for_several_workers(tiny_bugs):
    base = {"dataset": {"path": str(tiny_bugs)}}
    with pytest.raises(RequestError, match="SQLite cannot be shared by several worker processes"):
        parse_request({**base, "hpo": {"workers": 2, "storage": "sqlite:///s.db"}})
    with pytest.raises(RequestError, match="not a study URI"):
        parse_request({**base, "hpo": {"storage": "redis://x"}})
    plain = parse_request(base)
    assert not parallel.is_shared(plain) and plain.train is None  # requests without the new fields: as before
