"""``lookalike admin-token``: the admin tokens that HTTP writes and management need."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..config import Settings
from ..errors import LookalikeError
from .common import DataDir, console, err, fail, utc_minute

admin_app = typer.Typer(help="Admin tokens: the credential of every HTTP write and management route.",
                        no_args_is_help=True)


def _admin(data_dir: Path | None):
    from ..runtime import open_admin

    return open_admin(Settings.from_env(data_dir))


def create_admin_token(data_dir: Path | None, label: str | None) -> str:
    """A new admin token's secret (only its hash is stored)."""
    admin = _admin(data_dir)
    try:
        return admin.create(label)[1]
    finally:
        admin.store.close()


@admin_app.command("create")
def admin_create(
    label: str | None = typer.Option(None, "--label", help="Free text to recognise the token by."),
    data_dir: Path | None = DataDir,
) -> None:
    """Create an admin token; prints only the token on stdout (shown once, stored hashed)."""
    print(create_admin_token(data_dir, label))
    err.print("Keep the token now: it cannot be shown again. Send it as 'Authorization: Bearer <token>'.")


@admin_app.command("list")
def admin_list(data_dir: Path | None = DataDir) -> None:
    """List admin tokens (never their secrets)."""
    admin = _admin(data_dir)
    try:
        table = Table("id", "label", "created (UTC)", "revoked (UTC)")
        for t in admin.list():
            table.add_row(t.id, t.label or "", utc_minute(t.created_at), utc_minute(t.revoked_at))
    finally:
        admin.store.close()
    console.print(table)


@admin_app.command("revoke")
def admin_revoke(
    token_id: str = typer.Argument(..., metavar="ID", help="Token id from 'admin-token list'."),
    data_dir: Path | None = DataDir,
) -> None:
    """Revoke an admin token for good: its requests get 401."""
    admin = _admin(data_dir)
    try:
        admin.revoke(token_id)
    except LookalikeError as exc:
        fail(exc)
    finally:
        admin.store.close()
    console.print(f"revoked admin token {token_id}", highlight=False)
