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
  As Constructor's document says, ``return_segments`` applies only with
  ``use_segmentation=true``: alone it runs no detection and adds no ``segments``.

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
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import LibraryNotFound, LookalikeError, NotFound
from ..runtime import Runtime
from ..service.index_keys import MAX_KEY_CHARS
from ..service.search import ImageQueryResult, SearchResult, SegmentMatch
from . import errors, intake, observability, segments
from .constructor_params import RESULTS_CAP, ImageSearchParams, apply_fields, group_results, parse_query
from .docs import docs_app
from .errors import Problem

log = logging.getLogger(__name__)



def create_constructor_app(runtime: Runtime) -> FastAPI:
    """The sub-application to mount at ``/v2`` (its OpenAPI docs at ``/v2/docs``), with its
    own error handlers so the operator API's envelope never shows here."""
    app = docs_app(title="Lookalike: Constructor-compatible image search", version=__version__)
    app.state.runtime = runtime
    errors.install(app, render)

    @app.post("/image_search", openapi_extra=_OPENAPI, tags=["image search"])
    async def image_search(request: Request) -> JSONResponse:
        """Products (or another section's items) most similar to the query image, optionally
        item by item (``use_segmentation``). See the module docs for every parameter."""
        return JSONResponse(await _image_search(runtime, request))

    return app


async def _image_search(runtime: Runtime, request: Request) -> dict[str, Any]:
    started = time.perf_counter()
    entry: dict[str, Any] = {"key": (request.query_params.get("key") or "")[:MAX_KEY_CHARS] or None}
    observability.annotate(request, constructor=entry)  # filled in below; the access line carries it too
    status = 500
    try:
        sections = await run_in_threadpool(runtime.keys.sections, request.query_params.get("key"))
        params = parse_query(request.query_params.multi_items())
        entry.update(_log_params(params))
        library = entry["library"] = runtime.keys.library(sections, params.section)
        data, field = await intake.body_image(request, runtime.settings.max_query_bytes)
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


def _search(
    runtime: Runtime, library: str, data: bytes, field: str, params: ImageSearchParams
) -> tuple[dict[str, Any], int]:
    """The response body, and how many segments the query had (for the log line)."""
    try:
        found = runtime.search.search_image(
            library, data, field=field, top_k=RESULTS_CAP, tag_filter=params.tag_filter(),
            use_segmentation=params.use_segmentation, crop_type=params.search_crop_type,
            # the segments' boxes are needed for matched_segment even when not returned;
            # without use_segmentation nothing is detected (return_segments alone does nothing)
            return_segments=params.use_segmentation,
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
    if params.return_segments and params.use_segmentation:
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
        matched = {"index": result.segment, "bbox": segments.bbox(boxes[result.segment])}
    value = str(name) if name is not None and name != "" else result.image_id
    return {"value": value, "data": data, "score": result.score, "matched_segment": matched}


def _trimmed(item: dict[str, Any], params: ImageSearchParams) -> dict[str, Any]:
    return {**item, "data": apply_fields(item["data"], params.fmt_options)}


def _segment(segment: SegmentMatch, boxes: dict, params: ImageSearchParams) -> dict[str, Any]:
    own = [_trimmed(_item(r, boxes), params) for r in segment.results[: params.num_results_per_page]]
    return segments.segment(segment, own)


# --- errors and logging ------------------------------------------------------------------


def _log_params(params: ImageSearchParams) -> dict[str, Any]:
    return {
        "section": params.section, "page": params.page, "num_results_per_page": params.num_results_per_page,
        "filters": sorted(params.filters), "use_segmentation": params.use_segmentation,
        "search_crop_type": params.search_crop_type, "return_segments": params.return_segments,
        "variations_map": params.variations_map is not None,
        "i": params.i, "s": params.s, "ui": params.ui, "us": params.us, "c": params.c,
    }


def render(problem: Problem) -> JSONResponse:
    """Constructor's error body: ``{"message": "<parameter>: <rule>"}``; a request-validation
    error names only its first field, dotted (``fmt_options.fields``)."""
    message = problem.message
    if problem.validation and problem.validation[0].get("type") != "json_invalid":
        first = problem.validation[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query")) or "body"
        message = f"{where}: {first.get('msg')}"
    return JSONResponse(status_code=problem.http_status, content={"message": message}, headers=problem.headers)


def _query(name: str, description: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


_STR = {"type": "string"}
_OPENAPI: dict[str, Any] = {
    "parameters": [
        _query("key", "Index key (`lookalike keys create`).", _STR, required=True),
        _query("section", "Section of the key, naming the library searched.",
               {**_STR, "default": "Products", "minLength": 1, "maxLength": 100}),
        _query("use_segmentation", "Detect the items of the image and search each.", {"type": "boolean"}),
        _query("search_crop_type", "Crop searched per item.", {"enum": ["bbox", "segment"], "default": "bbox"}),
        _query("return_segments", "With use_segmentation=true: return the detected segments with their own results.",
               {"type": "boolean"}),
        _query("num_results_per_page", "Results per page.", {"type": "integer", "minimum": 1, "maximum": 200,
                                                             "default": 20}),
        _query("page", "1-based page; pages reach the first 1000 results.", {"type": "integer", "minimum": 1}),
        _query("filters[NAME]", "Tag filter, repeatable: values of one name OR, names AND.", _STR),
        _query("fmt_options[NAME]", "Format options; fmt_options[fields] trims data.", _STR),
        _query("fmt_options", 'Format options as one JSON object, e.g. {"fields": ["price"]}.', _STR),
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
