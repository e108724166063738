"""Routes under ``/api/v1/operators/image-search``.

Writes (create, delete, import, patch) need an admin token (``auth.ADMIN``); searches and
reads are open unless the operator set a search key (``auth.SEARCH``). Image ids may hold
``/`` (folder imports: ``skimage/chelsea.png``), so image routes take ``{image_id:path}``; a
route with a fixed suffix after the id (e.g. ``.../images/{image_id}/thumbnail``) must be
declared before them, or the path converter would swallow the suffix.
"""

from __future__ import annotations

import base64
from dataclasses import asdict

from fastapi import APIRouter, Query, Request, Response

from ..runtime import Runtime
from ..service.importer import ImportItem
from ..service.libraries import ImageRecord, LibraryRecord
from ..service.search import SearchResult, SegmentMatch
from . import intake, segments
from .auth import ADMIN, SEARCH
from .envelope import Envelope, ok
from .schemas import (
    CreateLibraryRequest,
    ImageOut,
    ImportImagesOut,
    ImportImagesRequest,
    LibraryOut,
    SearchByImageIdRequest,
    SearchByImageRequest,
    SearchByTextRequest,
    SearchResults,
    UpdateTagsRequest,
)

PREFIX = "/api/v1/operators/image-search"
#: Largest ``offset`` of the image listing: far beyond any library, far inside SQLite's 64-bit integers.
MAX_OFFSET = 10**12

router = APIRouter(prefix=PREFIX)


def _rt(request: Request) -> Runtime:
    return request.app.state.runtime


def _library(record: LibraryRecord) -> dict:
    return {
        "library_name": record.name,
        "mode": record.mode,
        "model": record.model_id,
        "dims": record.dims,
        "image_count": record.image_count,
        "created_at": record.created_at,
    }


def _image(record: ImageRecord) -> dict:
    return asdict(record)


def _result(result: SearchResult) -> dict:
    out = asdict(result)
    data = out.pop("image_bytes")
    out["image_base64"] = base64.b64encode(data).decode() if data is not None else None
    if out["segment"] is None:  # only segmented queries tag results with their segment
        del out["segment"]
    if out["duplicates"] is None:  # only collapsing searches list duplicates
        del out["duplicates"]
    else:
        out["duplicates"] = list(out["duplicates"])
    return out


def _segment(segment: SegmentMatch) -> dict:
    return segments.segment(segment, [_result(r) for r in segment.results])


# exclude_unset: "segments" and a result's "segment" appear only when the query has segments.
@router.post(
    "/search/by-image", response_model=Envelope[SearchResults], response_model_exclude_unset=True, tags=["search"],
    dependencies=SEARCH,
)
def search_by_image(body: SearchByImageRequest, request: Request) -> dict:
    """Images most similar to the query image, best first; with ``use_segmentation``, every
    detected item is searched and the results merged fairly (round-robin over the items)."""
    rt = _rt(request)
    found = rt.search.search_image(
        body.library_name,
        intake.from_base64(body.image_base64, field="image_base64", max_bytes=rt.settings.max_query_bytes),
        field="image_base64",
        top_k=body.top_k,
        tag_filter=body.tag_filter,
        use_segmentation=body.use_segmentation,
        crop_type=body.search_crop_type,
        return_segments=body.return_segments,
        return_image_bytes=body.return_image_base64,
        query_text=body.query_text,
        text_weight=body.text_weight,
        collapse_duplicates=body.collapse_duplicates,
    )
    data: dict = {"results": [_result(r) for r in found.results]}
    if found.segments is not None:
        data["segments"] = [_segment(s) for s in found.segments]
    return ok(data)


@router.post(
    "/search/by-text", response_model=Envelope[SearchResults], response_model_exclude_unset=True, tags=["search"],
    dependencies=SEARCH,
)
def search_by_text(body: SearchByTextRequest, request: Request) -> dict:
    """Images matching a text description, best first (general_search libraries only)."""
    results = _rt(request).search.by_text(
        body.library_name, body.query_text, body.top_k, body.tag_filter, body.return_image_base64,
        collapse_duplicates=body.collapse_duplicates,
    )
    return ok({"results": [_result(r) for r in results]})


@router.post(
    "/search/by-image-id", response_model=Envelope[SearchResults], response_model_exclude_unset=True, tags=["search"],
    dependencies=SEARCH,
)
def search_by_image_id(body: SearchByImageIdRequest, request: Request) -> dict:
    """"More like this": images most similar to a stored image, which is left out of the results."""
    results = _rt(request).search.by_image_id(
        body.library_name, body.image_id, body.top_k, body.tag_filter, body.return_image_base64,
        collapse_duplicates=body.collapse_duplicates,
    )
    return ok({"results": [_result(r) for r in results]})


@router.post("/libraries", status_code=201, response_model=Envelope[LibraryOut], tags=["libraries"], dependencies=ADMIN)
def create_library(body: CreateLibraryRequest, request: Request) -> dict:
    return ok(_library(_rt(request).libraries.create(body.library_name, body.mode, body.model)))


@router.get("/libraries", response_model=Envelope[list[LibraryOut]], tags=["libraries"], dependencies=SEARCH)
def list_libraries(request: Request) -> dict:
    return ok([_library(r) for r in _rt(request).libraries.list()])


@router.get("/libraries/{library_name}", response_model=Envelope[LibraryOut], tags=["libraries"], dependencies=SEARCH)
def get_library(library_name: str, request: Request) -> dict:
    return ok(_library(_rt(request).libraries.get(library_name)))


@router.delete("/libraries/{library_name}", response_model=Envelope[None], tags=["libraries"], dependencies=ADMIN)
def delete_library(library_name: str, request: Request) -> dict:
    _rt(request).libraries.delete(library_name)
    return ok(None)


@router.post(
    "/libraries/{library_name}/images", status_code=201, response_model=Envelope[ImportImagesOut], tags=["images"],
    dependencies=ADMIN,
)
def import_images(library_name: str, body: ImportImagesRequest, request: Request) -> dict:
    """Import up to 1000 images, all or nothing: the first bad image fails the request."""
    items = [
        ImportItem(
            image_id=i.image_id, image_uri=i.image_uri, image_base64=i.image_base64, tags=i.tags, where=f"images[{n}]"
        )
        for n, i in enumerate(body.images)
    ]
    outcome = _rt(request).importer.import_items(library_name, items, skip_existing=body.skip_existing, atomic=True)
    return ok({"added": outcome.added, "skipped": outcome.skipped})


@router.get("/libraries/{library_name}/images", response_model=Envelope[list[ImageOut]], tags=["images"],
            dependencies=SEARCH)
def list_images(
    library_name: str,
    request: Request,
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description=f"Images to skip, 0..{MAX_OFFSET}."),
    limit: int = Query(100, ge=1, le=1000),
) -> dict:
    return ok([_image(r) for r in _rt(request).libraries.list_images(library_name, offset, limit)])


# {image_id:path}: ids made from folder imports hold "/" (``sub/photo.jpg``). Registered before the
# single-image routes, so that one of them taking {image_id:path} too would not shadow it.
@router.get(
    "/libraries/{library_name}/images/{image_id:path}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/webp": {}}}, 304: {"description": "Not modified"}},
    tags=["images"], dependencies=SEARCH,
)
def thumbnail(
    library_name: str,
    image_id: str,
    request: Request,
    size: int = Query(256, description="Longest side in pixels, 16..1024; never enlarged."),
    fmt: str = Query("jpeg", alias="format", description="jpeg or webp"),
) -> Response:
    """The stored image scaled down, for result grids; cached, with an ETag for revalidation."""
    thumb = _rt(request).thumbnails.thumbnail(library_name, image_id, size, fmt)
    # max-age short and private: an id can be deleted and re-imported with other pixels.
    headers = {"ETag": thumb.etag, "Cache-Control": "private, max-age=300"}
    if thumb.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(thumb.data, media_type=thumb.media_type, headers=headers)


@router.get("/libraries/{library_name}/images/{image_id:path}", response_model=Envelope[ImageOut], tags=["images"],
            dependencies=SEARCH)
def get_image(library_name: str, image_id: str, request: Request) -> dict:
    return ok(_image(_rt(request).libraries.get_image(library_name, image_id)))


@router.patch("/libraries/{library_name}/images/{image_id:path}", response_model=Envelope[ImageOut], tags=["images"],
              dependencies=ADMIN)
def update_tags(library_name: str, image_id: str, body: UpdateTagsRequest, request: Request) -> dict:
    """Replace the image's tags."""
    return ok(_image(_rt(request).libraries.update_tags(library_name, image_id, body.tags)))


@router.delete("/libraries/{library_name}/images/{image_id:path}", response_model=Envelope[None], tags=["images"],
               dependencies=ADMIN)
def delete_image(library_name: str, image_id: str, request: Request) -> dict:
    _rt(request).libraries.delete_image(library_name, image_id)
    return ok(None)

