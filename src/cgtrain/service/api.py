"""The REST job API (FastAPI): jobs, their events and artifacts, datasets, models, the jobs page.

Every /v1 route needs `Authorization: Bearer TOKEN`; the jobs page and the artifact links on it
may use the cookie set by the page's sign-in form instead (GET only). Another tenant's job is a
404, the same as a missing one.
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cgtrain.service import db, store
from cgtrain.service.paths import SHA_RE, UPLOAD_FORMATS, PathRefused, artifact_file, resolve_in_root, store_upload

COOKIE = "cgtrain_token"
RATE_WINDOW_S = 60.0
MAX_ID = 2**63 - 1  # SQLite and PostgreSQL integers are 64-bit: a larger id or offset cannot be bound to a query


@dataclass(frozen=True)
class ServiceConfig:
    db_uri: str
    data_root: Path
    runs_dir: Path
    max_body_bytes: int = 1 << 20  # JSON bodies
    max_upload_bytes: int = 200 << 20  # POST /v1/datasets
    max_active_jobs: int = 4  # per tenant, queued + running
    rate_per_minute: int = 30  # submissions per tenant
    job_time_limit_s: float = 3600.0  # per job, all attempts; hpo.budget_s is capped to it


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: dict[str, Any]
    time_limit_s: float | None = Field(default=None, gt=0)


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def job_view(row: dict) -> dict:
    request = json.loads(row["request"])
    return {
        "id": row["id"], "state": row["state"], "name": request.get("name"),
        "progress": json.loads(row["progress"]) if row["progress"] else None,
        "metrics": json.loads(row["metrics"]) if row["metrics"] else None,
        "model": json.loads(row["model"]) if row["model"] else None,
        "error": row["error"], "attempts": row["attempts"], "cancel_requested": bool(row["cancel_requested"]),
        "time_limit_s": row["time_limit_s"],
        "created_at": iso(row["created_at"]), "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "links": {"self": f"/v1/jobs/{row['id']}", "events": f"/v1/jobs/{row['id']}/events",
                  "report": f"/v1/jobs/{row['id']}/artifacts/report.html"},
    }


class BodyLimit:
    """413 for a body over the limit, by Content-Length or by counting a chunked body. JSON bodies
    are read whole here (they are small); an upload streams to its handler, which counts too."""

    def __init__(self, app, max_body: int, max_upload: int):
        self.app, self.max_body, self.max_upload = app, max_body, max_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"] == "/v1/datasets"
        limit = self.max_upload if upload else self.max_body
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _too_large(send, limit)
        if upload or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await _too_large(send, limit)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()
        return await self.app(scope, replay, send)


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"detail": f"request body over the limit of {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(config: ServiceConfig) -> BodyLimit:
    """The FastAPI app (as `.app`) behind the body-size limit: an ASGI app for uvicorn."""
    engine = db.make_engine(config.db_uri)
    db.migrate(engine)
    config.runs_dir.mkdir(parents=True, exist_ok=True)
    threading.Thread(target=_warm_up, daemon=True).start()
    app = FastAPI(title="cgtrain service", version="1", description="Training jobs as a service: submit a "
                  "training request, follow it, fetch its report, metrics and model.")
    app.state.engine, app.state.config = engine, config
    tenant, own_job = _auth(engine)
    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "db": engine.dialect.name, "schema_version": db.current_version(engine)}

    _job_routes(app, engine, config, tenant, own_job)
    _stream_routes(app, engine, tenant, own_job)
    _data_routes(app, engine, config, tenant)
    _page_routes(app, engine)
    return BodyLimit(app, config.max_body_bytes, config.max_upload_bytes)


def _auth(engine):
    """(tenant, own_job): the bearer token's (or the page cookie's) tenant; a job of that tenant, else 404."""
    def tenant(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if token is None and request.method in ("GET", "HEAD"):
            token = request.cookies.get(COOKIE)
        name = store.tenant_of(engine, token) if token else None
        if name is None:
            raise HTTPException(401, "missing or invalid token: send 'Authorization: Bearer TOKEN' "
                                     "(make one with `cgtrain token create --tenant NAME --db URI`)",
                                headers={"WWW-Authenticate": "Bearer"})
        return name

    def own_job(job_id: int, name: str) -> dict:
        row = store.get_job(engine, job_id, name) if abs(job_id) <= MAX_ID else None  # no job id passes int64
        if row is None:
            raise HTTPException(404, f"no job {job_id}")
        return row

    return tenant, own_job


def _job_routes(app: FastAPI, engine, config: ServiceConfig, tenant, own_job) -> None:
    submit_lock = threading.Lock()  # the limit checks and the insert, as one step per server process

    @app.post("/v1/jobs", status_code=201)
    def submit(body: SubmitBody, name: str = Depends(tenant)) -> JSONResponse:
        limit = min(body.time_limit_s or config.job_time_limit_s, config.job_time_limit_s)
        request = _checked_request(engine, config, name, body.request, limit)
        with submit_lock:
            _check_limits(engine, config, name)
            row = store.submit(engine, name, request, lambda i: config.runs_dir.resolve() / name / f"job-{i:06d}",
                               limit)
        view = job_view(row)
        return JSONResponse(view, status_code=201, headers={"Location": view["links"]["self"]})

    @app.get("/v1/jobs")
    def list_jobs(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_ID),
                  name: str = Depends(tenant)) -> dict:
        rows, total = store.list_jobs(engine, name, limit, offset)
        return {"jobs": [job_view(r) for r in rows], "total": total, "limit": limit, "offset": offset,
                "next_offset": offset + limit if offset + limit < total else None}

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: int, name: str = Depends(tenant)) -> dict:
        return job_view(own_job(job_id, name))

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: int, name: str = Depends(tenant)) -> dict:
        own_job(job_id, name)
        return job_view(store.request_cancel(engine, job_id, name))


def _stream_routes(app: FastAPI, engine, tenant, own_job) -> None:
    @app.get("/v1/jobs/{job_id}/events")
    def events(job_id: int, timeout_s: float = Query(300, gt=0, le=3600), poll_s: float = Query(0.5, ge=0.1, le=10),
               name: str = Depends(tenant)) -> StreamingResponse:
        own_job(job_id, name)

        def stream():  # server-sent events: one `job` event per change, ends at a terminal state
            last, deadline = None, time.monotonic() + timeout_s
            while True:
                view = job_view(store.get_job(engine, job_id, name))
                key = (view["state"], json.dumps(view["progress"]), view["error"])
                if key != last:
                    last = key
                    yield f"event: job\ndata: {json.dumps(view)}\n\n"
                if view["state"] in store.TERMINAL:
                    yield "event: end\ndata: {}\n\n"
                    return
                if time.monotonic() > deadline:
                    yield "event: timeout\ndata: {}\n\n"
                    return
                time.sleep(poll_s)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/v1/jobs/{job_id}/artifacts/{artifact}")
    def artifact(job_id: int, artifact: str, name: str = Depends(tenant)) -> FileResponse:
        row = own_job(job_id, name)
        found = artifact_file(row["run_dir"], artifact)
        if found is None:
            raise HTTPException(404, f"job {job_id} has no artifact {artifact!r}")
        path, media = found
        headers = {"X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                                              "sandbox"}
        return FileResponse(path, media_type=media, headers=headers)


def _data_routes(app: FastAPI, engine, config: ServiceConfig, tenant) -> None:
    @app.post("/v1/datasets", status_code=201)
    async def upload(request: Request, format: str = Query(..., description="jsonl | jsonl.gz | csv | parquet"),
                     name: str = Depends(tenant)) -> dict:
        if format not in UPLOAD_FORMATS:
            raise HTTPException(422, f"format {format!r} is not one of {', '.join(UPLOAD_FORMATS)}")
        try:
            sha, rel, size = await store_upload(config.data_root, request.stream(), format, config.max_upload_bytes)
        except OverflowError:
            raise HTTPException(413, f"upload over the limit of {config.max_upload_bytes} bytes") from None
        store.add_dataset(engine, name, sha, rel, size)
        return {"sha256": sha, "size": size, "path": f"sha256:{sha}"}

    @app.get("/v1/models")
    def models(name: str = Depends(tenant)) -> dict:
        return {"models": store.tenant_models(engine, name)}


def _page_routes(app: FastAPI, engine) -> None:
    from cgtrain.service import page

    @app.get("/", response_class=HTMLResponse)
    def jobs_page(request: Request) -> HTMLResponse:
        token = request.cookies.get(COOKIE)
        name = store.tenant_of(engine, token) if token else None
        if name is None:
            return HTMLResponse(page.sign_in(), headers=page.HEADERS)
        rows, _ = store.list_jobs(engine, name, 200, 0)
        return HTMLResponse(page.jobs(name, [job_view(r) for r in rows]), headers=page.HEADERS)

    @app.post("/login")
    async def login(request: Request) -> RedirectResponse:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        if not token or store.tenant_of(engine, token) is None:
            return HTMLResponse(page.sign_in("unknown token"), status_code=401, headers=page.HEADERS)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/logout")
    def logout() -> RedirectResponse:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response


def _warm_up() -> None:
    """Validating a first request imports every model family (seconds): do it before one arrives."""
    from cgtrain.request import RequestError, parse_request

    try:
        parse_request({"name": "warm-up", "dataset": {"path": "warm-up.jsonl"}})
    except RequestError:
        pass


def _checked_request(engine, config: ServiceConfig, tenant: str, data: dict, time_limit_s: float) -> dict:
    """Resolve the request's paths inside the data root, validate it, cap its budget."""
    from cgtrain.request import RequestError, parse_request

    data = json.loads(json.dumps(data))
    dataset = data.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str):
        raise HTTPException(422, "dataset.path: missing; give a path under the data root or sha256:<upload>")
    try:
        dataset["path"] = str(_dataset_path(engine, config, tenant, dataset["path"]))
        if isinstance(dataset.get("labels_file"), str):
            dataset["labels_file"] = str(resolve_in_root(config.data_root, dataset["labels_file"],
                                                         "dataset.labels_file"))
        for i, cand in enumerate(data.get("candidates") or []):
            params = cand.get("params") if isinstance(cand, dict) else None
            if isinstance(params, dict) and isinstance(params.get("model_path"), str):
                params["model_path"] = str(resolve_in_root(config.data_root, params["model_path"],
                                                           f"candidates.{i}.params.model_path"))
    except PathRefused as exc:
        raise HTTPException(422, str(exc)) from None
    hpo = data.get("hpo")
    if isinstance(hpo, dict) and isinstance(hpo.get("budget_s"), (int, float)) and hpo["budget_s"] > time_limit_s:
        hpo["budget_s"] = time_limit_s  # the job is killed at its time limit anyway
    try:
        req = parse_request(data, "request")
    except RequestError as exc:
        raise HTTPException(422, "invalid request: " + "; ".join(exc.problems)) from None
    return req.model_dump(mode="json")


def _dataset_path(engine, config: ServiceConfig, tenant: str, value: str) -> Path:
    match = SHA_RE.match(value)
    if match:
        rel = store.dataset_path(engine, tenant, match.group(1))
        if rel is None:
            raise PathRefused(f"dataset.path {value!r}: no upload with this sha256 (POST /v1/datasets first)")
        return resolve_in_root(config.data_root, rel)
    return resolve_in_root(config.data_root, value)


def _check_limits(engine, config: ServiceConfig, tenant: str) -> None:
    active = store.count_active(engine, tenant)
    if active >= config.max_active_jobs:
        raise HTTPException(429, f"{active} jobs queued or running for tenant {tenant!r} (limit "
                                 f"{config.max_active_jobs}); wait for one to finish", headers={"Retry-After": "10"})
    recent = store.recent_submissions(engine, tenant, RATE_WINDOW_S)
    if len(recent) >= config.rate_per_minute:
        wait = max(1, math.ceil(recent[-config.rate_per_minute] + RATE_WINDOW_S - time.time()))
        raise HTTPException(429, f"over {config.rate_per_minute} submissions a minute for tenant {tenant!r}; "
                                 f"retry in {wait} s", headers={"Retry-After": str(wait)})
