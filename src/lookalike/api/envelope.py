"""The response envelope ``{"status", "message", "data"}`` and the error handlers."""

from __future__ import annotations

import logging
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LookalikeError

log = logging.getLogger(__name__)

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    """Every response: ``status`` is ``SUCCESS`` or names the problem; ``data`` is null on errors."""

    status: str = "SUCCESS"
    message: str | None = None
    data: T | None = None


def ok(data: Any) -> dict[str, Any]:
    return {"status": "SUCCESS", "message": None, "data": data}


def _error(status_code: int, status: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"status": status, "message": message, "data": None})


def _field(loc: tuple) -> str:
    # Only the first item names the source; a field may itself be called "query" (the dictionaries' ?query=).
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the envelope: 400 invalid input, 404 not found, 500 internal."""

    @app.exception_handler(LookalikeError)
    async def _lookalike(_: Request, exc: LookalikeError) -> JSONResponse:
        if exc.http_status >= 500:
            log.exception("internal error", exc_info=exc)
        return _error(exc.http_status, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return _error(400, "INVALID_PARAMETER", "body: is not valid JSON")
        message = "; ".join(f"{_field(tuple(e['loc']))}: {e['msg']}" for e in errors[:5])
        return _error(400, "INVALID_PARAMETER", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return _error(exc.status_code, status, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return _error(500, "INTERNAL_ERROR", "Internal server error.")
