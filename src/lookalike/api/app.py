"""The FastAPI application."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from .. import __version__
from ..runtime import Runtime
from .envelope import install_error_handlers
from .limits import BodySizeLimit
from .routes import router

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def create_app(runtime: Runtime) -> FastAPI:
    """The HTTP app over ``runtime``; OpenAPI docs at ``/docs``. Closes the runtime on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        runtime.close()

    app = FastAPI(title="Lookalike", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=runtime.settings.max_request_bytes)
    app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        page = WEB_DIR / "index.html"
        return page.read_text() if page.exists() else '<a href="/docs">API docs</a>'

    return app
