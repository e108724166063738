"""OpenAPI docs pages that work without internet.

FastAPI's default ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN, so they are blank
on an offline machine. ``docs_app`` builds each face's app with ``fastapi-offline`` (pinned), whose
wheel ships ``swagger-ui-bundle.js``, ``swagger-ui.css`` and ``redoc.standalone.js`` and serves them
from the app itself under ``/static-offline-docs``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

#: Swagger UI's default ``validatorUrl`` shows a badge fetched from validator.swagger.io; nothing
#: the docs load may leave the machine.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def docs_app(**kwargs: Any) -> FastAPI:
    """A ``FastAPI(**kwargs)`` whose ``docs_url`` (``/docs``) and ``redoc_url`` (``/redoc``) pages
    load their scripts and styles from the app's own ``/static-offline-docs``; works mounted under
    a prefix (the asset URLs follow the ASGI ``root_path``)."""
    kwargs.setdefault("swagger_ui_parameters", SWAGGER_UI_PARAMETERS)
    return FastAPIOffline(**kwargs)
