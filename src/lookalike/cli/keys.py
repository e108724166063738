"""``lookalike keys``: index keys of the Constructor-compatible image search."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..errors import LookalikeError
from ..runtime import Runtime
from .common import DataDir, console, err, fail, open_runtime

keys_app = typer.Typer(help="Index keys of the Constructor-compatible image search.", no_args_is_help=True)

def _key_sections(specs: list[str]) -> dict[str, str]:
    """``["Products=shop", ...]`` -> ``{"Products": "shop"}``; exits 2 on a malformed or repeated one."""
    sections: dict[str, str] = {}
    for spec in specs:
        section, sep, library = spec.partition("=")
        if not sep or not section or not library:
            fail(ValueError(f"--section {spec!r}: expected NAME=LIBRARY, e.g. Products=shop"))
        if section in sections:
            fail(ValueError(f"--section {section!r}: given more than once"))
        sections[section] = library
    return sections


def _require_libraries(rt: Runtime, libraries: list[str]) -> None:
    """Raises ``LibraryNotFound`` for the first library that does not exist."""
    for name in libraries:
        rt.libraries.get(name, count=False)


@keys_app.command("create")
def keys_create(
    section: list[str] = typer.Option(..., "--section", help="NAME=LIBRARY, repeatable; e.g. Products=shop."),
    data_dir: Path | None = DataDir,
) -> None:
    """Create an index key whose sections search the given libraries; prints the key."""
    sections = _key_sections(section)
    rt = open_runtime(data_dir)
    try:
        _require_libraries(rt, list(sections.values()))
        key = rt.keys.create(sections)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()
    # Only the key on stdout, so KEY=$(lookalike keys create ...) captures it; details on stderr.
    typer.echo(key)
    err.print("sections: " + ", ".join(f"{s} = {lib}" for s, lib in sections.items()), markup=False, highlight=False)


@keys_app.command("list")
def keys_list(data_dir: Path | None = DataDir) -> None:
    """List index keys with their sections."""
    rt = open_runtime(data_dir)
    try:
        table = Table("key", "sections (section = library)")
        for k in rt.keys.list():
            table.add_row(k.key, ", ".join(f"{s} = {lib}" for s, lib in k.sections.items()) or "(none)")
    finally:
        rt.close()
    console.print(table)


@keys_app.command("set-section")
def keys_set_section(
    key: str = typer.Argument(..., help="Index key from 'keys list'."),
    name: str = typer.Argument(..., help="Section name, e.g. Products."),
    library: str = typer.Argument(..., help="Library the section searches."),
    data_dir: Path | None = DataDir,
) -> None:
    """Add a section to a key, or point an existing section at another library."""
    rt = open_runtime(data_dir)
    try:
        _require_libraries(rt, [library])
        rt.keys.set_section(key, name, library)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()
    console.print(f"key {key}: section {name} = {library}", markup=False, highlight=False)


@keys_app.command("remove-section")
def keys_remove_section(
    key: str = typer.Argument(..., help="Index key from 'keys list'."),
    name: str = typer.Argument(..., help="Section name."),
    data_dir: Path | None = DataDir,
) -> None:
    """Remove a section from a key."""
    rt = open_runtime(data_dir)
    try:
        rt.keys.remove_section(key, name)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()
    console.print(f"key {key}: removed section {name}", markup=False, highlight=False)


@keys_app.command("delete")
def keys_delete(
    key: str = typer.Argument(..., help="Index key from 'keys list'."),
    data_dir: Path | None = DataDir,
) -> None:
    """Delete an index key: its requests get 401 from then on."""
    rt = open_runtime(data_dir)
    try:
        rt.keys.delete(key)
    except LookalikeError as exc:
        fail(exc)
    finally:
        rt.close()
    console.print(f"deleted key {key}", markup=False, highlight=False)


