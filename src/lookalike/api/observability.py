"""Operability of every face: request ids, one JSON log line per request, ``/metrics``, ``/healthz``.

``install(app, runtime)`` adds, to the root app (so the mounted ``/v1`` and ``/v2`` faces are
covered too):

* ``RequestObservability``, an ASGI middleware: each request gets an id, the client's
  ``X-Request-ID`` when it is sane (1..128 of ``A-Z a-z 0-9 . _ : -``), else a fresh uuid4 hex;
  the response echoes it in ``X-Request-ID``. When the response is done, one JSON line goes to
  the ``lookalike.access`` logger (``request_id``, ``method``, ``path`` (never the query string:
  it carries ``/v2``'s key), ``route`` (the route template), ``face``, ``status``,
  ``latency_ms``, plus whatever the face added with ``annotate``), and the request is counted in
  ``lookalike_http_requests_total`` and ``lookalike_http_request_duration_seconds`` by method,
  route template and status.
* ``GET /metrics``: the Prometheus text format (``prometheus-client``) of the HTTP instruments,
  the service's (``service/metrics.py``: search latency by library, import counters, model
  inference time) and gauges read at scrape time: ``lookalike_library_images`` (the vectors in
  each library's index) and ``lookalike_creators`` per platform.
* ``GET /healthz``: ``{"status": "ok", "version": ...}`` while the process serves.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..runtime import Runtime
from ..service.creators.platforms import PLATFORMS
from ..service.metrics import LATENCY_BUCKETS, REGISTRY

access_log = logging.getLogger("lookalike.access")

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's request id is echoed only when it is this tame (it goes into log lines and headers).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The route label of a request no route matched (a 404): one series, not one per path tried.
UNMATCHED = "<unmatched>"
#: Path prefixes -> the face a request belongs to, first match wins.
FACES = (
    ("/api/v1/operators/image-search", "operator"), ("/api/v1/creators", "creators-admin"),
    ("/v1", "modash"), ("/v2", "constructor"),
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "lookalike_http_requests_total", "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"], registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "lookalike_http_request_duration_seconds", "HTTP request latency (until the response is sent), seconds.",
    ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)


def face_of(path: str) -> str:
    """The face a request path belongs to: ``operator``, ``creators-admin``, ``modash``,
    ``constructor``, else ``web`` (the page, docs, health and metrics)."""
    for prefix, face in FACES:
        if path == prefix or path.startswith(prefix + "/"):
            return face
    return "web"


def request_id(given: str | None) -> str:
    """The id of a request: ``given`` (the client's ``X-Request-ID``) when it matches
    ``SANE_REQUEST_ID``, else a fresh uuid4 as 32 hex digits."""
    return given if given is not None and SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def annotate(request: Request, **fields: Any) -> None:
    """Add ``fields`` to the request's access log line (JSON-serialisable values)."""
    request.scope.setdefault("state", {}).setdefault("log_fields", {}).update(fields)


def _route(scope: Scope, root_path: str) -> str:
    """The template of the route that answered (``/v1/ai/image-search``,
    ``/api/v1/operators/image-search/libraries/{name}``): the mounts' prefixes plus the route's
    path. Routing records both in the (shared) scope as it descends."""
    route = scope.get("route")
    prefix = str(scope.get("root_path", ""))[len(root_path):]
    if route is not None and hasattr(route, "path"):
        return prefix + route.path
    return f"{prefix}/*" if prefix else UNMATCHED


class RequestObservability:
    """ASGI middleware: request id, access log line and HTTP metrics for every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(REQUEST_ID_HEADER.lower().encode())
        rid = request_id(raw.decode("latin-1") if raw is not None else None)
        scope.setdefault("state", {})["request_id"] = rid
        root_path, path = str(scope.get("root_path", "")), scope["path"]
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope, root_path)
            labels = {"method": scope["method"], "route": route, "status": str(status)}
            HTTP_REQUESTS.labels(**labels).inc()
            HTTP_SECONDS.labels(**labels).observe(elapsed)
            entry: dict[str, Any] = {
                "request_id": rid, "method": scope["method"], "path": path, "route": route, "face": face_of(path),
                "status": status, "latency_ms": round(elapsed * 1000, 1),
                **scope["state"].get("log_fields", {}),
            }
            access_log.info(json.dumps(entry, default=str), extra={"access": entry})


class _Sizes:
    """Gauges read when ``/metrics`` is scraped: images per library, creators per platform."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self):
        images = GaugeMetricFamily("lookalike_library_images", "Images (vectors) in each library's index.",
                                   labels=["library"])
        for library in self.runtime.libraries.list():
            images.add_metric([library.name], library.image_count or 0)
        yield images
        if self.runtime.settings.creators_db_path.exists():  # never create creators.db to count nothing
            creators = GaugeMetricFamily("lookalike_creators", "Creators imported, by platform.", labels=["platform"])
            for platform in PLATFORMS:
                creators.add_metric([platform], self.runtime.creators.count(platform))
            yield creators


def install(app: FastAPI, runtime: Runtime) -> None:
    """Add the middleware and the ``/metrics`` and ``/healthz`` routes to the root ``app``
    (call it after the other middleware, so every answer, a 413 included, is logged)."""
    app.add_middleware(RequestObservability)
    sizes = CollectorRegistry(auto_describe=False)
    sizes.register(_Sizes(runtime))  # type: ignore[arg-type]

    @app.get("/healthz", tags=["operations"], summary="Liveness: 200 while the process serves")
    def healthz() -> dict:
        """``{"status": "ok", "version": "<lookalike version>"}``; no database or model is touched,
        so it stays fast while a model loads."""
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text exposition format)",
             response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    def metrics() -> Response:
        """Request counts and latency histograms per route template and status, search latency by
        library, import counters, model inference time, images per library and creators per
        platform. Scrape it with Prometheus (``scrape_configs: - targets: ['HOST:8000']``)."""
        return Response(generate_latest(REGISTRY) + generate_latest(sizes), media_type=CONTENT_TYPE_LATEST)


#: Loggers whose per-request lines the access line already carries (``annotate``): not printed
#: by ``configure_logging``, so a request is one line; still there for other handlers.
FOLDED_LOGGERS = ("lookalike.api.constructor",)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the ``lookalike`` loggers (the access lines among them) to stderr, one message a
    line, for ``lookalike serve``; idempotent. The Constructor face's own line is left out
    (``FOLDED_LOGGERS``): its fields are in the access line."""
    logger = logging.getLogger("lookalike")
    if not any(getattr(h, "_lookalike", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(lambda record: record.name not in FOLDED_LOGGERS)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._lookalike = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
