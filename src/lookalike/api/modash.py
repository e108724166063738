"""The Modash-compatible creator-search API, mounted at ``/v1``.

Request and response shapes follow Modash's image-search and dictionary endpoints
(``POST /ai/image-search``, ``POST /ai/tiktok/image-search``, ``GET /{platform}/locations``,
``GET /{platform}/languages``, ``GET /ai/brands``), so existing clients work against
``http://HOST:PORT/v1`` unchanged. Errors use Modash's style
``{"error": true, "code": ..., "message": ...}`` (``render``, installed through ``api/errors.py``)
so the operator API's envelope never leaks in.

Every endpoint needs ``Authorization: Bearer <token>`` (``lookalike tokens create``). Searches
are rate-limited per token and endpoint and charged in credits, in the order of
``service.creators.gateway``; the dictionaries are free. Each platform's paths, page sizes and
stats come from ``service.creators.platforms``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidImage, InvalidParameter
from ..imaging import image_format
from ..runtime import Runtime
from ..service.creators.access import format_credits
from ..service.creators.platforms import PLATFORMS, Platform, rules
from ..service.creators.search import PostRecord, ProfileMatch
from . import errors, intake
from .docs import docs_app
from .errors import Problem

#: The ``imageType`` values Modash accepts, and the Pillow format each must decode as.
IMAGE_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
DICTIONARY_LIMIT_DEFAULT = 10
MAX_SHOWN_POSTS = 5


class ImageSearchRequest(BaseModel):
    """Body of ``POST /ai/image-search`` (Instagram)."""

    model_config = ConfigDict(extra="forbid")

    imageType: str
    base64Image: str
    # null means the default, as in ``filters`` (clients send empty form fields that way).
    # Checked by ``service.creators.filters.check_page`` (a message naming ``page``): true or "2"
    # is a client bug, not page 1 or 2; a float must be integral (1.0: Modash types it "number").
    page: Any = Field(0, json_schema_extra={"type": "integer", "minimum": 0})
    filters: dict[str, Any] | None = None


class TikTokImageSearchRequest(ImageSearchRequest):
    """Body of ``POST /ai/tiktok/image-search``; pages are ``pageSize`` profiles long."""

    pageSize: Any = Field(None, json_schema_extra={"type": "integer", "minimum": 1, "maximum": 50})


def render(problem: Problem) -> JSONResponse:
    """Modash's error body: ``{"error": true, "code": "<code>", "message": "<field>: <rule>"}``."""
    content = {"error": True, "code": problem.code, "message": problem.message}
    return JSONResponse(content, status_code=problem.http_status, headers=problem.headers)


def _query_image(body: ImageSearchRequest, max_bytes: int) -> bytes:
    """The bytes of ``base64Image``, checked to be what ``imageType`` says.

    Raises:
        InvalidParameter: ``imageType`` is not one of ``IMAGE_TYPES``, or the bytes are another format.
        InvalidImage: not base64, empty or over ``max_bytes`` bytes.
    """
    if body.imageType not in IMAGE_TYPES:
        raise InvalidParameter(f"imageType: must be one of {', '.join(IMAGE_TYPES)}")
    data = intake.from_base64(body.base64Image, field="base64Image", max_bytes=max_bytes)
    actual = image_format(data)
    if actual is not None and actual != IMAGE_TYPES[body.imageType]:
        raise InvalidImage(f"imageType: is {body.imageType} but base64Image holds a {actual} image")
    return data


#: What a required string field of a response holds when the creator was imported without it:
#: Modash's documents require ``profilePicture``, ``accountCategory`` and a post's ``url`` and
#: ``thumbnail`` (strings, never null), and an import line may leave them out.
MISSING_TEXT = ""


def _post(post: PostRecord, platform: Platform) -> dict[str, Any]:
    # A stat not imported is 0; a hidden one stays -1, as Modash reports it.
    stats = {k: int(post.stats.get(k, 0)) for k in platform.stats}
    return {"id": post.post_id, "url": post.url or MISSING_TEXT, "thumbnail": post.thumbnail or MISSING_TEXT,
            "stats": stats}


def _profile(match: ProfileMatch, platform: Platform) -> dict[str, Any]:
    c = match.creator
    return {
        "userId": c.user_id,
        "fullName": c.full_name,
        "username": c.username,
        "profilePicture": c.profile_picture or MISSING_TEXT,
        "followersCount": c.followers_count,
        "engagementRate": c.engagement_rate,
        "accountCategory": c.account_category or MISSING_TEXT,
        "matchedPosts": [_post(p, platform) for p, _ in match.matched_posts[:MAX_SHOWN_POSTS]],
        "recentPosts": [_post(p, platform) for p in match.recent_posts[:MAX_SHOWN_POSTS]],
    }


def create_modash_app(runtime: Runtime) -> FastAPI:
    """The Modash-compatible sub-application over ``runtime`` (mount it at ``/v1``)."""
    app = docs_app(title="Lookalike creator search (Modash-compatible)", docs_url="/docs", openapi_url="/openapi.json")
    errors.install(app, render)
    for name in PLATFORMS:
        _search_route(app, runtime, rules(name))
        _dictionary_routes(app, runtime, rules(name))
    return app


def _search_route(app: FastAPI, runtime: Runtime, platform: Platform) -> None:
    # A fixed page size takes no pageSize field (the body model forbids extra fields).
    model = ImageSearchRequest if platform.page_size_max is None else TikTokImageSearchRequest
    max_bytes = runtime.settings.max_query_bytes

    def image_search(body: ImageSearchRequest, request: Request) -> JSONResponse:
        billed = runtime.creator_gateway.image_search(
            request.headers.get("authorization"), platform.name,
            image=lambda: _query_image(body, max_bytes),
            page=body.page, page_size=getattr(body, "pageSize", None), filters=body.filters,
        )
        content = {"error": False, "total": billed.page.total,
                   "profiles": [_profile(m, platform) for m in billed.page.profiles]}
        headers = {"X-Credits-Charged": format_credits(billed.charged_milli),
                   "X-Credits-Left": format_credits(billed.left_milli)}
        return JSONResponse(content, headers=headers)

    image_search.__annotations__["body"] = model
    image_search.__name__ = f"{platform.name}_image_search"
    app.add_api_route(platform.search_path, image_search, methods=["POST"],
                      summary=f"{platform.name.capitalize()} creators whose posts look like an image")


def _limit(limit: int) -> int:
    if not 1 <= limit <= 100:
        raise InvalidParameter("limit: must be an integer from 1 to 100")
    return limit


def _dictionary_routes(app: FastAPI, runtime: Runtime, platform: Platform) -> None:
    name = platform.name

    def authenticate(request: Request) -> None:
        runtime.creator_gateway.authenticate(request.headers.get("authorization"))

    @app.get(f"/{name}/locations", summary=f"Locations for {name} filters, by name prefix")
    def locations(request: Request, query: str = Query("", max_length=100), limit: int = DICTIONARY_LIMIT_DEFAULT) -> dict:
        authenticate(request)
        found = runtime.locations.search(query, _limit(limit))
        return {"error": False, "total": len(found),
                "locations": [{"id": loc.id, "name": loc.name, "title": runtime.locations.title(loc.id)} for loc in found]}

    @app.get(f"/{name}/languages", summary=f"Languages for {name} filters, by code or name prefix")
    def languages(request: Request, query: str = Query("", max_length=100), limit: int = DICTIONARY_LIMIT_DEFAULT) -> dict:
        authenticate(request)
        found = runtime.languages.search(query, _limit(limit))
        return {"error": False, "total": len(found), "languages": [{"code": lang.code, "name": lang.name} for lang in found]}

    def brands(request: Request, query: str = Query("", max_length=100), limit: int = DICTIONARY_LIMIT_DEFAULT) -> dict:
        authenticate(request)
        found = runtime.brands.search(name, query, _limit(limit))
        return {"error": False, "total": len(found), "brands": [{"id": i, "name": n} for i, n in found]}

    app.add_api_route(platform.brands_path, brands, methods=["GET"], summary=f"Brands of {name} creators, by name prefix")
    app.add_api_route(f"/{name}/brands", brands, methods=["GET"], include_in_schema=False)
