"""OpenAPI docs pages that work without internet.

FastAPI's default ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN, so they are blank
on an offline machine. ``docs_app`` builds each face's app with ``fastapi-offline`` (pinned), whose
wheel ships ``swagger-ui-bundle.js``, ``swagger-ui.css`` and ``redoc.standalone.js`` and serves them
from the app itself under ``/static-offline-docs``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline

#: Swagger UI's default ``validatorUrl`` shows a badge fetched from validator.swagger.io; nothing
#: the docs load may leave the machine.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
#: ReDoc's sidebar shows a logo from cdn.redoc.ly (no option turns it off): the policy keeps the
#: page's requests on this server, so offline there is no failed fetch, online no third party.
REDOC_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:"
)
STATIC_URL = "/static-offline-docs"


def docs_app(**kwargs: Any) -> FastAPI:
    """A ``FastAPI(**kwargs)`` whose ``docs_url`` (``/docs``) and ``redoc_url`` (``/redoc``) pages
    load their scripts and styles from the app's own ``/static-offline-docs``; works mounted under
    a prefix (the asset URLs follow the ASGI ``root_path``)."""
    kwargs.setdefault("swagger_ui_parameters", SWAGGER_UI_PARAMETERS)
    redoc_url = kwargs.pop("redoc_url", "/redoc")
    app = FastAPIOffline(redoc_url=None, static_url=STATIC_URL, **kwargs)
    if redoc_url is None:
        return app

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js", redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_CSP
        return page

    return app
