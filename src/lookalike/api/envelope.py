"""The operator API's response envelope ``{"status", "message", "data"}``, and its error rendering."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from .errors import Problem

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    """Every response: ``status`` is ``SUCCESS`` or names the problem; ``data`` is null on errors."""

    status: str = "SUCCESS"
    message: str | None = None
    data: T | None = None


def ok(data: Any) -> dict[str, Any]:
    """A success envelope around ``data``."""
    return {"status": "SUCCESS", "message": None, "data": data}


def render(problem: Problem) -> JSONResponse:
    """The operator API's error body: ``{"status": "<STATUS>", "message": "<field>: <rule>", "data": null}``."""
    content = {"status": problem.status, "message": problem.message, "data": None}
    return JSONResponse(status_code=problem.http_status, content=content, headers=problem.headers)
