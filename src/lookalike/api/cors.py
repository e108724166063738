"""CORS for the faces browsers call: ``/v2`` by default (shop front-ends), others on request.

Starlette's ``CORSMiddleware`` answers preflight ``OPTIONS`` requests and adds the
``Access-Control-*`` headers; ``ScopedCORS`` applies it only under the prefixes of the faces
named in ``Settings.cors_faces``, with the origins of ``Settings.cors_origins``. Credentials
(cookies) are never allowed: every face takes its credential in a header or the ``key``
parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

#: Face name -> the path prefix it serves.
FACE_PREFIXES = {"v2": "/v2/", "v1": "/v1/", "operator": "/api/"}
EXPOSED_HEADERS = ["Retry-After", "X-Credits-Charged", "X-Credits-Left"]


class ScopedCORS:
    """ASGI middleware: CORS under the prefixes of ``faces``, nothing elsewhere.

    Args:
        faces: names from ``FACE_PREFIXES``.
        origins: allowed origins (``*``: any).

    Raises:
        ValueError: an unknown face name.
    """

    def __init__(self, app: ASGIApp, faces: Sequence[str], origins: Sequence[str]) -> None:
        unknown = sorted(set(faces) - set(FACE_PREFIXES))
        if unknown:
            raise ValueError(f"LOOKALIKE_CORS_FACES: unknown face {unknown[0]!r}; one of {', '.join(FACE_PREFIXES)}")
        self.app = app
        self.prefixes = tuple(FACE_PREFIXES[f] for f in faces)
        self.cors = CORSMiddleware(app, allow_origins=list(origins), allow_methods=["GET", "POST", "PATCH", "DELETE"],
                                   allow_headers=["*"], expose_headers=EXPOSED_HEADERS, max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.prefixes and scope["path"].startswith(self.prefixes):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
