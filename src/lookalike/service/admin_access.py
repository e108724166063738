"""Who may write: admin tokens for every write and management route, and the optional
search key of the operator API's read routes.

The faces call ``require_admin(header)`` on writes and ``require_search(header)`` on the
operator API's searches and reads; the CLI (the operator, on the machine) calls neither.
Modash tokens and Constructor index keys are search credentials of their own faces and are
never admin tokens.
"""

from __future__ import annotations

import hmac

from ..errors import AdminRequired, Unauthorized
from ..store.admin_tokens import AdminTokenRecord, AdminTokenStore

_HELP = "send 'Authorization: Bearer <admin token>' (create one with: lookalike admin-token create)"


def bearer(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


class AdminAccess:
    """Admin tokens and the search key.

    Args:
        store: the admin tokens.
        search_key: when set (``$LOOKALIKE_SEARCH_KEY``), the operator API's searches and reads
            need ``Authorization: Bearer <search key>`` (or an admin token); None: they are open.
    """

    def __init__(self, store: AdminTokenStore, search_key: str | None = None) -> None:
        self.store = store
        self._search_key = search_key

    def create(self, label: str | None = None) -> tuple[AdminTokenRecord, str]:
        """A new admin token: its record and its secret (shown once; only a hash is stored)."""
        return self.store.create(label)

    def list(self) -> list[AdminTokenRecord]:
        """Every admin token, oldest first, without secrets."""
        return self.store.list()

    def revoke(self, token_id: str) -> AdminTokenRecord:
        """Revoke an admin token. Raises NotFound for an unknown id."""
        return self.store.revoke(token_id)

    def require_admin(self, authorization: str | None) -> None:
        """Raises AdminRequired (401) unless the header carries a live admin token."""
        secret = bearer(authorization)
        if secret is None:
            raise AdminRequired(f"Authorization: this route changes data and needs an admin token; {_HELP}")
        if not self.store.is_live(secret):
            raise AdminRequired(f"Authorization: not a live admin token; {_HELP}")

    def require_search(self, authorization: str | None) -> None:
        """No-op without a search key; else raises Unauthorized (401) unless the header carries
        the search key or a live admin token."""
        if self._search_key is None:
            return
        secret = bearer(authorization)
        if secret is not None and (hmac.compare_digest(secret.encode(), self._search_key.encode())
                                   or self.store.is_live(secret)):
            return
        raise Unauthorized("Authorization: this server needs 'Authorization: Bearer <search key>' for searches"
                           " (the operator's LOOKALIKE_SEARCH_KEY) or an admin token")
