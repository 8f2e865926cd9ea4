"""The queue's own guarantees, in-process: migrations run once; one claim wins; a lost lease writes nothing."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from cgtrain.service import db, store
from helpers.services import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    admin = None
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'q.db'}"
    else:
        admin, name, uri = postgres_database()
    eng = db.make_engine(uri)
    yield eng
    eng.dispose()
    if admin is not None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_migrations_run_once_even_when_started_together(engine):
    errors = []

    def migrate() -> None:
        try:
            db.migrate(engine)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.migrate(engine) == db.LATEST == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.schema_version)).scalar_one() == 1


def test_one_claim_wins_and_a_lost_lease_changes_nothing(engine, tmp_path):
    db.migrate(engine)
    job = store.submit(engine, "acme", {"name": "x"}, lambda i: tmp_path / f"job-{i}", 60)
    wins, barrier = [], threading.Barrier(6)

    def claimer(i: int) -> None:
        barrier.wait()
        lease = store.claim(engine, f"w{i}", lease_s=0.5)
        if lease is not None:
            wins.append(lease)
    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and wins[0].job_id == job["id"] and wins[0].attempt == 1
    first = wins[0]
    assert store.claim(engine, "late", lease_s=5) is None  # the lease is live
    time.sleep(0.6)
    second = store.claim(engine, "next", lease_s=5)  # expired: taken over
    assert second is not None and second.attempt == 2 and second.token != first.token
    assert not store.heartbeat(engine, first, 5)
    assert store.set_progress(engine, first, {"trials_done": 9}) is None
    assert not store.finish(engine, first, "succeeded")
    assert store.set_progress(engine, second, {"trials_done": 1}) == {"cancel": False}
    assert store.finish(engine, second, "succeeded", metrics={"test": {}})
    row = store.get_job(engine, job["id"])
    assert row["state"] == "succeeded" and row["attempts"] == 2 and row["progress"] == '{"trials_done": 1}'
