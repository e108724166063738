"""Operator routes for creator data, under ``/api/v1/creators`` (the operator envelope style).

The Modash-compatible search over these creators lives in ``api/modash.py``; these routes are
how an operator feeds and refreshes it over HTTP, like ``lookalike creators import`` does from a
JSONL file.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidParameter
from ..runtime import Runtime
from .auth import ADMIN, SEARCH
from .envelope import ok

PREFIX = "/api/v1/creators"
#: Creators per import request; bigger refreshes go through the CLI or several requests.
MAX_CREATORS_PER_REQUEST = 1000
# parse_creator says "creators[3]: posts[0].id: rule" (the CLI's "line 12: ..." style); over HTTP the
# field is one path, as everywhere else in the API: "creators[3].posts[0].id: rule".
_LOCATED = re.compile(r"^(creators\[\d+\]): ([A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*):")

router = APIRouter(prefix=PREFIX, tags=["creators"])


class ImportCreatorsRequest(BaseModel):
    """Creators to import or refresh, each in the JSONL line format of ``lookalike creators import``.

    Images come as ``image_base64``; a local ``image_path`` / ``image_url`` is read only inside
    the operator's ``LOOKALIKE_IMPORT_ROOTS`` (``service/local_files.py``). Needs an admin token.
    """

    model_config = ConfigDict(extra="forbid")

    platform: str | None = None
    creators: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_CREATORS_PER_REQUEST)


def _rt(request: Request) -> Runtime:
    return request.app.state.runtime


@router.post("/import", summary="Import or refresh creators with their posts", dependencies=ADMIN)
def import_creators(body: ImportCreatorsRequest, request: Request) -> dict:
    """Validate every creator first (400 naming ``creators[i].field``; nothing is written), then
    apply each one atomically: the profile is updated, new posts added, changed images
    re-embedded, unlisted posts dropped. A creator whose images cannot be read is listed in
    ``failed`` and left exactly as it was."""
    admin = _rt(request).creator_admin
    items = [(f"creators[{i}]", obj) for i, obj in enumerate(body.creators)]
    try:  # fail fast and write nothing on malformed input
        admin.check(items, body.platform)
    except InvalidParameter as exc:
        exc.message = _field_path(exc.message)
        raise
    outcome = admin.import_creators(items, body.platform)
    return ok({
        "imported": outcome.imported,
        "unchanged": outcome.unchanged,
        "failed": [{"where": where, "message": _field_path(message)} for where, message in outcome.failed],
        "posts_added": outcome.posts_added,
        "posts_removed": outcome.posts_removed,
        "posts_embedded": outcome.posts_embedded,
    })


def _field_path(message: str) -> str:
    """``creators[i]: field: rule`` -> ``creators[i].field: rule``; other messages unchanged."""
    return _LOCATED.sub(r"\1.\2:", message, count=1)


@router.delete("/{platform}/{user_id:path}", summary="Delete a creator and its posts", dependencies=ADMIN)
def delete_creator(platform: str, user_id: str, request: Request) -> dict:
    _rt(request).creator_admin.delete(platform, user_id)
    return ok({"platform": platform, "userId": user_id, "deleted": True})


@router.get("/{platform}", summary="How many creators a platform holds", dependencies=SEARCH)
def count_creators(platform: str, request: Request) -> dict:
    return ok({"platform": platform, "creators": _rt(request).creator_admin.count(platform)})
