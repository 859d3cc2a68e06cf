"""The web app: ``GET /`` (the page), ``POST /v1/derain``, ``GET /v1/models``, ``GET /v1/health``.

``POST /v1/derain`` takes multipart form data: ``image`` (the file, required) and optionally ``model``
(a name from ``/v1/models``) and ``format`` (``png``: the derained image as ``image/png``, the default;
``json``: the derained image and the rain layer as base64 PNGs plus timing). Errors are JSON
``{"error": ...}`` with 400 (empty or missing upload, unknown model), 401 (no or a wrong token), 413 (too
many bytes or pixels), 415 (not an image) or 422 (a form without an ``image`` file field).

With ``ServeConfig.token`` set, every ``/v1/`` request but ``/v1/health`` needs ``Authorization: Bearer
TOKEN`` (compared in constant time); the page takes the token from its address (``/#token=TOKEN``). No
CORS headers unless ``cors_origins`` names origins. Every response carries an ``X-Request-Id``, and one
access-log line per request (logger ``sian.serve.access``: id, method, path, status, bytes, duration,
model) records no image content.
"""

from __future__ import annotations

import base64
import hmac
import io
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.datastructures import UploadFile

from .. import __version__
from ..explain import rain_layer
from ..hub import WEIGHTS, load_model, weights_dir
from ..inference import DEFAULT_MODEL, Pipeline
from ..io import ImageReadError, ImageTooLargeError, encode_picture, quantize, read_picture
from ..weights import WeightsError

__all__ = ["ServeConfig", "check_exposure", "create_app", "is_loopback", "run_server"]

access_log = logging.getLogger("sian.serve.access")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server to this machine (127.0.0.0/8, ::1, localhost).

    Examples:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0"), is_loopback("::")
        (True, True, False, False)
    """
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PAGE = Path(__file__).with_name("index.html")


@dataclass
class ServeConfig:
    models: list[str] = field(default_factory=list)  # offered models; empty: bundled + installed ones
    default_model: str = DEFAULT_MODEL
    max_upload_bytes: int = 25 * 1024**2
    max_pixels: int = 24_000_000
    tile: int | None = None
    precision: str = "auto"  # sian.precision: bf16 where native, fp16 on older tensor-core GPUs, else fp32
    # Admission: `slots` derains run at once, `queue` more uploads may wait for one (at most `queue_timeout`
    # seconds); beyond that a derain request gets 503 + Retry-After before its body is read or decoded.
    slots: int = 1
    queue: int = 4
    queue_timeout: float = 60.0
    token: str | None = None  # required on /v1/ (but /v1/health) when set
    cors_origins: list[str] = field(default_factory=list)  # browser origins allowed to call the API


def available_models() -> list[str]:
    """Bundled weights plus every registered or user file installed in the weights folder."""
    names = [name for name, entry in WEIGHTS.items() if entry.bundled]
    folder = weights_dir()
    if folder.is_dir():
        names += sorted(p.stem for p in folder.glob("*.safetensors") if p.stem not in names)
    return names


def _logged(request: Request, response: Response, request_id: str, start: float) -> Response:
    response.headers["X-Request-Id"] = request_id
    access_log.info(
        "%s %s %s %d %s bytes %.1f ms model=%s", request_id, request.method, request.url.path, response.status_code,
        response.headers.get("content-length", "-"), 1000 * (time.perf_counter() - start),
        response.headers.get("x-sian-model", "-"),
    )  # fmt: skip
    return response


class _Error(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class _Admission:
    """Counts derain requests admitted (running or queued) and estimates when to come back.

    Touched only from the event loop (the middleware), so a plain counter is safe; the derain slots
    themselves are a semaphore taken in the worker thread, with the queue timeout.
    """

    def __init__(self, slots: int, queue: int):
        self.slots, self.limit, self.admitted = slots, slots + queue, 0
        self.running = threading.BoundedSemaphore(slots)
        self.mean_seconds = 1.0  # running mean of a derain, for Retry-After

    def retry_after(self) -> str:
        return str(max(1, round(self.mean_seconds * self.admitted / self.slots)))

    def record(self, seconds: float) -> None:
        self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * seconds


async def _discard_body(request: Request, limit: int) -> None:
    """Read and drop what the client sends (up to ``limit`` bytes), so a refusal closes the connection cleanly."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            break


def create_app(config: ServeConfig | None = None) -> FastAPI:
    config = config or ServeConfig()
    models = config.models or available_models()
    if config.default_model not in models:
        models = [config.default_model, *models]
    cache: dict[str, Pipeline] = {}
    admission = _Admission(max(1, config.slots), max(0, config.queue))
    app = FastAPI(title="sian", version=__version__, docs_url="/docs", redoc_url=None)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization"])  # fmt: skip

    @app.middleware("http")
    async def _guard_and_log(request: Request, call_next) -> Response:
        request_id = uuid.uuid4().hex[:12]
        start = time.perf_counter()
        if config.token and request.url.path.startswith("/v1/") and request.url.path != "/v1/health":
            offered = request.headers.get("authorization", "")
            scheme, _, value = offered.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), config.token.encode()):
                response: Response = JSONResponse(
                    {"error": "this server needs a token: send 'Authorization: Bearer TOKEN'"}, status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
                return _logged(request, response, request_id, start)
        derain = request.method == "POST" and request.url.path == "/v1/derain"
        if derain and admission.admitted >= admission.limit:
            await _discard_body(request, config.max_upload_bytes + 64 * 1024)
            busy = JSONResponse(
                {"error": f"busy: {admission.admitted} requests running or queued; retry later"}, status_code=503,
                headers={"Retry-After": admission.retry_after()},
            )  # fmt: skip
            return _logged(request, busy, request_id, start)
        admission.admitted += derain
        try:
            response = await call_next(request)
        finally:
            admission.admitted -= derain
        return _logged(request, response, request_id, start)

    @app.exception_handler(_Error)
    async def _error(_request: Request, exc: _Error) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {exc.errors()}"}, status_code=422)

    def model_for(name: str) -> Pipeline:
        if name not in models:
            raise _Error(400, f"unknown model {name!r}; available: {', '.join(models)}")
        if name not in cache:
            try:
                cache[name] = Pipeline(load_model(name), tile=config.tile, precision=config.precision)
            except WeightsError as exc:
                raise _Error(400, f"model {name!r} cannot be loaded: {exc}") from None
        return cache[name]

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/v1/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__, "models": models, "default_model": config.default_model}

    @app.get("/v1/models")
    def list_models() -> dict:
        return {"models": models, "default": config.default_model}

    @app.post("/v1/derain")
    async def derain(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_upload_bytes + 64 * 1024:
            # Read and drop a moderate excess so the client sees the answer, not a reset connection.
            await _discard_body(request, 4 * config.max_upload_bytes + 1024**2)
            raise _Error(413, f"upload of {int(length):,} bytes exceeds the limit of {config.max_upload_bytes:,}")
        form = await request.form(max_part_size=config.max_upload_bytes + 1)
        upload = form.get("image")
        if upload is None:
            fields = ", ".join(sorted(form.keys())) or "none"
            raise _Error(422, f"send the image as a multipart file field named 'image' (got fields: {fields})")
        if not isinstance(upload, UploadFile):
            raise _Error(422, "the 'image' field must be a file upload, not a text value")
        data = await upload.read(config.max_upload_bytes + 1)
        if not data:
            raise _Error(400, "the uploaded file is empty")
        if len(data) > config.max_upload_bytes:
            raise _Error(413, f"upload exceeds the limit of {config.max_upload_bytes:,} bytes")
        name = str(form.get("model") or config.default_model)
        answer = str(form.get("format") or "png")
        if answer not in ("png", "json"):
            raise _Error(400, f"format must be png or json, got {answer!r}")
        model = model_for(name)
        return await _run(data, upload.filename or "upload", name, model, answer)

    async def _run(data: bytes, filename: str, name: str, pipeline: Pipeline, answer: str) -> Response:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_derain_bytes, data, filename, name, pipeline, answer)

    def _derain_bytes(data: bytes, filename: str, name: str, pipeline: Pipeline, answer: str) -> Response:
        # Decoding waits for a slot too: a queued request holds its upload's bytes, never a decoded image.
        if not admission.running.acquire(timeout=config.queue_timeout):
            raise _Error(503, f"busy: waited {config.queue_timeout:g} s for a free slot; retry later",
                         {"Retry-After": admission.retry_after()})  # fmt: skip
        try:
            try:  # decoded from memory: an upload never touches the disk
                picture = read_picture(data, max_pixels=config.max_pixels, name=filename)
            except ImageTooLargeError as exc:
                raise _Error(413, str(exc).replace("--max-pixels", "sian serve --max-pixels")) from None
            except ImageReadError as exc:
                raise _Error(415, str(exc)) from None
            start = time.perf_counter()
            try:
                result, output = pipeline.picture(picture)
            except RuntimeError as exc:  # NaN/inf from the model
                raise _Error(500, str(exc)) from None
            seconds = time.perf_counter() - start
            admission.record(seconds)
        finally:
            admission.running.release()
        png = encode_picture(result, "PNG")
        headers = {"X-Sian-Model": name, "X-Sian-Seconds": f"{seconds:.3f}"}
        if answer == "png":
            stem = Path(filename).stem or "image"
            headers["Content-Disposition"] = f'attachment; filename="{stem}_derained.png"'
            return Response(png, media_type="image/png", headers=headers)
        rain = rain_layer(picture.to_tensor(), output)
        buffer = io.BytesIO()
        Image.fromarray(quantize(rain)).save(buffer, format="PNG")
        return JSONResponse({
            "model": name, "seconds": seconds, "width": picture.rgb.shape[1], "height": picture.rgb.shape[0],
            "derained_png": base64.b64encode(png).decode("ascii"),
            "rain_layer_png": base64.b64encode(buffer.getvalue()).decode("ascii"),
        }, headers=headers)  # fmt: skip

    return app


def check_exposure(host: str, token: str | None, no_auth: bool = False) -> None:
    """Refuse (``ValueError``) to serve beyond this machine without a token, unless ``no_auth`` says so.

    Examples:
        >>> check_exposure("127.0.0.1", None)  # this machine only: no token needed
        >>> check_exposure("0.0.0.0", None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: --host 0.0.0.0 exposes the server beyond this machine: give a --token ...
        >>> check_exposure("0.0.0.0", None, no_auth=True)  # the user's choice
    """
    if not is_loopback(host) and not token and not no_auth:
        raise ValueError(f"--host {host} exposes the server beyond this machine: give a --token (or SIAN_TOKEN), "
                         "or pass --no-auth to let anyone who can reach it use it")  # fmt: skip


def run_server(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, no_auth: bool = False) -> None:
    """Serve the page and the API (``sian serve``) until SIGINT or SIGTERM, which stop it the way uvicorn does
    (requests in progress finish, new connections are refused) and then return, so the process exits 0
    (uvicorn's own handling re-raises the signal, killing the process with it). Logs each request to
    ``sian.serve.access``.

    Raises:
        ValueError: ``host`` exposes the server beyond this machine without a token, unless ``no_auth``.
    """
    import contextlib
    import signal

    import uvicorn

    check_exposure(host, config.token, no_auth)
    access_log.setLevel(logging.INFO)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host=host, port=port, log_level="warning"))

    @contextlib.contextmanager
    def graceful_exit():
        previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    server.capture_signals = graceful_exit
    server.run()
