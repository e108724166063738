"""``lookalike tokens``: access tokens and credits of the creator-search API."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..config import Settings
from ..errors import LookalikeError
from .common import DataDir, console, err, fail, utc_minute

tokens_app = typer.Typer(help="Access tokens and credits of the creator-search API.", no_args_is_help=True)

def _access(data_dir: Path | None):
    """The access service of ``data_dir`` alone (no models loaded: token commands are instant)."""
    from ..runtime import open_access

    return open_access(Settings.from_env(data_dir))


def _credits_milli(text: str) -> int:
    from ..service.creators.access import parse_credits

    try:
        return parse_credits(text, field="--credits")
    except LookalikeError as exc:
        fail(exc)


@tokens_app.command("create")
def tokens_create(
    credits: str = typer.Option(..., "--credits", help="Starting balance in credits, e.g. 10 or 0.15."),
    label: str | None = typer.Option(None, "--label", help="Free text to recognise the token by."),
    data_dir: Path | None = DataDir,
) -> None:
    """Create a token; prints its secret once (only a hash is stored)."""
    from ..service.creators.access import format_credits

    milli = _credits_milli(credits)
    access = _access(data_dir)
    try:
        record, secret = access.create_token(milli, label)
    except LookalikeError as exc:
        fail(exc)
    finally:
        access.store.close()
    # Only the secret on stdout, so TOKEN=$(lookalike tokens create ...) captures it; details on stderr.
    typer.echo(secret)
    err.print(f"token id {record.id}, balance {format_credits(record.credits_milli)} credits"
              + (f", label {record.label}" if record.label else ""), markup=False, highlight=False)
    err.print("Keep the token now: it cannot be shown again.")


@tokens_app.command("list")
def tokens_list(data_dir: Path | None = DataDir) -> None:
    """List tokens (never their secrets)."""
    from ..service.creators.access import format_credits

    access = _access(data_dir)
    try:
        table = Table("id", "label", "credits", "created (UTC)", "revoked (UTC)")
        for t in access.list_tokens():
            table.add_row(
                t.id, t.label or "", format_credits(t.credits_milli), utc_minute(t.created_at), utc_minute(t.revoked_at)
            )
    finally:
        access.store.close()
    console.print(table)


@tokens_app.command("top-up")
def tokens_top_up(
    token_id: str = typer.Argument(..., metavar="ID", help="Token id from 'tokens list'."),
    credits: str = typer.Option(..., "--credits", help="Credits to add, e.g. 10 or 0.15."),
    data_dir: Path | None = DataDir,
) -> None:
    """Add credits to a token."""
    from ..service.creators.access import format_credits

    milli = _credits_milli(credits)
    access = _access(data_dir)
    try:
        record = access.top_up(token_id, milli)
    except LookalikeError as exc:
        fail(exc)
    finally:
        access.store.close()
    console.print(f"token {record.id}: balance {format_credits(record.credits_milli)} credits", highlight=False)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: str = typer.Argument(..., metavar="ID", help="Token id from 'tokens list'."),
    data_dir: Path | None = DataDir,
) -> None:
    """Revoke a token for good: its requests get 401."""
    access = _access(data_dir)
    try:
        access.revoke(token_id)
    except LookalikeError as exc:
        fail(exc)
    finally:
        access.store.close()
    console.print(f"revoked token {token_id}", highlight=False)


