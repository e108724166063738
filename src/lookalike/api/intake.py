"""The one image intake of the HTTP faces: a request's query image -> checked bytes.

Three carriers, one size rule (``max_bytes``, checked once, where the bytes are known):

* base64 text in a JSON field (``from_base64``; the operator API and Modash);
* a whole request body (``body_image``; Constructor): JSON ``{"image_base64": ...}``,
  ``multipart/form-data`` with a file field ``image``, or the raw bytes
  (``application/octet-stream`` / ``image/*``).

Decoding the bytes to pixels is the service's business (``SearchService.search_image``).
"""

from __future__ import annotations

import json

from fastapi import Request
from starlette.datastructures import UploadFile

from ..errors import InvalidImage, InvalidParameter, PayloadTooLarge, UnsupportedMediaType
from ..imaging import decode_base64
from .errors import invalid_json

#: Room for JSON / multipart framing around a base64 image (4/3 of its bytes), in bytes.
BODY_OVERHEAD = 64 * 1024
JSON_FIELDS = ("image_base64", "image")
RAW_TYPES = ("application/octet-stream",)
_BODY_HELP = ("send JSON {\"image_base64\": ...}, multipart/form-data with a file field 'image', or the raw"
              " image bytes as application/octet-stream or image/*")


def from_base64(
    text: object, *, field: str, max_bytes: int, too_large: type[InvalidParameter] = InvalidImage
) -> bytes:
    """The bytes of a base64 image (or ``data:`` URL), 1..``max_bytes`` long.

    Raises:
        InvalidImage: not a string, empty, not base64 (naming ``field``); ``too_large``
            (default InvalidImage, 400): over ``max_bytes``.
    """
    return decode_base64(text, field=field, max_bytes=max_bytes, too_large=too_large)  # type: ignore[arg-type]


def checked(data: bytes, *, field: str, max_bytes: int, too_large: type[InvalidParameter] = InvalidImage) -> bytes:
    """``data`` if it is 1..``max_bytes`` bytes. Raises ``too_large`` over the limit, InvalidImage when empty."""
    if len(data) > max_bytes:
        raise too_large(f"{field}: image is {len(data)} bytes, larger than the limit of {max_bytes} bytes")
    if not data:
        raise InvalidImage(f"{field}: the image is empty")
    return data


async def body_image(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The query image a request body carries, and the field that carried it (named in errors).

    Raises:
        InvalidParameter / InvalidImage (400), PayloadTooLarge (413), UnsupportedMediaType (415).
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes * 4 // 3 + BODY_OVERHEAD:
        raise PayloadTooLarge(f"body: {declared} bytes, more than a query image of at most {max_bytes} bytes needs")
    if content_type == "multipart/form-data":
        return await _multipart(request, max_bytes), "image"
    if content_type == "application/json":
        limit = max_bytes * 4 // 3 + BODY_OVERHEAD
        return _json_image(await _body(request, limit, f"body: larger than the {limit} bytes that a JSON body"
                                       f" with an image of the limit of {max_bytes} bytes needs"), max_bytes)
    if content_type in RAW_TYPES or content_type.startswith("image/"):
        too_large = f"body: image is larger than the limit of {max_bytes} bytes"
        data = await _body(request, max_bytes, too_large)
        return checked(data, field="body", max_bytes=max_bytes, too_large=PayloadTooLarge), "body"
    if not content_type:
        if not await _body(request, BODY_OVERHEAD, "body: no Content-Type header; " + _BODY_HELP):
            raise InvalidParameter("body: missing the query image; " + _BODY_HELP)
        raise UnsupportedMediaType("body: no Content-Type header; " + _BODY_HELP)
    raise UnsupportedMediaType(f"body: Content-Type '{content_type[:64]}' is not accepted; " + _BODY_HELP)


async def _body(request: Request, limit: int, too_large: str) -> bytes:
    """The body, read as it streams in; ``PayloadTooLarge(too_large)`` as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def _json_image(body: bytes, max_bytes: int) -> tuple[bytes, str]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise invalid_json(exc) from None
    if not isinstance(payload, dict):
        raise InvalidParameter("body: must be a JSON object {\"image_base64\": ...}")
    extra = sorted(set(payload) - set(JSON_FIELDS))
    if extra:
        raise InvalidParameter(f"body.{extra[0][:64]}: unknown field; the body takes image_base64 (or image)")
    given = [f for f in JSON_FIELDS if f in payload]
    if len(given) != 1:
        raise InvalidParameter("body: give exactly one of image_base64 or image")
    field = given[0]
    return from_base64(payload[field], field=field, max_bytes=max_bytes, too_large=PayloadTooLarge), field


async def _multipart(request: Request, max_bytes: int) -> bytes:
    try:
        form = await request.form(max_files=1, max_fields=20)
    except Exception:  # noqa: BLE001 - Starlette raises several types on malformed multipart bodies
        raise InvalidParameter("body: malformed multipart/form-data (one file field 'image' expected)") from None
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InvalidParameter("image: multipart bodies need a file field named 'image'")
        return checked(await upload.read(max_bytes + 1), field="image", max_bytes=max_bytes, too_large=PayloadTooLarge)
    finally:
        await form.close()
