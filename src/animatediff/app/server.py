"""The FastAPI app: the HTTP API under `/api` and the page at `/`.

    POST /api/generate          a `GenerateRequest` → 202 {"id": …}; 422 naming a bad field, 404 for a model
                                name not in the lists, 429 when the queue is full
    GET  /api/jobs/{id}         {"state": queued|running|done|failed, "progress": 0..1, "error", "settings", …};
                                `?wait=S` answers once the job is done or failed, or after S seconds (at most 600)
    GET  /api/jobs/{id}/video   the output file (409 until the job is done)
    GET  /api/jobs/{id}/settings  the sidecar
    GET  /api/models            the model names by kind, and the limits
    GET  /openapi.json, /docs   the schema

With `auth` (user, password) or `token`, every route asks for it (HTTP Basic, or `Authorization: Bearer`);
the page has its own login for the same user.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from animatediff import __version__
from animatediff.app.catalog import Catalog, UnknownModel, scan
from animatediff.app.jobs import JobQueue, QueueFull, State, new_job_id
from animatediff.app.requests import AppSources, GenerateRequest, Limits, limit_errors, resolved_errors, to_request
from animatediff.errors import AnimateDiffError
from animatediff.planner import Planner, device_and_dtype

MAX_WAIT = 600.0  # seconds a `GET /api/jobs/{id}?wait=…` may hold its answer back


@dataclass(frozen=True)
class ServerOptions:
    """Where models come from and outputs go, the limits, the devices (one worker each), the queue's length,
    and the credentials (none: no authentication)."""

    outputs: Path
    models: Path | None = None
    limits: Limits = Limits()
    devices: tuple[str, ...] = ("cpu",)
    capacity: int = 8
    auth: tuple[str, str] | None = None
    token: str | None = None


def _unprocessable(errors: list[tuple[str, str]]) -> HTTPException:
    return HTTPException(
        422, [{"loc": ["body", *field.split(".")], "msg": message, "type": "value_error"} for field, message in errors]
    )


class App:
    """The state behind the routes and the page: the catalog, the queue, one `OutputMaker` per device."""

    def __init__(self, options: ServerOptions):
        from animatediff.generation import OutputMaker

        self.options = options
        self.outputs = Path(options.outputs).resolve()
        self.uploads = self.outputs / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.catalog: Catalog = scan(options.models)
        embeddings = None if options.models is None else Path(options.models).resolve() / "embeddings"
        self.embeddings = embeddings if embeddings is not None and embeddings.is_dir() else None
        self.sources, self.planner = AppSources(self.catalog, self.uploads, self.embeddings), Planner()
        self.makers = {device: OutputMaker(progress=False) for device in options.devices}
        self.jobs = JobQueue(self.outputs, list(options.devices), options.capacity, self._run)

    def _run(self, job, settings, device: str, on_progress) -> None:
        device, dtype, reason = device_and_dtype(device, "auto")
        settings = replace(settings, device=device, dtype=dtype, dtype_reason=reason)
        job.settings = settings.sidecar()
        self.makers[device].make(settings, on_step=on_progress)

    def submit(self, request: GenerateRequest):
        """Check and queue `request`: its job, or an `HTTPException` (422, 404, 429)."""
        errors = limit_errors(request, self.options.limits)
        if errors:
            raise _unprocessable(errors)
        job_id = new_job_id()
        output = self.outputs / f"{job_id}.{request.format}"
        try:
            device, dtype, reason = device_and_dtype(self.options.devices[0], "auto")  # the memory check's device
            run = {"device": device, "dtype": dtype, "dtype_reason": reason}
            planned = to_request(request)
            if self.embeddings is not None:  # the models folder's embeddings are words of every prompt
                planned = replace(planned, embeddings=(str(self.embeddings),))
            settings = self.planner.plan(planned, lambda sample: output, self.sources, **run)
        except UnknownModel as error:
            raise HTTPException(404, str(error)) from error
        except AnimateDiffError as error:
            raise _unprocessable([("settings", str(error))]) from error
        errors = resolved_errors(settings, self.options.limits)
        if errors:
            raise _unprocessable(errors)
        try:
            return self.jobs.submit(job_id, request.model_dump(), settings)
        except QueueFull as error:
            raise HTTPException(429, str(error)) from error

    def job(self, job_id: str):
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job


def _setter(loop: asyncio.AbstractEventLoop, event: asyncio.Event):
    """A function that sets `event` in `loop` from another thread (nothing once the loop has closed)."""

    def set_event() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(event.set)

    return set_event


def _authorize(options: ServerOptions):
    """A dependency that accepts the configured user (HTTP Basic) or token (Bearer), or anyone if neither is."""

    def check(request: Request) -> None:
        if options.auth is None and options.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and options.token is not None and secrets.compare_digest(value, options.token):
            return
        if scheme.lower() == "basic" and options.auth is not None:
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user = password = ""
            if secrets.compare_digest(f"{user}:{password}", ":".join(options.auth)):
                return
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Basic"})

    return check


def _error_handlers(api: FastAPI) -> None:
    """429 as plain text; 422 naming each bad field."""

    @api.exception_handler(HTTPException)
    async def plain_429(request: Request, error: HTTPException):
        if error.status_code == 429:
            return PlainTextResponse(str(error.detail), status_code=429)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        """422 naming each bad field; the values themselves are left out (NaN and infinities have no JSON)."""
        detail = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)


def create_app(options: ServerOptions, page: bool = True) -> FastAPI:
    """The FastAPI app (with the gradio page at `/` unless `page` is False)."""
    state = App(options)
    api = FastAPI(title="animatediff", version=__version__, description="Text to video with AnimateDiff.")
    api.state.animatediff = state
    guard = [Depends(_authorize(options))]

    _error_handlers(api)

    @api.post("/api/generate", status_code=202, dependencies=guard)
    def generate(request: GenerateRequest) -> dict:
        return {"id": state.submit(request).id}

    @api.get("/api/jobs/{job_id}", dependencies=guard)
    async def job(job_id: str, wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0) -> dict:
        found = state.job(job_id)
        if wait > 0 and not found.state.finished:  # the worker wakes this request: no thread held, no polling
            finished = asyncio.Event()
            forget = state.jobs.when_finished(job_id, _setter(asyncio.get_running_loop(), finished))
            try:
                await asyncio.wait_for(finished.wait(), wait)
            except TimeoutError:
                forget()  # a client asking again and again with short waits leaves nothing behind
        return found.record()

    @api.get("/api/jobs/{job_id}/video", dependencies=guard)
    def video(job_id: str):
        found = state.job(job_id)
        if found.state != State.DONE:
            raise HTTPException(409, f"job {job_id} is {found.state}; its video exists once it is done")
        return FileResponse(state.outputs / found.output, filename=found.output)

    @api.get("/api/jobs/{job_id}/settings", dependencies=guard)
    def settings(job_id: str) -> dict:
        return state.job(job_id).settings

    @api.get("/api/models", dependencies=guard)
    def models() -> dict:
        return {"models": state.catalog.listing(), "limits": asdict(options.limits)}

    if page:
        import gradio as gr

        from animatediff.app.page import THEME, build_page

        api = gr.mount_gradio_app(
            api,
            build_page(state),
            path="/",
            auth=options.auth,
            theme=THEME,
            allowed_paths=[str(state.outputs)],
            footer_links=[],
        )
    return api
