"""Serving, libraries, imports, search and the demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .. import __version__
from ..errors import LibraryNotFound, LookalikeError
from ..runtime import Runtime
from .common import DataDir, console, err, fail, open_runtime, show_export_progress

app = typer.Typer(help="Lookalike: self-hosted visual search.", no_args_is_help=True, pretty_exceptions_enable=False)
library_app = typer.Typer(help="Create, list and delete image libraries.", no_args_is_help=True)
app.add_typer(library_app, name="library")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"lookalike {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Lookalike: self-hosted visual search."""
    show_export_progress()  # the first run exports the models to ONNX (about a minute): say so

@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    data_dir: Path | None = DataDir,
) -> None:
    """Serve the HTTP API (docs at /docs)."""
    import uvicorn

    from ..api import create_app
    from ..api.observability import configure_logging

    configure_logging()  # one JSON access line per request on stderr
    # access_log=False: our own JSON line per request replaces uvicorn's plain one
    uvicorn.run(create_app(open_runtime(data_dir), warm=True), host=host, port=port, access_log=False)


@library_app.command("create")
def library_create(
    name: str,
    mode: str = typer.Option("general_search", help="general_search or item_search."),
    model: str | None = typer.Option(None, help="Model id (default efficientnet-lite0-multilingual; README Models lists all)."),
    data_dir: Path | None = DataDir,
) -> None:
    """Create an empty library."""
    rt = open_runtime(data_dir)
    try:
        record = rt.libraries.create(name, mode, model)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()
    console.print(f"created library [bold]{record.name}[/bold] ({record.mode}, model {record.model_id})")


@library_app.command("list")
def library_list(data_dir: Path | None = DataDir) -> None:
    """List libraries with their image counts and the backend they live on (LOOKALIKE_STORE)."""
    rt = open_runtime(data_dir)
    try:
        table = Table("name", "mode", "model", "images", "backend")
        for r in rt.libraries.list():
            table.add_row(r.name, r.mode, r.model_id, str(r.image_count), rt.backend)
        console.print(table)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()


@library_app.command("delete")
def library_delete(
    name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    data_dir: Path | None = DataDir,
) -> None:
    """Delete a library and all its images (asks first, unless --yes)."""
    rt = open_runtime(data_dir)
    try:
        count = rt.libraries.get(name).image_count
        if not yes and not typer.confirm(f"Delete library '{name}' and its {count} images?", err=True):
            err.print("not deleted")
            raise typer.Exit(code=1)
        rt.libraries.delete(name)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()
    console.print(f"deleted library {name}")


@library_app.command("compact")
def library_compact(name: str, data_dir: Path | None = DataDir) -> None:
    """Rewrite a library's vector files without its deleted images (a server does it on its own)."""
    rt = open_runtime(data_dir)
    try:
        reclaimed = rt.libraries.compact(name)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()
    console.print(f"compacted library {name}: reclaimed {reclaimed} vector rows")


def import_source(rt: Runtime, library: str, source: Path, *, quiet: bool = False):
    """Import a folder / CSV / JSONL into ``library``, skipping stored ids (resumable).

    Returns the ``ImportOutcome``; bad lines and images are reported and skipped.
    """
    from ..sources import BadLine, count_items, iter_source

    bad: list[tuple[str, str]] = []

    def items():
        for entry in iter_source(source):
            if isinstance(entry, BadLine):
                bad.append((entry.where, entry.message))
            else:
                yield entry

    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, disable=quiet) as progress:
        task = progress.add_task("import", total=count_items(source))
        outcome = rt.importer.import_items(
            library, items(), skip_existing=True, atomic=False, progress=lambda n: progress.advance(task, n),
            local_files=True,
        )
    outcome.failed[:0] = bad
    return outcome


@app.command("import")
def import_cmd(
    library: str,
    source: Path = typer.Argument(..., exists=True, help="A folder of images, a .csv or a .jsonl file."),
    data_dir: Path | None = DataDir,
) -> None:
    """Import images; re-running skips image_ids already stored."""
    rt = open_runtime(data_dir)
    try:
        rt.libraries.get(library, count=False)  # before the progress bar: a missing library is one line
        outcome = import_source(rt, library, source)
    except LibraryNotFound:
        fail(ValueError(f"library '{library}' does not exist; create it with: lookalike library create {library}"))
    except (LookalikeError, ValueError) as exc:
        fail(exc)
    finally:
        rt.close()
    for where, message in outcome.failed:
        err.print(f"[yellow]skipped[/yellow] {escape(where)}: {escape(message)}", highlight=False, soft_wrap=True)
    console.print(f"added {len(outcome.added)}, already stored {len(outcome.skipped)}, failed {len(outcome.failed)}")
    if outcome.failed:  # a script must notice: exit 1 when any line or image was not imported
        handled = len(outcome.added) + len(outcome.skipped) + len(outcome.failed)
        err.print(f"[red]error:[/red] {len(outcome.failed)} of {handled} items failed (listed above)")
        raise typer.Exit(code=1)


@app.command()
def search(
    library: str,
    image: Path | None = typer.Option(None, "--image", exists=True, help="Query image file."),
    text: str | None = typer.Option(None, "--text", help="Query text."),
    top_k: int = typer.Option(10, "--top-k"),
    filter: str | None = typer.Option(None, "--filter", help="tag_filter as JSON."),
    data_dir: Path | None = DataDir,
) -> None:
    """Search a library by an image or a text; prints JSON results."""

    if (image is None) == (text is None):
        err.print("error: give exactly one of --image or --text")
        raise typer.Exit(code=2)
    try:
        tag_filter = json.loads(filter) if filter else None
    except json.JSONDecodeError as exc:
        err.print(f"error: --filter is not valid JSON ({exc.msg})")
        raise typer.Exit(code=2) from None
    rt = open_runtime(data_dir)
    try:
        if image is not None:
            results = rt.search.by_image(library, image.read_bytes(), top_k, tag_filter, field="--image")
        else:
            results = rt.search.by_text(library, text, top_k, tag_filter)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()
    json.dump([{"image_id": r.image_id, "image_uri": r.image_uri, "score": r.score, "tags": r.tags} for r in results],
              sys.stdout, indent=2)
    sys.stdout.write("\n")


@app.command()
def demo(
    images: Path | None = typer.Option(None, "--images", exists=True, file_okay=False,
                                          help="Folder of photos (default: photos shipped by installed packages)."),
    library: str = typer.Option("demo", help="Library to build."),
    serve_after: bool = typer.Option(True, "--serve/--no-serve", help="Serve the API afterwards."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    data_dir: Path | None = DataDir,
) -> None:
    """Build a demo library from real photos, then serve it."""
    from ..demo import demo_photos
    from ..service.importer import ImportItem

    rt = open_runtime(data_dir)
    try:
        if library not in {r.name for r in rt.libraries.list()}:
            rt.libraries.create(library, "general_search")
        if images is not None:
            outcome = import_source(rt, library, images)
        else:
            items = [ImportItem(image_id=f"{t['source']}/{p.name}", image_uri=str(p), path=str(p), tags=t, where=str(p))
                     for p, t in demo_photos()]
            outcome = rt.importer.import_items(library, items, skip_existing=True, atomic=False, local_files=True)
        count = rt.libraries.get(library).image_count
    except LookalikeError as exc:
        rt.close()
        fail(exc)
    rt.close()
    console.print(f"library [bold]{library}[/bold]: {count} images (added {len(outcome.added)} now)")
    _print_credentials(data_dir, library, host, port)
    if serve_after:
        console.print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
        serve(host=host, port=port, data_dir=data_dir)




def _print_credentials(data_dir: Path | None, library: str, host: str, port: int) -> None:
    """What a newcomer needs: searches and the page are open; writes need the admin token made here."""
    from .admin import create_admin_token

    token = create_admin_token(data_dir, "demo")
    api = f"http://{host}:{port}/api/v1/operators/image-search"
    console.print("searches and the page at / need no credential; writes need this admin token (shown once, "
                  "stored hashed; more with 'lookalike admin-token create'):", highlight=False)
    console.print(f"  {token}", markup=False, highlight=False)
    console.print(f"  curl -X DELETE -H 'Authorization: Bearer {token}' {api}/libraries/{library}/images/ID",
                  markup=False, highlight=False, soft_wrap=True)
