"""What every command shares: consoles, the ``--data-dir`` option, opening the runtime, failing."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console

from ..config import Settings
from ..errors import LookalikeError
from ..runtime import Runtime

console = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", envvar="LOOKALIKE_DATA_DIR", help="State folder (default ~/.lookalike).")


def _runtime(data_dir: Optional[Path]) -> Runtime:
    try:
        return Runtime.open(Settings.from_env(data_dir))
    except (ValueError, RuntimeError) as exc:  # a bad LOOKALIKE_STORE, a missing optional extra
        _fail(exc)


def _fail(exc: Exception) -> NoReturn:
    err.print(f"[red]error:[/red] {exc.message if isinstance(exc, LookalikeError) else exc}")
    raise typer.Exit(code=2)

