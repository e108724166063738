"""What the three OpenAPI documents declare beyond what FastAPI derives from the routes.

FastAPI documents success bodies and a 422 that this API never sends (``errors.py`` answers
every validation error with 400). ``install(app, face)`` replaces the app's ``openapi()`` with
one that, for every operation of the face:

* drops 422 and declares the statuses the face really answers (``Face.statuses``: 400, 401,
  402, 404, 409, 413, 415, 429, 503 as they apply), each with the face's error body;
* declares the security the routes check: bearer admin tokens for writes and the optional
  search key for the operator's reads (from the routes' ``HTTPBearer`` dependencies), a
  bearer Modash token on ``/v1``, the ``key`` query parameter on ``/v2``;
* gives ``tag_filter`` its recursive schema (``TAG_FILTER``) and the ``/v1`` and ``/v2``
  success bodies their schemas (``MODASH_RESPONSES``, ``CONSTRUCTOR_RESPONSE``).

``tests/test_fuzz.py`` holds the API to these documents with schemathesis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_REASONS = {
    400: "Bad input: the message names the field and the rule (INVALID_PARAMETER, INVALID_IMAGE, INVALID_JSON, ...).",
    401: "Missing or wrong credential.",
    402: "Not enough credits; nothing was charged.",
    404: "Not found.",
    409: "Already exists.",
    413: "Body or image over the size limit.",
    415: "Body type not accepted.",
    429: "Rate limited; see Retry-After. Nothing was charged.",
    503: "Busy: the decode budget is taken by other requests; retry after Retry-After seconds.",
}
_NULLABLE_STR = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_SCALAR = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}

#: The tag_filter language of the README (``lookalike.filters``), as a recursive JSON schema.
TAG_FILTER_SCHEMAS: dict[str, Any] = {
    "TagFilter": {
        "description": "A condition, an AND array, or {\"or\": [...]}; nesting up to 8 deep, at most 256 conditions.",
        "anyOf": [
            {"$ref": "#/components/schemas/TagCondition"},
            {"$ref": "#/components/schemas/TagOr"},
            {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/TagFilter"}},
        ],
    },
    "TagCondition": {
        "type": "object",
        "required": ["field", "op", "value"],
        "additionalProperties": False,
        "properties": {
            "field": {"type": "string", "minLength": 1},
            "op": {"enum": ["=", "!=", ">", ">=", "<", "<=", "contains", "not_contains", "in", "not_in"]},
            "value": {"anyOf": [_SCALAR, {"type": "array", "minItems": 1, "maxItems": 1000, "items": _SCALAR}]},
        },
    },
    "TagOr": {
        "type": "object",
        "required": ["or"],
        "additionalProperties": False,
        "properties": {"or": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/TagFilter"}}},
    },
}
TAG_FILTER = {"anyOf": [{"$ref": "#/components/schemas/TagFilter"}, {"type": "null"}]}

_MODASH_POST = {
    "type": "object",
    "required": ["id", "stats"],
    "properties": {"id": {"type": "string"}, "url": _NULLABLE_STR, "thumbnail": _NULLABLE_STR,
                   "stats": {"type": "object", "additionalProperties": {"type": "integer"}}},
}
_MODASH_PROFILE = {
    "type": "object",
    "required": ["userId", "username", "followersCount", "engagementRate", "matchedPosts", "recentPosts"],
    "properties": {
        "userId": {"type": "string"}, "fullName": _NULLABLE_STR, "username": {"type": "string"},
        "profilePicture": _NULLABLE_STR, "followersCount": {"type": "integer", "minimum": 0},
        "engagementRate": {"type": "number"}, "accountCategory": _NULLABLE_STR,
        "matchedPosts": {"type": "array", "items": _MODASH_POST},
        "recentPosts": {"type": "array", "items": _MODASH_POST},
    },
}


def _listing(key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["error", "total", key],
            "properties": {"error": {"const": False}, "total": {"type": "integer", "minimum": 0},
                           key: {"type": "array", "items": item}}}


#: /v1 success bodies, by the last segment of the path.
MODASH_RESPONSES: dict[str, dict[str, Any]] = {
    "image-search": _listing("profiles", _MODASH_PROFILE),
    "locations": _listing("locations", {"type": "object", "required": ["id", "name"],
                                        "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                                       "title": _NULLABLE_STR}}),
    "languages": _listing("languages", {"type": "object", "required": ["code", "name"],
                                        "properties": {"code": {"type": "string"}, "name": {"type": "string"}}}),
    "brands": _listing("brands", {"type": "object", "required": ["id", "name"],
                                  "properties": {"id": {"type": ["integer", "string"]}, "name": {"type": "string"}}}),
}
_BBOX = {"type": "object", "required": ["x", "y", "width", "height"],
         "properties": {k: {"type": "integer"} for k in ("x", "y", "width", "height")}}
_CONSTRUCTOR_ITEM = {
    "type": "object",
    "required": ["value", "data", "score", "matched_segment"],
    "properties": {
        "value": {"type": "string"},
        "data": {"type": "object", "properties": {"id": {"type": "string"}}},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "matched_segment": {"anyOf": [{"type": "null"}, {"type": "object", "required": ["index", "bbox"],
                                                        "properties": {"index": {"type": "integer"}, "bbox": _BBOX}}]},
    },
}
#: /v2/image_search's success body.
CONSTRUCTOR_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["response", "result_id", "request"],
    "properties": {
        "response": {"type": "object", "required": ["results", "total_num_results"],
                     "properties": {"results": {"type": "array", "items": _CONSTRUCTOR_ITEM},
                                    "total_num_results": {"type": "integer", "minimum": 0},
                                    "segments": {"type": "array", "items": {"type": "object"}}}},
        "result_id": {"type": "string"},
        "request": {"type": "object"},
    },
}


@dataclass(frozen=True)
class Face:
    """How one face answers, for its OpenAPI document.

    Attributes:
        error: JSON schema of its error body.
        statuses: the error statuses every operation may answer.
        schemes: extra ``components.securitySchemes``.
        security: (path, method) -> the operation's security requirements; None keeps FastAPI's.
        success: (path, method) -> the success body's schema; None keeps FastAPI's.
        optional_schemes: schemes whose requirement may be absent (the search key, unless set).
    """

    error: dict[str, Any]
    statuses: tuple[int, ...]
    schemes: dict[str, Any] = field(default_factory=dict)
    security: Callable[[str, str], list[dict[str, list]] | None] = lambda path, method: None
    success: Callable[[str, str], dict[str, Any] | None] = lambda path, method: None
    optional_schemes: tuple[str, ...] = ()


OPERATOR = Face(
    error={"type": "object", "required": ["status", "message", "data"],
           "properties": {"status": {"type": "string"}, "message": {"type": "string"}, "data": {"type": "null"}}},
    statuses=(400, 401, 404, 409, 413, 503),
    optional_schemes=("searchKey",),
)
MODASH = Face(
    error={"type": "object", "required": ["error", "code", "message"],
           "properties": {"error": {"const": True}, "code": {"type": "string"}, "message": {"type": "string"}}},
    statuses=(400, 401, 402, 404, 413, 429, 503),
    schemes={"modashToken": {"type": "http", "scheme": "bearer",
                             "description": "Creator-search token: `lookalike tokens create --credits N`."}},
    security=lambda path, method: [{"modashToken": []}],
    success=lambda path, method: MODASH_RESPONSES.get(path.rsplit("/", 1)[-1]),
)
CONSTRUCTOR = Face(
    error={"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
    statuses=(400, 401, 404, 413, 415, 503),
    schemes={"indexKey": {"type": "apiKey", "in": "query", "name": "key",
                          "description": "Index key: `lookalike keys create --section Products=LIBRARY`."}},
    security=lambda path, method: [{"indexKey": []}],
    success=lambda path, method: CONSTRUCTOR_RESPONSE,
)


def install(app: FastAPI, face: Face) -> None:
    """Make ``app.openapi()`` build FastAPI's document and complete it for ``face`` (once, cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, servers=app.servers or None)
            complete(schema, face)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any], face: Face) -> None:
    """Add ``face``'s statuses, error bodies, security and success schemas to a FastAPI document, in place."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(TAG_FILTER_SCHEMAS)
    schemas["Error"] = face.error
    if face.schemes:
        components.setdefault("securitySchemes", {}).update(face.schemes)
    for model in schemas.values():
        properties = model.get("properties", {}) if isinstance(model, dict) else {}
        if "tag_filter" in properties:
            description = properties["tag_filter"].get("description")
            properties["tag_filter"] = {**TAG_FILTER, **({"description": description} if description else {})}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for status in face.statuses:
                responses[str(status)] = {
                    "description": _REASONS[status],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            success = face.success(path, method)
            if success is not None:
                ok = next((s for s in responses if s.startswith("2")), "200")
                responses[ok] = {"description": "Success.", "content": {"application/json": {"schema": success}}}
            security = face.security(path, method)
            if security is not None:
                op["security"] = security
            elif any(name in req for req in op.get("security", ()) for name in face.optional_schemes):
                op["security"] = [*op["security"], {}]  # open unless the operator set the key
