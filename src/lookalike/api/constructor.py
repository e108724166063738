"""The Constructor-compatible image search, mounted at ``/v2``: ``POST /v2/image_search``.

Clients of Constructor's "Retrieve by image" (v2) work against ``http://HOST:PORT/v2``: same
path, query parameters and response shape. An index key (``lookalike keys create``) maps
each of its sections to one library.

Request: ``POST /v2/image_search?key=KEY[&section=Products][&...]``; the parameters and
their rules are in :mod:`lookalike.api.constructor_params`. The body is the query image,
at most ``settings.max_query_bytes`` bytes, as one of:

* ``application/json``: ``{"image_base64": "<base64 or data: URL>"}`` (``image`` is
  accepted as the field name too);
* ``multipart/form-data`` with a file field ``image``;
* the raw bytes (``application/octet-stream`` or ``image/*``), as Constructor's clients send.

Response (200)::

    {"response": {"results": [{"value", "data": {"id", "image_url", "url"?, ...}, "score",
                               "matched_segment", "variations_map"?}],
                  "total_num_results": N,
                  "segments": [...]},            # only with return_segments=true
     "result_id": "<uuid4>",
     "request": {<the parsed parameters>}}

* ``value``: the image's ``name`` tag, else its ``image_id``. ``data``: ``id`` (the
  ``image_id``), ``image_url`` (the ``image_uri``, else an ``image_url`` tag), then every
  other tag except ``name`` (``url`` among them when tagged); ``fmt_options[fields]``
  trims it. ``score``: the calibrated similarity in 0..1 (``lookalike.scoring``), beside
  ``data`` so that ``data`` stays the catalogue item.
* ``matched_segment``: with ``use_segmentation``, ``{"index", "bbox": {"x", "y", "width",
  "height"}}`` of the query segment whose search found the result (pixels of the query
  image as sent); ``null`` otherwise.
* Results: with ``use_segmentation``, the segments' results de-duplicated and interleaved
  round-robin (``service.search.interleave``): no segment starves the others.
* Paging: every page is a slice of one ranking of the first ``RESULTS_CAP`` (1000) results
  (``search_image(top_k=1000)``), so pages never overlap nor skip a result, even where a
  longer list would re-rank (segments' de-duplication, the ANN beam widening with top_k).
* ``total_num_results``: the length of that ranking: ``min(1000, images passing the
  filters)`` (with segmentation: the distinct images the segments found, up to 1000); with
  ``variations_map``, the number of groups in it. Pages reach exactly that many results.
* ``segments`` (``return_segments=true``): ``[{"index", "bbox": {x, y, width, height},
  "mask_area" (pixels), "label" (null for U²-Netp), "score" (detector confidence 0..1),
  "results": the segment's own best num_results_per_page results}]``; the main item first.
  Without ``use_segmentation`` the segments are returned but ``results`` stay the plain
  query's.

Errors (Constructor's style, ``{"message": "<parameter>: <rule>"}``): 400 bad input (a
parameter, the body, undecodable image bytes); 401 a missing or unknown ``key``; 404 a
section the key does not have (or whose library was deleted); 413 an image over the size
limit; 415 a body type other than the three above; 500 only for a bug (logged).

Every request logs one line on the ``lookalike.api.constructor`` logger: a JSON object with
key, section, library, status, result_id, counts, latency and the ids ``i``, ``s``, ``ui``,
``us``, ``c`` (also on the record as ``record.constructor``); never the image.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import InvalidImage, InvalidParameter, LibraryNotFound, LookalikeError, NotFound
from ..imaging import decode_base64
from ..runtime import Runtime
from ..service.search import ImageQueryResult, SearchResult, SegmentMatch
from ..store.index_keys import KeyNotFound, SectionNotFound
from .constructor_params import RESULTS_CAP, ImageSearchParams, apply_fields, group_results, parse_query
from .docs import docs_app

log = logging.getLogger(__name__)

#: Room for JSON / multipart framing around a base64 image (4/3 of its bytes), in bytes.
BODY_OVERHEAD = 64 * 1024
MAX_KEY_CHARS = 64
JSON_FIELDS = ("image_base64", "image")
RAW_TYPES = ("application/octet-stream",)


class KeyRejected(LookalikeError):
    """A missing or unknown index key (HTTP 401)."""

    http_status = 401
    status = "INVALID_KEY"


class PayloadTooLarge(InvalidParameter):
    """The query image is over ``max_query_bytes`` (HTTP 413)."""

    http_status = 413
    status = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(InvalidParameter):
    """A body type other than JSON, multipart or raw image bytes (HTTP 415)."""

    http_status = 415
    status = "UNSUPPORTED_MEDIA_TYPE"


def create_constructor_app(runtime: Runtime) -> FastAPI:
    """The sub-application to mount at ``/v2`` (its OpenAPI docs at ``/v2/docs``), with its
    own error handlers so the operator API's envelope never shows here."""
    app = docs_app(title="Lookalike: Constructor-compatible image search", version=__version__)
    app.state.runtime = runtime
    _install_error_handlers(app)

    @app.post("/image_search", openapi_extra=_OPENAPI, tags=["image search"])
    async def image_search(request: Request) -> JSONResponse:
        """Products (or another section's items) most similar to the query image, optionally
        item by item (``use_segmentation``). See the module docs for every parameter."""
        return JSONResponse(await _image_search(runtime, request))

    return app


async def _image_search(runtime: Runtime, request: Request) -> dict[str, Any]:
    started = time.perf_counter()
    entry: dict[str, Any] = {"key": (request.query_params.get("key") or "")[:MAX_KEY_CHARS] or None}
    status = 500
    try:
        sections = await run_in_threadpool(_sections, runtime, request.query_params.get("key"))
        params = parse_query(request.query_params.multi_items())
        entry.update(_log_params(params))
        library = entry["library"] = _library(sections, params.section)
        data, field = await _read_image(request, runtime.settings.max_query_bytes)
        entry["image_bytes"] = len(data)
        body, segments = await run_in_threadpool(_search, runtime, library, data, field, params)
        entry.update(result_id=body["result_id"], results=len(body["response"]["results"]),
                     total_num_results=body["response"]["total_num_results"], segments=segments)
        status = 200
        return body
    except LookalikeError as exc:
        status = exc.http_status
        entry["message"] = exc.message
        raise
    except Exception as exc:
        # Answered (and logged once, with this cause) by the LookalikeError handler: an
        # exception left to Starlette would also propagate to the parent app's handlers.
        raise LookalikeError("Internal server error.") from exc
    finally:
        entry.update(status=status, latency_ms=round((time.perf_counter() - started) * 1000, 1))
        log.info("image_search %s", json.dumps(entry, default=str), extra={"constructor": entry})


def _sections(runtime: Runtime, key: str | None) -> dict[str, str]:
    if not key:
        raise KeyRejected("key: missing; every request needs its index key, e.g. ?key=key_K2pX7vBnU0bgA5xp")
    try:
        if len(key) > MAX_KEY_CHARS:
            raise KeyNotFound(key[:MAX_KEY_CHARS])
        return runtime.keys.get(key)
    except KeyNotFound:
        raise KeyRejected(f"key: unknown index key '{key[:MAX_KEY_CHARS]}'; an operator creates keys with"
                          " `lookalike keys create`") from None


def _library(sections: dict[str, str], section: str) -> str:
    if section not in sections:
        known = ", ".join(sorted(sections)) or "none"
        raise NotFound(f"section: this key has no section '{section}' (its sections: {known})",
                       status=SectionNotFound.status)
    return sections[section]


def _search(
    runtime: Runtime, library: str, data: bytes, field: str, params: ImageSearchParams
) -> tuple[dict[str, Any], int]:
    """The response body, and how many segments the query had (for the log line)."""
    try:
        found = runtime.search.search_image(
            library, data, field=field, top_k=RESULTS_CAP, tag_filter=params.tag_filter(),
            use_segmentation=params.use_segmentation, crop_type=params.search_crop_type,
            # the segments' boxes are needed for matched_segment even when not returned
            return_segments=params.use_segmentation or params.return_segments,
        )
    except LibraryNotFound:
        raise NotFound(f"section: the library of section '{params.section}' no longer exists; an operator"
                       " points it elsewhere with `lookalike keys set-section`", status="LIBRARY_NOT_FOUND") from None
    return _response(found, params), len(found.segments or ())


def _response(found: ImageQueryResult, params: ImageSearchParams) -> dict[str, Any]:
    boxes = {s.index: s.bbox for s in found.segments or ()}
    end = params.offset + params.num_results_per_page
    if params.variations_map is not None:  # groups need every result's data
        ranked = group_results([_item(r, boxes) for r in found.results], params.variations_map)
        page, total = ranked[params.offset: end], len(ranked)
    else:  # format only the page: the ranking may hold 1000 results
        page, total = [_item(r, boxes) for r in found.results[params.offset: end]], len(found.results)
    response: dict[str, Any] = {"results": [_trimmed(item, params) for item in page], "total_num_results": total}
    if params.return_segments:
        response["segments"] = [_segment(s, boxes, params) for s in found.segments or ()]
    return {"response": response, "result_id": str(uuid.uuid4()), "request": params.echo()}


def _item(result: SearchResult, boxes: dict[int, tuple[int, int, int, int]]) -> dict[str, Any]:
    tags = result.tags
    name = tags.get("name")
    data: dict[str, Any] = {
        "id": result.image_id,
        "image_url": result.image_uri if result.image_uri is not None else tags.get("image_url"),
    }
    data.update((k, v) for k, v in tags.items() if k != "name" and k not in data)
    matched = None
    if result.segment is not None and result.segment in boxes:
        matched = {"index": result.segment, "bbox": _bbox(boxes[result.segment])}
    value = str(name) if name is not None and name != "" else result.image_id
    return {"value": value, "data": data, "score": result.score, "matched_segment": matched}


def _trimmed(item: dict[str, Any], params: ImageSearchParams) -> dict[str, Any]:
    return {**item, "data": apply_fields(item["data"], params.fmt_options)}


def _segment(segment: SegmentMatch, boxes: dict, params: ImageSearchParams) -> dict[str, Any]:
    own = [_trimmed(_item(r, boxes), params) for r in segment.results[: params.num_results_per_page]]
    return {"index": segment.index, "bbox": _bbox(segment.bbox), "mask_area": segment.mask_area,
            "label": segment.label, "score": segment.score, "results": own}


def _bbox(box: tuple[int, int, int, int]) -> dict[str, int]:
    x, y, width, height = box
    return {"x": x, "y": y, "width": width, "height": height}


# --- the body ----------------------------------------------------------------------------


async def _read_image(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The query image bytes and the body field that carried them (named in errors).

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
        return _checked_size(await _body(request, max_bytes, too_large), max_bytes, "body"), "body"
    if not content_type:
        if not await _body(request, BODY_OVERHEAD, "body: no Content-Type header; " + _BODY_HELP):
            raise InvalidParameter("body: missing the query image; " + _BODY_HELP)
        raise UnsupportedMediaType("body: no Content-Type header; " + _BODY_HELP)
    raise UnsupportedMediaType(f"body: Content-Type '{content_type[:64]}' is not accepted; " + _BODY_HELP)


_BODY_HELP = ("send JSON {\"image_base64\": ...}, multipart/form-data with a file field 'image', or the raw"
              " image bytes as application/octet-stream or image/*")


async def _body(request: Request, limit: int, too_large: str) -> bytes:
    """The body, read as it streams in; ``PayloadTooLarge(too_large)`` as soon as it passes
    ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def _checked_size(data: bytes, max_bytes: int, field: str) -> bytes:
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{field}: image is {len(data)} bytes, larger than the limit of {max_bytes} bytes")
    if not data:
        raise InvalidImage(f"{field}: the image is empty")
    return data


def _json_image(body: bytes, max_bytes: int) -> tuple[bytes, str]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidParameter("body: is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidParameter("body: must be a JSON object {\"image_base64\": ...}")
    extra = sorted(set(payload) - set(JSON_FIELDS))
    if extra:
        raise InvalidParameter(f"body.{extra[0][:64]}: unknown field; the body takes image_base64 (or image)")
    given = [f for f in JSON_FIELDS if f in payload]
    if len(given) != 1:
        raise InvalidParameter("body: give exactly one of image_base64 or image")
    field, text = given[0], payload[given[0]]
    if isinstance(text, str) and len(text) * 3 // 4 > max_bytes + 3:
        raise PayloadTooLarge(f"{field}: image is larger than the limit of {max_bytes} bytes")
    # decode_base64 is given 3 bytes of slack so that its own size check (a 400) cannot
    # pre-empt the 413 below.
    return _checked_size(decode_base64(text, field=field, max_bytes=max_bytes + 3), max_bytes, field), field


async def _multipart(request: Request, max_bytes: int) -> bytes:
    try:
        form = await request.form(max_files=1, max_fields=20)
    except Exception:  # noqa: BLE001 - Starlette raises several types on malformed multipart bodies
        raise InvalidParameter("body: malformed multipart/form-data (one file field 'image' expected)") from None
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InvalidParameter("image: multipart bodies need a file field named 'image'")
        return _checked_size(await upload.read(max_bytes + 1), max_bytes, "image")
    finally:
        await form.close()


# --- errors and logging ------------------------------------------------------------------


def _log_params(params: ImageSearchParams) -> dict[str, Any]:
    return {
        "section": params.section, "page": params.page, "num_results_per_page": params.num_results_per_page,
        "filters": sorted(params.filters), "use_segmentation": params.use_segmentation,
        "search_crop_type": params.search_crop_type, "return_segments": params.return_segments,
        "variations_map": params.variations_map is not None,
        "i": params.i, "s": params.s, "ui": params.ui, "us": params.us, "c": params.c,
    }


def _message(status_code: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"message": message})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LookalikeError)
    async def _known(_: Request, exc: LookalikeError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("internal error", exc_info=exc)
            return _message(500, "Internal server error.")
        return _message(exc.http_status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = (exc.errors() or [{"loc": (), "msg": "invalid request"}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query")) or "body"
        return _message(400, f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _message(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return _message(500, "Internal server error.")


def _query(name: str, description: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


_STR = {"type": "string"}
_OPENAPI: dict[str, Any] = {
    "parameters": [
        _query("key", "Index key (`lookalike keys create`).", _STR, required=True),
        _query("section", "Section of the key, naming the library searched.", {**_STR, "default": "Products"}),
        _query("use_segmentation", "Detect the items of the image and search each.", {"type": "boolean"}),
        _query("search_crop_type", "Crop searched per item.", {"enum": ["bbox", "segment"], "default": "bbox"}),
        _query("return_segments", "Return the detected segments with their own results.", {"type": "boolean"}),
        _query("num_results_per_page", "Results per page.", {"type": "integer", "minimum": 1, "maximum": 200,
                                                             "default": 20}),
        _query("page", "1-based page; pages reach the first 1000 results.", {"type": "integer", "minimum": 1}),
        _query("filters[NAME]", "Tag filter, repeatable: values of one name OR, names AND.", _STR),
        _query("fmt_options[NAME]", "Format options; fmt_options[fields] trims data.", _STR),
        _query("variations_map", "JSON: group results by a tag and aggregate values.", _STR),
        _query("i", "Client (device) id.", _STR),
        _query("s", "Session number.", {"type": "integer", "minimum": 1}),
        _query("ui", "User id.", _STR),
        _query("us", "User segment, repeatable.", _STR),
        _query("c", "Client version.", _STR),
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {"image_base64": _STR}}},
            "multipart/form-data": {"schema": {"type": "object",
                                               "properties": {"image": {"type": "string", "format": "binary"}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}
