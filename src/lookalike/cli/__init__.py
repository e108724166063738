"""The ``lookalike`` command line (typer). Shares the data dir with the server.

One module per command group: ``core`` (serve, library, import, search, demo), ``creators``,
``tokens``, ``keys``, ``admin`` (``admin-token``), ``milvus`` (and ``migrate``) and ``evaluate`` (``lookalike eval ...``).
"""

from __future__ import annotations

from .admin import admin_app
from .core import app
from .creators import creators_app
from .evaluate import eval_app
from .keys import keys_app
from .milvus import migrate, milvus_app
from .tokens import tokens_app

app.add_typer(eval_app, name="eval")
app.add_typer(creators_app, name="creators")
app.add_typer(tokens_app, name="tokens")
app.add_typer(keys_app, name="keys")
app.add_typer(admin_app, name="admin-token")
app.add_typer(milvus_app, name="milvus")
app.command("migrate")(migrate)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    app()
