"""The service's tables (SQLAlchemy Core) and their versioned migrations.

SQLite (embedded, the default) or PostgreSQL, chosen by URI. Migrations are a small versioned
table (`schema_version`) and a list of numbered steps run in order, each once: alembic would
bring a migration environment and script directory for what is, so far, one step.
Timestamps are epoch seconds (floats): comparable in both databases, no time-zone handling.
"""
from __future__ import annotations

import time

from sqlalchemy import (Boolean, Column, Float, Integer, MetaData, String, Table, Text, UniqueConstraint,
                        create_engine, event, insert, inspect, select, text)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("state", String(16), nullable=False, index=True),  # queued | running | succeeded | failed | cancelled
    Column("request", Text, nullable=False),  # JSON: the validated request, dataset path resolved
    Column("progress", Text),  # JSON: trials_done, trials_total, best, metric
    Column("metrics", Text),  # JSON: metrics.json of the run once it succeeded
    Column("model", Text),  # JSON: registered name, version, alias (when tracked)
    Column("error", Text),
    Column("run_dir", Text, nullable=False),
    Column("time_limit_s", Float, nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("lease_owner", String(96)),
    Column("lease_expires", Float),
    Column("heartbeat_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False, index=True),
    Column("started_at", Float),
    Column("finished_at", Float),
)

datasets = Table(
    "datasets", metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("path", Text, nullable=False),  # relative to the data root
    Column("size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("tenant", "sha256"),
)


def _v1(conn) -> None:
    for table in (tokens, jobs, datasets):
        table.create(conn, checkfirst=True)


MIGRATIONS = [(1, _v1)]  # (version, step): append new steps; never edit an applied one
LATEST = MIGRATIONS[-1][0]


def make_engine(uri: str) -> Engine:
    """An engine for `sqlite:///path` or `postgresql://...` (psycopg 3 driver)."""
    if uri.startswith("postgresql://") or uri.startswith("postgres://"):
        uri = "postgresql+psycopg://" + uri.split("://", 1)[1]
    if uri.startswith("sqlite"):
        engine = create_engine(uri, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # many processes: WAL readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()
        return engine
    return create_engine(uri, pool_pre_ping=True, pool_size=5, max_overflow=10)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def current_version(engine: Engine) -> int:
    if not inspect(engine).has_table("schema_version"):
        return 0
    with engine.connect() as conn:
        return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar() or 0


def migrate(engine: Engine, attempts: int = 20) -> int:
    """Bring the schema to LATEST; safe when several processes start at once. Returns the version."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                if is_postgres(engine):  # one migrator at a time
                    conn.execute(text("SELECT pg_advisory_xact_lock(716016)"))
                schema_version.create(conn, checkfirst=True)
                done = set(conn.execute(select(schema_version.c.version)).scalars())
                for version, step in MIGRATIONS:
                    if version not in done:
                        step(conn)
                        conn.execute(insert(schema_version).values(version=version, applied_at=time.time()))
            return current_version(engine)
        except (IntegrityError, OperationalError, ProgrammingError, DBAPIError) as exc:
            raced = isinstance(exc, (IntegrityError, ProgrammingError)) or any(
                word in str(exc) for word in ("locked", "already exists"))
            if not raced or attempt == attempts - 1:  # unreachable, or raced every time: say so
                raise
            time.sleep(0.1 * (attempt + 1))
    return current_version(engine)
