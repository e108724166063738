"""Request and response bodies of the operator image-search API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool

TagFilter = Any  # validated by lookalike.filters.parse_filter, which names the failing path


class _SearchOptions(BaseModel):
    """Fields every search request shares; each request adds its query."""

    library_name: str = Field(description="Library to search.")
    top_k: int = Field(10, ge=1, le=100, description="Number of results, 1..100.")
    tag_filter: TagFilter = Field(None, description="Boolean filter on tags; see the README's tag_filter language.")
    return_image_base64: bool = Field(False, description="Return each result's stored image as base64.")
    collapse_duplicates: StrictBool = Field(
        False, description="Return near-identical images (re-encoded, resized copies) once, listing the others' ids."
    )


class SearchByImageRequest(_SearchOptions):
    image_base64: str = Field(description="Query image: base64 JPEG, PNG, WebP or GIF, at most 5 MB.")
    use_segmentation: StrictBool = Field(
        False, description="Detect up to 5 items in the query, search each, merge the results fairly."
    )
    return_segments: StrictBool = Field(
        False, description="Also return the detected items (bbox, mask_area, label, score) and each one's results."
    )
    search_crop_type: Literal["bbox", "segment"] = Field(
        "bbox", description="Crop searched per item: its box, or its box with the background greyed out."
    )
    query_text: str | None = Field(
        None, description="Hybrid query: also match this text, e.g. 'in red' (general_search libraries only)."
    )
    text_weight: float | None = Field(
        None, description="0..1, the text's share of a hybrid score (default 0.5 with query_text)."
    )


class SearchByTextRequest(_SearchOptions):
    query_text: str = Field(description="What to look for, e.g. 'a red dress', in any language. general_search only.")


class SearchByImageIdRequest(_SearchOptions):
    image_id: str = Field(description="A stored image of the library; it is left out of its own results.")


class SearchResultOut(BaseModel):
    image_id: str
    image_uri: str | None
    image_base64: str | None = None
    score: float = Field(description="0..1, monotone in similarity: >0.9 same item, 0.7..0.9 similar.")
    tags: dict[str, Any]
    segment: int | None = Field(None, description="Index of the query segment that found it (segmented queries).")
    duplicates: list[str] | None = Field(
        None, description="With collapse_duplicates: ids of the near-identical images folded into this one."
    )


class BBoxOut(BaseModel):
    x: int
    y: int
    width: int
    height: int


class SegmentOut(BaseModel):
    index: int = Field(description="0-based; the main item first.")
    bbox: BBoxOut = Field(description="Pixels of the query image.")
    mask_area: int = Field(description="Pixels of the item's mask.")
    label: str | None = None
    score: float = Field(description="Detector confidence 0..1 (0 for the whole-image fallback).")
    results: list[SearchResultOut]


class SearchResults(BaseModel):
    results: list[SearchResultOut]
    segments: list[SegmentOut] | None = Field(None, description="Only with return_segments.")


class CreateLibraryRequest(BaseModel):
    library_name: str
    mode: Literal["general_search", "item_search"] = "general_search"
    model: str | None = Field(None, description="Model id; the server default when absent.")


class LibraryOut(BaseModel):
    library_name: str
    mode: str
    model: str
    dims: dict[str, int]
    image_count: int
    created_at: float = Field(description="Unix time, seconds.")


class ImageIn(BaseModel):
    image_id: str | None = Field(None, description="Unique per library; generated when absent.")
    image_uri: str | None = Field(None, description="Kept verbatim; read for pixels when a local path.")
    image_base64: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)


class ImportImagesRequest(BaseModel):
    images: list[ImageIn] = Field(min_length=1, max_length=1000)
    skip_existing: bool = Field(False, description="Skip images whose image_id is stored (else 409).")


class ImportImagesOut(BaseModel):
    added: list[str]
    skipped: list[str]


class ImageOut(BaseModel):
    image_id: str
    image_uri: str | None
    tags: dict[str, Any]
    created_at: float


class UpdateTagsRequest(BaseModel):
    tags: dict[str, Any]
