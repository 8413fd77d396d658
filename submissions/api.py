"""The submission API for scripts (FastAPI), served next to the site by `mtlb api`.

- `POST /api/submissions`: the token in `Authorization: Bearer <token>`, the
  spec file as the body (`Content-Type: application/json` for JSON, anything
  else is read as YAML; `X-Spec-Filename` names it in problem lines).  201 with
  the stored submission, or a refusal `{"error": one line, "problems": [...]}`
  (401 token, 413 size, 422 problems, 409 duplicate, 429 quota or throttled).
- `GET /api/submissions/{id}`: its jobs' states, its runs' Δm and, once
  ranked, the mean Δm of its original campaign.
- `GET /api/openapi.json`: the OpenAPI description.

Writes go through `submissions.intake.submit_spec` only; reads through the
read-only engine.  No answer carries a traceback, a server path or the token.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from db.session import database_url
from submissions import intake

log = logging.getLogger("mtlb.api")
SITE_URL_VARIABLE = "MTLB_SITE_URL"


class Refusal(BaseModel):
    error: str
    problems: list[str] = []
    existing_id: int | None = None


class StoredSubmission(BaseModel):
    id: int
    name: str
    spec_hash: str
    submitter: str
    jobs_queued: int
    queue_position: int
    api_url: str
    page: str


class SubmissionState(BaseModel):
    id: int
    name: str
    spec_hash: str
    submitter: str
    benchmark: str
    protocol_version: int
    submitted_at: str
    queue_position: int | None
    jobs: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    delta_m: dict[str, float] | None


def _refusal(refused: intake.Refused) -> JSONResponse:
    body = Refusal(error=refused.reason, problems=refused.problems, existing_id=refused.existing_id)
    return JSONResponse(body.model_dump(), status_code=refused.status)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def create_app(url: str | None = None, throttle: intake.Throttle | None = None) -> FastAPI:
    """The API on the database at `url` (default: `$MTLB_DATABASE_URL`, as every command)."""
    db_url = database_url(url)
    guard = throttle or intake.Throttle()
    site = os.environ.get(SITE_URL_VARIABLE, "").rstrip("/")
    app = FastAPI(
        title="MTL Leaderboard submission API",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        # The server's log keeps the traceback; the client gets one line without paths.
        log.error("request failed: %s", type(exc).__name__, exc_info=exc)
        return JSONResponse({"error": "internal error; nothing stored"}, 500)

    @app.post(
        "/api/submissions",
        status_code=201,
        response_model=StoredSubmission,
        responses={c: {"model": Refusal} for c in (401, 409, 413, 422, 429)},
        summary="Validate, store and queue a spec file (the request body)",
    )
    async def post_submission(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_spec_filename: Annotated[str | None, Header()] = None,
    ) -> Any:
        client = request.client.host if request.client else "unknown"
        waiting = guard.refusal(client)
        if waiting is not None:
            return _refusal(waiting)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > intake.MAX_BYTES:
            return _refusal(intake.Refused(
                f"spec is {declared} bytes; the limit is {intake.MAX_BYTES}; nothing stored", 413
            ))  # fmt: skip
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > intake.MAX_BYTES:  # stop reading: never hold more than the limit
                return _refusal(intake.Refused(
                    f"spec is over {intake.MAX_BYTES} bytes; the limit is {intake.MAX_BYTES};"
                    " nothing stored", 413,
                ))  # fmt: skip
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        default_name = "spec.json" if kind == "application/json" else "spec.yaml"
        result = await run_in_threadpool(
            intake.submit_spec, db_url, _bearer(authorization),
            x_spec_filename or default_name, bytes(body),
        )  # fmt: skip
        if isinstance(result, intake.Refused):
            if result.status == 401 and authorization:
                guard.failed(client)
            return _refusal(result)
        path = f"/api/submissions/{result.submission_id}"
        return JSONResponse(
            StoredSubmission(
                id=result.submission_id,
                name=result.name,
                spec_hash=result.spec_hash,
                submitter=result.submitter,
                jobs_queued=result.jobs_queued,
                queue_position=result.queue_position,
                api_url=path,
                page=f"{site}/submission?submission={result.submission_id}",
            ).model_dump(),
            status_code=201,
        )

    @app.get(
        "/api/submissions/{submission_id}",
        response_model=SubmissionState,
        responses={404: {"model": Refusal}},
        summary="A submission's state, jobs and Δm",
    )
    async def get_submission(submission_id: int) -> Any:
        state = await run_in_threadpool(intake.submission_state, db_url, submission_id)
        if state is None:
            return JSONResponse({"error": f"no submission #{submission_id}"}, 404)
        return state

    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory submissions.api:app_from_env` (used by `mtlb api`)."""
    return create_app()
