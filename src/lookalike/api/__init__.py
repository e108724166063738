"""HTTP API (FastAPI). Depends on the services only."""

from .app import create_app

__all__ = ["create_app"]
