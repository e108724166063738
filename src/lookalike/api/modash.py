"""The Modash-compatible creator-search API, mounted at ``/v1``.

Request and response shapes follow Modash's image-search and dictionary endpoints
(``POST /ai/image-search``, ``POST /ai/tiktok/image-search``, ``GET /{platform}/locations``,
``GET /{platform}/languages``, ``GET /ai/brands``), so existing clients work against
``http://HOST:PORT/v1`` unchanged. Errors use Modash's style
``{"error": true, "code": ..., "message": ...}``; this sub-application installs its own
handlers so the operator API's envelope never leaks in.

Every endpoint needs ``Authorization: Bearer <token>`` (``lookalike tokens create``). Searches
are rate-limited per token and endpoint and charged in credits (``service.access``); the
dictionaries are free.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidImage, InvalidParameter, LookalikeError, RateLimited
from ..imaging import decode_base64, decode_image, image_format
from ..runtime import Runtime
from ..service.access import cost_milli, format_credits, min_cost_milli
from ..service.creator_filters import check_page, check_page_size, parse_filters
from ..service.dictionaries import search_names
from ..store.creator_types import PostRecord
from .docs import docs_app
from .envelope import _field

log = logging.getLogger(__name__)

#: The ``imageType`` values Modash accepts, and the Pillow format each must decode as.
IMAGE_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
#: Modash pages Instagram image-search results by 6 profiles.
INSTAGRAM_PAGE_SIZE = 6
DICTIONARY_LIMIT_DEFAULT = 10
MAX_SHOWN_POSTS = 5


class ImageSearchRequest(BaseModel):
    """Body of ``POST /ai/image-search`` (Instagram)."""

    model_config = ConfigDict(extra="forbid")

    imageType: str
    base64Image: str
    # null means the default, as in ``creator_filters`` (clients send empty form fields that way).
    # Strict: true or "2" is a client bug, not page 1 or 2.
    page: StrictInt | None = 0
    filters: dict[str, Any] | None = None


class TikTokImageSearchRequest(ImageSearchRequest):
    """Body of ``POST /ai/tiktok/image-search``; pages are ``pageSize`` profiles long."""

    pageSize: StrictInt | None = None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": True, "code": code, "message": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LookalikeError)
    async def _lookalike(_: Request, exc: LookalikeError) -> JSONResponse:
        if exc.http_status >= 500:
            log.exception("internal error", exc_info=exc)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return _error(exc.http_status, getattr(exc, "code", None) or exc.status.lower(), exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            return _error(400, "invalid_parameter", "body: is not valid JSON")
        message = "; ".join(f"{_field(tuple(e['loc']))}: {e['msg']}" for e in errors[:5]) or "invalid request"
        return _error(400, "invalid_parameter", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return _error(500, "internal_error", "Internal server error.")


def _query_image(body: ImageSearchRequest, max_bytes: int, max_pixels: int):
    """Decode ``base64Image`` and check it is what ``imageType`` says.

    Raises:
        InvalidParameter: ``imageType`` is not one of ``IMAGE_TYPES``, or the bytes are another format.
        InvalidImage: not base64, over ``max_bytes`` bytes, or not a decodable image.
    """
    if body.imageType not in IMAGE_TYPES:
        raise InvalidParameter(f"imageType: must be one of {', '.join(IMAGE_TYPES)}")
    data = decode_base64(body.base64Image, field="base64Image", max_bytes=max_bytes)
    actual = image_format(data)
    if actual is not None and actual != IMAGE_TYPES[body.imageType]:
        raise InvalidImage(f"imageType: is {body.imageType} but base64Image holds a {actual} image")
    return decode_image(data, field="base64Image", max_pixels=max_pixels)


def _stats(post: PostRecord, platform: str) -> dict[str, int]:
    keys = ("likesCount", "commentsCount") + (("sharesCount", "playsCount", "collectsCount") if platform == "tiktok" else ())
    return {k: int(post.stats.get(k, 0)) for k in keys}


def _post(post: PostRecord, platform: str) -> dict[str, Any]:
    return {"id": post.post_id, "url": post.url, "thumbnail": post.thumbnail, "stats": _stats(post, platform)}


def _profile(match, platform: str) -> dict[str, Any]:
    c = match.creator
    return {
        "userId": c.user_id,
        "fullName": c.full_name,
        "username": c.username,
        "profilePicture": c.profile_picture,
        "followersCount": c.followers_count,
        "engagementRate": c.engagement_rate,
        "accountCategory": c.account_category,
        "matchedPosts": [_post(p, platform) for p, _ in match.matched_posts[:MAX_SHOWN_POSTS]],
        "recentPosts": [_post(p, platform) for p in match.recent_posts[:MAX_SHOWN_POSTS]],
    }


def create_modash_app(runtime: Runtime) -> FastAPI:
    """The Modash-compatible sub-application over ``runtime`` (mount it at ``/v1``)."""
    app = docs_app(title="Lookalike creator search (Modash-compatible)", docs_url="/docs", openapi_url="/openapi.json")
    _install_error_handlers(app)
    settings = runtime.settings

    def authenticate(request: Request):
        return runtime.access.authenticate(request.headers.get("authorization"))

    def search(platform: str, endpoint: str, body: ImageSearchRequest, request: Request) -> JSONResponse:
        token = authenticate(request)
        page_size = INSTAGRAM_PAGE_SIZE
        if isinstance(body, TikTokImageSearchRequest):
            page_size = check_page_size(platform, body.pageSize)
        page = check_page(body.page, page_size)
        query = parse_filters(platform, _brand_names(runtime, platform, body.filters))
        if query.locations:
            runtime.locations.validate_ids(body.filters["locations"], "filters.locations")  # type: ignore[index]
        image = _query_image(body, settings.max_query_bytes, settings.max_image_pixels)
        # Validation first, so malformed requests neither take the rate-limit slot nor cost credits.
        runtime.access.admit(token, endpoint)
        runtime.access.require(token, min_cost_milli(platform))
        result = runtime.creator_search.search(platform, image, query, page=page, page_size=page_size)
        # Charged last, once, all or nothing: anything that failed above cost nothing.
        receipt = runtime.access.charge(token, cost_milli(platform, len(result.profiles)))
        content = {"error": False, "total": result.total, "profiles": [_profile(m, platform) for m in result.profiles]}
        headers = {"X-Credits-Charged": format_credits(receipt.charged_milli),
                   "X-Credits-Left": format_credits(receipt.left_milli)}
        return JSONResponse(content, headers=headers)

    @app.post("/ai/image-search", summary="Instagram creators whose posts look like an image")
    def instagram_image_search(body: ImageSearchRequest, request: Request) -> JSONResponse:
        return search("instagram", "ai/image-search", body, request)

    @app.post("/ai/tiktok/image-search", summary="TikTok creators whose posts look like an image")
    def tiktok_image_search(body: TikTokImageSearchRequest, request: Request) -> JSONResponse:
        return search("tiktok", "ai/tiktok/image-search", body, request)

    def limit_of(limit: int) -> int:
        if not 1 <= limit <= 100:
            raise InvalidParameter("limit: must be an integer from 1 to 100")
        return limit

    for platform in ("instagram", "tiktok"):
        _dictionary_routes(app, runtime, platform, authenticate, limit_of)
    return app


def _brand_names(runtime: Runtime, platform: str, filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Brands may be given by the ids of ``/ai/brands`` or by name; the search matches names."""
    brands = filters.get("brands") if isinstance(filters, dict) else None
    if not isinstance(brands, list) or not any(isinstance(b, int) and not isinstance(b, bool) for b in brands):
        return filters
    by_id = {brand_id(name): name for name in runtime.creators.brands(platform)}
    names = []
    for i, b in enumerate(brands):
        if isinstance(b, int) and not isinstance(b, bool):
            if b not in by_id:
                raise InvalidParameter(f"filters.brands[{i}]: unknown brand id {b} (see /ai/brands)")
            names.append(by_id[b])
        else:
            names.append(b)
    return {**filters, "brands": names}


def brand_id(name: str) -> int:
    """A stable positive id for a brand name (CRC-32 of its lower-case UTF-8 form)."""
    import zlib

    return zlib.crc32(name.strip().lower().encode())


def _dictionary_routes(app: FastAPI, runtime: Runtime, platform: str, authenticate, limit_of) -> None:
    brands_path = "/ai/brands" if platform == "instagram" else "/ai/tiktok/brands"

    @app.get(f"/{platform}/locations", summary=f"Locations for {platform} filters, by name prefix")
    def locations(request: Request, query: str = Query("", max_length=100), limit: int = DICTIONARY_LIMIT_DEFAULT) -> dict:
        authenticate(request)
        found = runtime.locations.search(query, limit_of(limit))
        return {"error": False, "total": len(found),
                "locations": [{"id": loc.id, "name": loc.name, "title": runtime.locations.title(loc.id)} for loc in found]}

    @app.get(f"/{platform}/languages", summary=f"Languages for {platform} filters, by code or name prefix")
    def languages(request: Request, query: str = Query("", max_length=100), limit: int = DICTIONARY_LIMIT_DEFAULT) -> dict:
        authenticate(request)
        found = runtime.languages.search(query, limit_of(limit))
        return {"error": False, "total": len(found), "languages": [{"code": lang.code, "name": lang.name} for lang in found]}

    def brands(request: Request, query: str = Query("", max_length=100), limit: int = DICTIONARY_LIMIT_DEFAULT) -> dict:
        authenticate(request)
        found = search_names(runtime.creators.brands(platform), query, limit_of(limit))
        return {"error": False, "total": len(found), "brands": [{"id": brand_id(n), "name": n} for n in found]}

    app.add_api_route(brands_path, brands, methods=["GET"], summary=f"Brands of {platform} creators, by name prefix")
    app.add_api_route(f"/{platform}/brands", brands, methods=["GET"], include_in_schema=False)
