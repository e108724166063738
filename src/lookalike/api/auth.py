"""The credentials of the operator face's routes, as FastAPI dependencies.

``require_admin`` guards every write and management route (libraries, images, creators):
``Authorization: Bearer <admin token>`` (``lookalike admin-token create``). ``require_search``
guards the operator API's searches and reads: open unless the operator set
``LOOKALIKE_SEARCH_KEY``. Both are ``HTTPBearer`` security dependencies, so the OpenAPI
document declares them as security schemes. The checks themselves are the service's
(``service/admin_access.py``).
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ADMIN_SCHEME = HTTPBearer(
    scheme_name="adminToken", auto_error=False,
    description="Admin token for writes and management: `lookalike admin-token create`.",
)
SEARCH_SCHEME = HTTPBearer(
    scheme_name="searchKey", auto_error=False,
    description="Needed only when the server sets LOOKALIKE_SEARCH_KEY (an admin token works too).",
)


def require_admin(request: Request, _: HTTPAuthorizationCredentials | None = Depends(ADMIN_SCHEME)) -> None:
    """Raises AdminRequired (401) unless the request carries a live admin token."""
    request.app.state.runtime.admin.require_admin(request.headers.get("authorization"))


def require_search(request: Request, _: HTTPAuthorizationCredentials | None = Depends(SEARCH_SCHEME)) -> None:
    """Raises Unauthorized (401) when a search key is set and the request carries neither it nor an admin token."""
    request.app.state.runtime.admin.require_search(request.headers.get("authorization"))


ADMIN = [Depends(require_admin)]
SEARCH = [Depends(require_search)]
