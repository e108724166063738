"""The FastAPI application."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..runtime import Runtime
from . import envelope, errors, observability, openapi_docs
from .constructor import create_constructor_app
from .cors import ScopedCORS
from .creator_routes import router as creator_router
from .docs import docs_app
from .limits import BodySizeLimit
from .modash import create_modash_app
from .routes import router

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DESCRIPTION = (
    "The operator image-library API. The other faces have their own docs: "
    "[creator search, Modash-compatible (/v1/docs)](/v1/docs) · "
    "[image search, Constructor-compatible (/v2/docs)](/v2/docs) · [the search page (/)](/)."
)


def create_app(runtime: Runtime, *, warm: bool = False) -> FastAPI:
    """The HTTP app over ``runtime``; OpenAPI docs at ``/docs``. Closes the runtime on shutdown.

    Args:
        warm: at start-up, load models and vector indexes in a background thread
            (``Runtime.warm``), so the first searches do not pay for it; requests are served
            meanwhile.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        warmer = threading.Thread(target=runtime.warm, name="lookalike-warm", daemon=True) if warm else None
        if warmer is not None:
            warmer.start()
        yield
        if warmer is not None:
            warmer.join()
        runtime.close()

    app = docs_app(title="Lookalike", version=__version__, lifespan=lifespan, description=DESCRIPTION)
    app.state.runtime = runtime
    errors.install(app, envelope.render)
    app.add_middleware(BodySizeLimit, max_bytes=runtime.settings.max_request_bytes)
    observability.install(app, runtime)  # request ids, access log, /metrics, /healthz
    settings = runtime.settings
    if settings.cors_faces and settings.cors_origins:
        app.add_middleware(ScopedCORS, faces=settings.cors_faces, origins=settings.cors_origins)
    app.include_router(router)
    app.include_router(creator_router)
    # Constructor-compatible image search, with its own error style (api/constructor.py).
    constructor = create_constructor_app(runtime)
    app.mount("/v2", constructor)
    # Modash-compatible creator search, with its own error style (api/modash.py).
    modash = create_modash_app(runtime)
    app.mount("/v1", modash)
    # Each document declares its face's real statuses, error bodies and credentials.
    for face_app, face in ((app, openapi_docs.OPERATOR), (constructor, openapi_docs.CONSTRUCTOR),
                           (modash, openapi_docs.MODASH)):
        openapi_docs.install(face_app, face)

    # The search page's scripts and styles (plain files, no build step).
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        page = WEB_DIR / "index.html"
        return page.read_text() if page.exists() else '<a href="/docs">API docs</a>'

    return app
