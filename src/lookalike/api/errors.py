"""The one error seam of the HTTP faces: every exception becomes a ``Problem``, which the face renders.

``install(app, render)`` registers the four handlers (``LookalikeError``, request validation,
Starlette's HTTP errors, anything else) once; each face supplies only ``render``, its own body
style: the operator envelope (``api/envelope.py``), Modash's (``api/modash.py``) and
Constructor's (``api/constructor.py``). Errors of 500 and above are logged here with their
traceback and never show their message to the client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import Busy, InvalidJSON, LookalikeError, RateLimited, StoreUnavailable

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error."
#: Request-validation errors named in one message.
MAX_VALIDATION_ERRORS = 5
_HTTP_STATUS = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
#: What FastAPI answers when parsing a body raised something other than a JSON syntax error.
_BODY_PARSE_DETAIL = "There was an error parsing the body"
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


def invalid_json(exc: BaseException, doc: str | bytes | None = None) -> InvalidJSON:
    """The ``InvalidJSON`` (400) of a body that failed to parse: a syntax error with its line
    and column (1-based, as ``json`` counts them), bytes that are not UTF-8, or nesting deeper
    than the parser's recursion limit."""
    if isinstance(exc, json.JSONDecodeError):
        return InvalidJSON(f"body: is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
                           f" (character {exc.pos})")
    if isinstance(exc, UnicodeDecodeError):
        return InvalidJSON(f"body: is not valid JSON: byte {exc.start} is not UTF-8")
    if isinstance(exc, RecursionError):
        return InvalidJSON("body: is not valid JSON: nested too deep for the parser (about 1000 levels)")
    return InvalidJSON(f"body: is not valid JSON ({type(exc).__name__})")


def _json_problem(error: InvalidJSON, validation: Sequence[dict[str, Any]] = ()) -> Problem:
    return Problem(400, error.status, error.message, "invalid_json", validation=validation)


def problem(exc: Exception) -> Problem:
    """The ``Problem`` of any exception a request raised."""
    if isinstance(exc, LookalikeError):
        if isinstance(exc, StoreUnavailable):  # not a bug: the message says what to do
            log.warning("store unavailable: %s", exc.message)
            return Problem(exc.http_status, exc.status, exc.message, exc.status.lower(), {"Retry-After": "5"})
        if exc.http_status >= 500 and not isinstance(exc, Busy):  # Busy is a state, not a bug: say it
            log.error("internal error", exc_info=exc)
            return Problem(exc.http_status, exc.status, INTERNAL_MESSAGE, "internal_error")
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited | Busy) else None
        return Problem(exc.http_status, exc.status, exc.message, getattr(exc, "code", None) or exc.status.lower(),
                       headers)
    if isinstance(exc, RequestValidationError):
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            cause = exc.__cause__
            if not isinstance(cause, json.JSONDecodeError):  # FastAPI keeps the position in loc
                doc = exc.body if isinstance(exc.body, str) else ""
                pos = errors[0]["loc"][-1] if isinstance(errors[0]["loc"][-1], int) else 0
                cause = json.JSONDecodeError(str(errors[0].get("ctx", {}).get("error", "syntax error")), doc, pos)
            return _json_problem(invalid_json(cause), tuple(errors))
        else:
            message = "; ".join(f"{field_path(tuple(e['loc']))}: {e['msg']}" for e in errors[:MAX_VALIDATION_ERRORS])
        return Problem(400, "INVALID_PARAMETER", message or "body: invalid request", "invalid_parameter",
                       validation=tuple(errors))
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == _BODY_PARSE_DETAIL:
            return _json_problem(invalid_json(exc.__cause__ or exc))
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
