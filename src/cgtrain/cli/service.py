"""`cgtrain serve`, `cgtrain worker`, `cgtrain token create`: training as a service.

Registered on the main `cgtrain` command by `register(app)`; also runnable alone as
`python -m cgtrain.cli.service ...` (the same commands, without the rest of the CLI).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

EXIT_USAGE = 2


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _engine(db: str):
    from sqlalchemy.exc import ArgumentError, OperationalError

    from sqlalchemy.engine import make_url

    from cgtrain.service import db as service_db

    try:
        shown = make_url(db).render_as_string(hide_password=True)
    except ArgumentError:
        shown = db
    try:
        engine = service_db.make_engine(db)
        service_db.migrate(engine)
        return engine
    except ArgumentError:
        _fail(f"--db {shown!r} is not a database URI; use sqlite:///path/jobs.db or postgresql://user@host/db")
    except (OperationalError, ModuleNotFoundError) as exc:
        _fail(f"--db {shown!r}: cannot open the database ({' '.join(str(exc).split())[:300]})")


def serve(host: str = typer.Option("127.0.0.1", "--host"),
          port: int = typer.Option(8080, "--port"),
          db: str = typer.Option("sqlite:///jobs.db", "--db", help="sqlite:///path.db or postgresql://user@host/db"),
          data_root: Path = typer.Option(..., "--data-root", help="datasets named in requests are resolved in here; "
                                                                  "uploads are stored here"),
          workers: int = typer.Option(1, "--workers", min=0, help="worker processes to run beside the API"),
          runs_dir: Path = typer.Option(Path("runs/service"), "--runs-dir", help="job run directories go here"),
          max_body_kb: int = typer.Option(1024, "--max-body-kb", min=1, help="largest JSON body (413 above)"),
          max_upload_mb: int = typer.Option(200, "--max-upload-mb", min=1, help="largest dataset upload"),
          max_active_jobs: int = typer.Option(4, "--max-active-jobs", min=1, help="queued + running jobs per tenant"),
          rate_per_minute: int = typer.Option(30, "--rate-per-minute", min=1, help="submissions per tenant a minute"),
          job_time_limit_s: float = typer.Option(3600, "--job-time-limit-s", min=1, help="a job is stopped after "
                                                                                         "this; caps hpo.budget_s"),
          lease_s: float = typer.Option(30, "--lease-s", min=0.5, help="worker lease; renewed every third of it"),
          poll_s: float = typer.Option(0.5, "--poll-s", min=0.05, help="how often an idle worker looks for a job"),
          tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store for the jobs"),
          no_track: bool = typer.Option(False, "--no-track", help="do not log jobs to MLflow"),
          ) -> None:
    """Run the REST job API (and --workers worker processes)."""
    import uvicorn

    from cgtrain.service.api import ServiceConfig, create_app

    if not data_root.is_dir():
        _fail(f"--data-root {data_root} is not a directory; create it or point at your datasets")
    _engine(db)
    config = ServiceConfig(db_uri=db, data_root=data_root.resolve(), runs_dir=runs_dir.resolve(),
                           max_body_bytes=max_body_kb << 10, max_upload_bytes=max_upload_mb << 20,
                           max_active_jobs=max_active_jobs, rate_per_minute=rate_per_minute,
                           job_time_limit_s=job_time_limit_s)
    app = create_app(config)
    args = ["--db", db, "--lease-s", str(lease_s), "--poll-s", str(poll_s)]
    args += ["--no-track"] if no_track else (["--tracking-uri", tracking_uri] if tracking_uri else [])
    procs = [_spawn_worker(args) for _ in range(workers)]
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # a running job is given back to the queue
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _spawn_worker(args: list[str]) -> subprocess.Popen:
    def die_with_server() -> None:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    return subprocess.Popen([sys.executable, "-m", "cgtrain.cli.service", "worker", *args],
                            preexec_fn=die_with_server, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def worker(db: Optional[str] = typer.Option(None, "--db", help="the service's database URI"),
           study: Optional[str] = typer.Option(None, "--study", help="join a parallel study instead: journal:PATH "
                                                                     "or postgresql://user@host/db"),
           run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="with --study: where trial files go"),
           study_name: Optional[str] = typer.Option(None, "--study-name", help="with --study: which study (needed "
                                                                               "when the storage holds several)"),
           lease_s: float = typer.Option(30, "--lease-s", min=0.5, help="lease; renewed every third of it"),
           poll_s: float = typer.Option(0.5, "--poll-s", min=0.05, help="how often to look for a job when idle"),
           max_attempts: int = typer.Option(5, "--max-attempts", min=1, help="a job whose worker died this "
                                                                             "often fails"),
           tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store for the jobs"),
           no_track: bool = typer.Option(False, "--no-track", help="do not log jobs to MLflow"),
           job_memory_mb: Optional[int] = typer.Option(None, "--job-memory-mb", min=64, help="address-space "
                                                                                             "limit per job"),
           max_jobs: Optional[int] = typer.Option(None, "--max-jobs", min=1, help="exit after this many jobs"),
           idle_exit_s: Optional[float] = typer.Option(None, "--idle-exit-s", help="exit after idling this long"),
           ) -> None:
    """Claim and run queued jobs (any number of workers, on this or another machine).

    With --study URI --run-dir DIR: run trials of a parallel study (hpo.workers / hpo.storage) instead."""
    if study is not None:
        _study_worker(study, run_dir, study_name)
    if db is None:
        _fail("give --db URI (the job queue) or --study URI --run-dir DIR (a parallel study)")
    from cgtrain.service.worker import WorkerConfig, run_worker

    _engine(db)
    raise typer.Exit(run_worker(WorkerConfig(
        db_uri=db, lease_s=lease_s, poll_s=poll_s, max_attempts=max_attempts, track=not no_track,
        tracking_uri=tracking_uri, memory_mb=job_memory_mb, max_jobs=max_jobs, idle_exit_s=idle_exit_s)))


def _study_worker(study: str, run_dir: Optional[Path], study_name: Optional[str]) -> None:
    from cgtrain.errors import RunDirError
    from cgtrain.tune.study_worker import work

    if run_dir is None:
        _fail("--study needs --run-dir DIR (trial files are written there)")
    try:
        ran = work(study, run_dir, study_name, say=lambda m: typer.echo(m, err=True))
    except RunDirError as exc:
        _fail(str(exc))
    typer.echo(f"ran {ran} trial(s)", err=True)
    raise typer.Exit(0)


token_app = typer.Typer(no_args_is_help=True, help="API tokens of the job service.")


@token_app.command("create")
def token_create(tenant: str = typer.Option(..., "--tenant", help="tenant the token acts for"),
                 db: str = typer.Option(..., "--db", help="the service's database URI")) -> None:
    """Print a new API token for TENANT (only its SHA-256 is stored: keep it)."""
    from cgtrain.service import store

    engine = _engine(db)
    try:
        token = store.create_token(engine, tenant)
    except ValueError as exc:
        _fail(f"--tenant: {exc}")
    typer.echo(f"token for tenant {tenant} (shown once):", err=True)
    typer.echo(token)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
    app.add_typer(token_app, name="token")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="cgtrain's job service.")
register(app)

if __name__ == "__main__":
    app()
