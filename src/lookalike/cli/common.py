"""What every command shares: consoles, the ``--data-dir`` option, opening the runtime, failing."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..config import Settings
from ..errors import LookalikeError
from ..runtime import Runtime

console = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", envvar="LOOKALIKE_DATA_DIR", help="State folder (default ~/.lookalike).")


def open_runtime(data_dir: Path | None) -> Runtime:
    """The runtime over ``data_dir`` (else ``$LOOKALIKE_DATA_DIR`` / ``~/.lookalike``); the caller closes it.

    A bad ``LOOKALIKE_STORE`` or a missing optional extra exits with its message (code 2).
    """
    try:
        return Runtime.open(Settings.from_env(data_dir))
    except (ValueError, RuntimeError) as exc:
        fail(exc)


def utc_minute(t: float | None) -> str:
    """A token table's time column: ``YYYY-MM-DD HH:MM`` in UTC, empty for ``None``."""
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def fail(exc: Exception) -> NoReturn:
    """Print ``exc``'s message on stderr, on one line (never wrapped, so scripts can grep it),
    and exit with code 2."""
    message = exc.message if isinstance(exc, LookalikeError) else str(exc)
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)



#: Seconds between the "still exporting" lines of the first run's model export.
EXPORT_TICK_S = 15.0
#: The logger ``models/onnx_cache.py`` announces an export on ("exporting <dir> ...", then
#: "exported <dir> in <s> s ...").
EXPORT_LOGGER = "lookalike.models.onnx_cache"


class ExportProgress(logging.Handler):
    """Shows the first run's ONNX export on stderr: a line when it starts, the time spent every
    ``tick_s`` seconds while it runs, and a line when it is done, instead of a minute of silence.

    It listens to the export's own log records, so it works wherever a command loads a model
    (import, search, eval, creators); the lines print above a progress bar that is showing.
    """

    def __init__(self, out: Console, tick_s: float = EXPORT_TICK_S) -> None:
        super().__init__(logging.INFO)
        self.out, self.tick_s = out, tick_s
        self._stop: threading.Event | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        name = Path(str(record.args[0])).name if isinstance(record.args, tuple) and record.args else "the model"
        if message.startswith("exporting"):
            self._halt()
            self.out.print(f"first run: exporting {name} to ONNX, once (about a minute) ...", highlight=False)
            self._stop = stop = threading.Event()
            started = time.monotonic()

            def tick() -> None:
                while not stop.wait(self.tick_s):
                    self.out.print(f"  still exporting {name}: {time.monotonic() - started:.0f} s", highlight=False)

            threading.Thread(target=tick, name="lookalike-export-progress", daemon=True).start()
        elif message.startswith("exported"):
            self._halt()
            seconds = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else None
            took = f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
            self.out.print(f"exported {name}{took}; later runs load it from the cache", highlight=False)
        # A failed export raises ModelUnavailable, which the command reports; the next command
        # that starts an export stops a ticker left over in the same process.

    def _halt(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None


def show_export_progress(out: Console | None = None) -> ExportProgress:
    """Install (once per process) the ``ExportProgress`` handler on the export logger; returns it."""
    logger = logging.getLogger(EXPORT_LOGGER)
    for handler in logger.handlers:
        if isinstance(handler, ExportProgress):
            return handler
    handler = ExportProgress(out or err)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
