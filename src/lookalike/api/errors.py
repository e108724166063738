"""The one error seam of the HTTP faces: every exception becomes a ``Problem``, which the face renders.

``install(app, render)`` registers the four handlers (``LookalikeError``, request validation,
Starlette's HTTP errors, anything else) once; each face supplies only ``render``, its own body
style: the operator envelope (``api/envelope.py``), Modash's (``api/modash.py``) and
Constructor's (``api/constructor.py``). Errors of 500 and above are logged here with their
traceback and never show their message to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LookalikeError, RateLimited, StoreUnavailable

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error."
#: Request-validation errors named in one message.
MAX_VALIDATION_ERRORS = 5
_HTTP_STATUS = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
_SOURCES = ("body", "query", "path", "header", "cookie")


@dataclass(frozen=True)
class Problem:
    """What went wrong, before a face gives it its body style.

    Attributes:
        http_status: the HTTP code.
        status: upper-case name of the problem (``INVALID_PARAMETER``, ``NOT_FOUND``, ...).
        code: Modash-style lower-case code (``api_token_invalid``; else ``status`` lower-cased).
        message: ``"<field>: <rule>"`` for bad input; ``INTERNAL_MESSAGE`` for 500s.
        headers: extra response headers (``Retry-After`` for 429).
        validation: the request-validation errors (pydantic's dicts), for faces that word them
            their own way; empty for other problems.
    """

    http_status: int
    status: str
    message: str
    code: str
    headers: dict[str, str] | None = None
    validation: Sequence[dict[str, Any]] = field(default_factory=tuple)


Render = Callable[[Problem], JSONResponse]


def field_path(loc: tuple) -> str:
    """A validation error's location as one field path: ``("body", "filters", 0)`` -> ``filters[0]``."""
    # Only the first item names the source; a field may itself be called "query" (the dictionaries' ?query=).
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in _SOURCES else loc)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def problem(exc: Exception) -> Problem:
    """The ``Problem`` of any exception a request raised."""
    if isinstance(exc, LookalikeError):
        if isinstance(exc, StoreUnavailable):  # not a bug: the message says what to do
            log.warning("store unavailable: %s", exc.message)
            return Problem(exc.http_status, exc.status, exc.message, exc.status.lower(), {"Retry-After": "5"})
        if exc.http_status >= 500:
            log.error("internal error", exc_info=exc)
            return Problem(exc.http_status, exc.status, INTERNAL_MESSAGE, "internal_error")
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return Problem(exc.http_status, exc.status, exc.message, getattr(exc, "code", None) or exc.status.lower(),
                       headers)
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            message = "body: is not valid JSON"
        else:
            message = "; ".join(f"{field_path(tuple(e['loc']))}: {e['msg']}" for e in errors[:MAX_VALIDATION_ERRORS])
        return Problem(400, "INVALID_PARAMETER", message or "body: invalid request", "invalid_parameter",
                       validation=tuple(errors))
    if isinstance(exc, StarletteHTTPException):
        status = _HTTP_STATUS.get(exc.status_code, "HTTP_ERROR")
        return Problem(exc.status_code, status, str(exc.detail), status.lower())
    log.error("internal error", exc_info=exc)
    return Problem(500, "INTERNAL_ERROR", INTERNAL_MESSAGE, "internal_error")


def install(app: FastAPI, render: Render) -> None:
    """Answer every error of ``app`` with ``render(problem(exc))``."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return render(problem(exc))

    for kind in (LookalikeError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
