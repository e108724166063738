"""What every command shares: consoles, the ``--data-dir`` option, opening the runtime, failing."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from ..config import Settings
from ..errors import LookalikeError
from ..runtime import Runtime

console = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", envvar="LOOKALIKE_DATA_DIR", help="State folder (default ~/.lookalike).")


def open_runtime(data_dir: Path | None) -> Runtime:
    """The runtime over ``data_dir`` (else ``$LOOKALIKE_DATA_DIR`` / ``~/.lookalike``); the caller closes it."""
    return Runtime.open(Settings.from_env(data_dir))


def fail(exc: Exception) -> NoReturn:
    """Print ``exc``'s message on stderr and exit with code 2."""
    err.print(f"[red]error:[/red] {exc.message if isinstance(exc, LookalikeError) else exc}")
    raise typer.Exit(code=2)

