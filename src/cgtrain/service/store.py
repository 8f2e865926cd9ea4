"""The persistent job queue and the token store over the service's tables.

A worker claims a job by writing its lease token into the row in one atomic statement (a
compare-and-set: the row must still be queued, or running with an expired lease); on
PostgreSQL the candidate is picked with SELECT ... FOR UPDATE SKIP LOCKED so workers do not
queue behind each other's row locks. Every later write of a running job names the lease
token, so a worker that lost its lease can no longer change the row.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Engine

from cgtrain.service.db import datasets, is_postgres, jobs, tokens

TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


# --- tokens --------------------------------------------------------------------------------
def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, tenant: str) -> str:
    """A new random token for `tenant`; only its SHA-256 is stored."""
    if not TENANT_RE.match(tenant):
        raise ValueError(f"tenant {tenant!r} is not a valid name: use 1-64 of a-z, 0-9, '-', '_' "
                         f"(starting with a letter or digit)")
    token = "cgt_" + secrets.token_urlsafe(32)  # 32 random bytes
    with engine.begin() as conn:
        conn.execute(insert(tokens).values(tenant=tenant, token_sha256=hash_token(token), created_at=time.time(),
                                           revoked=False))
    return token


def tenant_of(engine: Engine, token: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(tokens.c.tenant).where(tokens.c.token_sha256 == hash_token(token),
                                                          tokens.c.revoked.is_(False))).scalar()


# --- jobs: the API side -------------------------------------------------------------------
def submit(engine: Engine, tenant: str, request: dict, run_dir_of, time_limit_s: float) -> dict:
    """Insert a queued job; `run_dir_of(job_id)` names its run directory."""
    now = time.time()
    with engine.begin() as conn:
        job_id = conn.execute(insert(jobs).values(
            tenant=tenant, state="queued", request=json.dumps(request), run_dir="", time_limit_s=time_limit_s,
            cancel_requested=False, attempts=0, created_at=now).returning(jobs.c.id)).scalar_one()
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(run_dir=str(run_dir_of(job_id))))
    return get_job(engine, job_id)


def get_job(engine: Engine, job_id: int, tenant: str | None = None) -> dict | None:
    q = select(jobs).where(jobs.c.id == job_id)
    if tenant is not None:
        q = q.where(jobs.c.tenant == tenant)
    with engine.connect() as conn:
        row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def list_jobs(engine: Engine, tenant: str, limit: int, offset: int) -> tuple[list[dict], int]:
    with engine.connect() as conn:
        rows = conn.execute(select(jobs).where(jobs.c.tenant == tenant).order_by(jobs.c.id.desc())
                            .limit(limit).offset(offset)).mappings().all()
        total = conn.execute(select(func.count()).select_from(jobs).where(jobs.c.tenant == tenant)).scalar_one()
    return [dict(r) for r in rows], total


def count_active(engine: Engine, tenant: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs).where(
            jobs.c.tenant == tenant, jobs.c.state.in_(ACTIVE))).scalar_one()


def recent_submissions(engine: Engine, tenant: str, window_s: float) -> list[float]:
    with engine.connect() as conn:
        return list(conn.execute(select(jobs.c.created_at).where(
            jobs.c.tenant == tenant, jobs.c.created_at > time.time() - window_s)
            .order_by(jobs.c.created_at)).scalars())


def request_cancel(engine: Engine, job_id: int, tenant: str) -> dict | None:
    """A queued job is cancelled at once; a running one at its next trial boundary."""
    now = time.time()
    with engine.begin() as conn:
        mine = and_(jobs.c.id == job_id, jobs.c.tenant == tenant)
        conn.execute(update(jobs).where(mine, jobs.c.state == "queued")
                     .values(state="cancelled", finished_at=now, cancel_requested=True, error="cancelled by the caller"))
        conn.execute(update(jobs).where(mine, jobs.c.state == "running").values(cancel_requested=True))
    return get_job(engine, job_id, tenant)


def tenant_models(engine: Engine, tenant: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(jobs.c.id, jobs.c.model).where(
            jobs.c.tenant == tenant, jobs.c.model.is_not(None)).order_by(jobs.c.id)).all()
    models: dict[str, dict] = {}
    for job_id, raw in rows:
        m = json.loads(raw)
        entry = models.setdefault(m["name"], {"name": m["name"], "request_name": m.get("request_name"),
                                              "versions": [], "aliases": {}})
        entry["versions"].append({"version": m.get("version"), "job_id": job_id, "alias": m.get("alias")})
        if m.get("alias"):
            entry["aliases"][m["alias"]] = m.get("version")  # as recorded when the job registered it
    return list(models.values())


# --- datasets -------------------------------------------------------------------------------
def add_dataset(engine: Engine, tenant: str, sha256: str, rel_path: str, size: int) -> None:
    with engine.begin() as conn:
        exists = conn.execute(select(datasets.c.id).where(datasets.c.tenant == tenant,
                                                           datasets.c.sha256 == sha256)).first()
        if not exists:
            conn.execute(insert(datasets).values(tenant=tenant, sha256=sha256, path=rel_path, size=size,
                                                 created_at=time.time()))


def dataset_path(engine: Engine, tenant: str, sha256: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(datasets.c.path).where(datasets.c.tenant == tenant,
                                                          datasets.c.sha256 == sha256)).scalar()


# --- jobs: the worker side -----------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    job_id: int
    token: str
    attempt: int
    run_dir: str


def new_lease_token(worker: str) -> str:
    return f"{worker}:{uuid.uuid4().hex[:12]}"


def _claimable(now: float):
    return or_(jobs.c.state == "queued", and_(jobs.c.state == "running", jobs.c.lease_expires < now))


def reap(engine: Engine, max_attempts: int) -> None:
    """Jobs whose worker died: cancelled ones end cancelled; ones that killed too many workers fail."""
    now = time.time()
    expired = and_(jobs.c.state == "running", jobs.c.lease_expires < now)
    with engine.begin() as conn:
        conn.execute(update(jobs).where(expired, jobs.c.cancel_requested.is_(True)).values(
            state="cancelled", finished_at=now, lease_owner=None, error="cancelled (its worker stopped)"))
        conn.execute(update(jobs).where(expired, jobs.c.attempts >= max_attempts).values(
            state="failed", finished_at=now, lease_owner=None,
            error=f"its worker stopped {max_attempts} times while running it; not retried"))


def claim(engine: Engine, worker: str, lease_s: float) -> Lease | None:
    """Atomically take the oldest claimable job with a fresh lease, or None."""
    now, token = time.time(), new_lease_token(worker)
    values = dict(state="running", lease_owner=token, lease_expires=now + lease_s, heartbeat_at=now,
                  attempts=jobs.c.attempts + 1, started_at=func.coalesce(jobs.c.started_at, now))
    with engine.begin() as conn:
        pick = select(jobs.c.id).where(_claimable(now)).order_by(jobs.c.id).limit(1)
        if is_postgres(engine):
            job_id = conn.execute(pick.with_for_update(skip_locked=True)).scalar()
            if job_id is None:
                return None
            target = jobs.c.id == job_id
        else:  # one UPDATE statement: SQLite runs it under its write lock
            target = jobs.c.id == pick.scalar_subquery()
        row = conn.execute(update(jobs).where(target, _claimable(now)).values(**values)
                           .returning(jobs.c.id, jobs.c.attempts, jobs.c.run_dir)).first()
    return Lease(row[0], token, row[1], row[2]) if row else None


def _mine(lease: Lease):
    return and_(jobs.c.id == lease.job_id, jobs.c.lease_owner == lease.token, jobs.c.state == "running")


def heartbeat(engine: Engine, lease: Lease, lease_s: float) -> bool:
    """Extend the lease; False when it was lost (expired and taken, or the job ended)."""
    now = time.time()
    with engine.begin() as conn:
        res = conn.execute(update(jobs).where(_mine(lease)).values(lease_expires=now + lease_s, heartbeat_at=now))
    return res.rowcount == 1


def set_progress(engine: Engine, lease: Lease, progress: dict) -> dict | None:
    """Record progress; returns {'cancel': bool} or None when the lease is no longer ours."""
    with engine.begin() as conn:
        res = conn.execute(update(jobs).where(_mine(lease)).values(progress=json.dumps(progress)))
        if res.rowcount != 1:
            return None
        cancel = conn.execute(select(jobs.c.cancel_requested).where(jobs.c.id == lease.job_id)).scalar()
    return {"cancel": bool(cancel)}


def finish(engine: Engine, lease: Lease, state: str, **fields: Any) -> bool:
    """Write a terminal state if the lease is still ours."""
    assert state in TERMINAL
    values = {k: (json.dumps(v) if k in ("metrics", "model", "progress") and v is not None else v)
              for k, v in fields.items()}
    with engine.begin() as conn:
        res = conn.execute(update(jobs).where(_mine(lease)).values(
            state=state, finished_at=time.time(), lease_owner=None, lease_expires=None, **values))
    return res.rowcount == 1


def release(engine: Engine, lease: Lease) -> bool:
    """Give a running job back to the queue (worker shutting down); the next claim resumes it."""
    with engine.begin() as conn:
        res = conn.execute(update(jobs).where(_mine(lease)).values(state="queued", lease_owner=None,
                                                                   lease_expires=None))
    return res.rowcount == 1
