"""The billed creator search of the Modash-compatible API: one call per request.

The order is billing policy (``access`` module docs): authenticate -> validate every field ->
admit (rate limit) -> require the least price -> search -> charge, once, last, all or nothing.
Validation comes before admission, so a malformed request neither takes the rate-limit slot
nor costs credits; anything that fails before the charge costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...imaging import decode_image
from ...store.token_store import TokenRecord
from ..metrics import observe_search
from .access import AccessService
from .brands import Brands
from .dictionaries import Locations
from .filters import check_page, check_page_size, parse_filters
from .platforms import rules
from .search import CreatorPage, CreatorSearchService


@dataclass(frozen=True)
class BilledPage:
    """A search's page and what it cost.

    Attributes:
        page: the profiles found (``CreatorPage``).
        charged_milli: milli-credits taken for it.
        left_milli: the token's balance after the charge, milli-credits.
    """

    page: CreatorPage
    charged_milli: int
    left_milli: int


class CreatorGateway:
    """Creator image search as a billed use case.

    Args:
        access: returns the tokens, rate limits and credits service (read per request, so the
            runtime may swap it, e.g. for another clock).
        search: returns the creator search, built on first use (it loads a model).
        brands: brand ids -> names for ``filters.brands``.
        locations: the location dictionary (``filters.locations`` ids are checked against it).
        max_image_pixels: the query image's largest width x height, pixels.
        decode_wait_s: seconds a query waits for the process's decode budget before 503 Busy.
    """

    def __init__(
        self,
        access: Callable[[], AccessService],
        search: Callable[[], CreatorSearchService],
        brands: Brands,
        locations: Locations,
        max_image_pixels: int,
        decode_wait_s: float | None = None,
    ) -> None:
        self._access = access
        self._search = search
        self._brands = brands
        self._locations = locations
        self._max_image_pixels = max_image_pixels
        self._decode_wait_s = decode_wait_s

    def authenticate(self, authorization: str | None) -> TokenRecord:
        """The token of an ``Authorization: Bearer <token>`` header. Raises Unauthorized (401)."""
        return self._access().authenticate(authorization)

    def image_search(
        self,
        authorization: str | None,
        platform: str,
        *,
        image: Callable[[], bytes],
        page: object = None,
        page_size: object = None,
        filters: dict[str, Any] | None = None,
        image_field: str = "base64Image",
    ) -> BilledPage:
        """Creators of ``platform`` whose posts look like the query image, billed to the token.

        Args:
            authorization: the request's ``Authorization`` header.
            image: returns the query image's bytes, checked by the face's intake; called after
                the other fields are validated (so errors come in a fixed order).
            page: 0-based page (``None`` = 0); page_size: ``pageSize`` (``None`` = the
                platform's default; refused where pages are fixed).
            filters: the request's ``filters`` object (brands by id or name).
            image_field: the request field named in image errors.

        Raises:
            Unauthorized (401), InvalidParameter / InvalidImage (400), RateLimited (429),
            PaymentRequired (402), ModelUnavailable / ModelMismatch (400), Busy (503).
        """
        token = self.authenticate(authorization)
        own = rules(platform)
        size = check_page_size(own.name, page_size)
        number = check_page(page, size)
        query = parse_filters(own.name, self._brands.by_name(own.name, filters))
        if query.locations and filters is not None:
            self._locations.validate_ids(filters["locations"], "filters.locations")
        started = time.perf_counter()
        picture = decode_image(image(), field=image_field, max_pixels=self._max_image_pixels, wait=self._decode_wait_s)
        self._access().admit(token, own.endpoint)
        self._access().require(token, own.min_cost_milli())
        found = self._search().search(own.name, picture, query, page=number, page_size=size)
        observe_search(own.name, "creators", started)  # library label: the platform's posts
        receipt = self._access().charge(token, own.cost_milli(len(found.profiles)))
        return BilledPage(page=found, charged_milli=receipt.charged_milli, left_milli=receipt.left_milli)
