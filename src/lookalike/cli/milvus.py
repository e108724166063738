"""``lookalike milvus start|stop|status`` (a dev Milvus server) and ``lookalike migrate``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..config import Settings
from ..errors import LookalikeError
from ..service import backends
from .common import DataDir, console, err, fail, open_runtime

milvus_app = typer.Typer(
    help="Run the standalone Milvus server of the 'milvus' extra (development, tests).", no_args_is_help=True
)
Port = typer.Option(19530, "--port", help="gRPC port clients connect to (LOOKALIKE_STORE=milvus://127.0.0.1:PORT).")


def _dir(data_dir: Path | None) -> Path:
    return backends.milvus_dir(Settings.from_env(data_dir))


@milvus_app.command("start")
def start(data_dir: Path | None = DataDir, port: int = Port) -> None:
    """Start Milvus in the background under DATA_DIR/milvus; returns once it answers."""
    where = _dir(data_dir)
    try:
        with console.status("starting Milvus (about 10 s)"):
            info = backends.start_server(where, port)
    except RuntimeError as exc:
        fail(exc)
    console.print(f"Milvus is running (pid {info.pid}): export LOOKALIKE_STORE={info.uri}")


@milvus_app.command("stop")
def stop(data_dir: Path | None = DataDir) -> None:
    """Stop the Milvus server started under DATA_DIR/milvus."""
    if backends.stop_server(_dir(data_dir)):
        console.print("Milvus stopped")
    else:
        console.print("Milvus was not running")


@milvus_app.command("status")
def status(data_dir: Path | None = DataDir) -> None:
    """Say whether the Milvus server under DATA_DIR/milvus runs and answers (exit 1 if not)."""
    info, healthy = backends.server_status(_dir(data_dir))
    if info is None:
        console.print("Milvus is not running")
        raise typer.Exit(code=1)
    state = "answering" if healthy else "not answering yet"
    console.print(f"Milvus is running (pid {info.pid}, {info.uri}), {state}")
    if not healthy:
        raise typer.Exit(code=1)


def migrate(
    library: str,
    to: str = typer.Option(..., "--to", help="Target store: milvus://HOST:PORT (or 'embedded')."),
    data_dir: Path | None = DataDir,
) -> None:
    """Copy LIBRARY from the current store (LOOKALIKE_STORE) to another, without re-embedding.

    Resumable: re-running skips the images already copied. The source is left as it is.
    """
    rt = open_runtime(data_dir)
    try:
        target_name = backends.describe(to)
        if target_name == rt.backend:
            fail(ValueError(f"library '{library}' is already on {target_name}"))
        target = backends.open_target(rt.settings, to)
    except (ValueError, RuntimeError) as exc:
        rt.close()
        fail(exc)
    columns = (TextColumn(f"copying to {target_name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("migrate", total=None)
            report = backends.migrate_library(
                rt.store,
                target,
                library,
                target_name=target_name,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except LookalikeError as exc:
        fail(exc)
    finally:
        target.close()
        rt.close()
    console.print(
        f"library {library}: copied {report.copied}, already there {report.already}, of {report.total} "
        f"-> {report.target} (serve it from there with LOOKALIKE_STORE set to the --to value)"
    )
