"""Query parameters of the Constructor-compatible ``POST /v2/image_search``: parsing,
validation, and the two that reshape results (``fmt_options``, ``variations_map``).

Pure functions over ``(name, value)`` string pairs, so every rule is testable without HTTP.
Every breach raises :class:`~lookalike.errors.InvalidParameter` whose message starts with the
parameter as the client spelled it (``num_results_per_page``, ``filters[color]``,
``fmt_options[groups_max_depth]``, ``variations_map.values.price.aggregation``) and states
the rule. The parameter names are Constructor's (https://docs.constructor.com, "Retrieve by
image" v2, and its search endpoint for ``filters``, ``page``, ``num_results_per_page``,
``fmt_options``, ``variations_map`` and the user ids ``i``, ``s``, ``ui``, ``us``, ``c``).

=========================  ====================================================================
``key``                    required; checked first (HTTP 401 when missing or unknown)
``section``                default ``Products``; 1-100 characters, no control characters
``use_segmentation``       ``true`` / ``false`` (or ``1`` / ``0``); default false
``search_crop_type``       ``bbox`` (default) or ``segment``
``return_segments``        boolean, default false
``num_results_per_page``   1..200, default 20 (Constructor's default)
``page``                   1-based, default 1; ``(page - 1) * num_results_per_page`` < 1000
``filters[NAME]=VALUE``    repeatable: values of one name OR, names AND (:func:`filter_members`);
                           at most 50 names, 100 values a name; ``filters[NAME][]`` also works
``fmt_options[NAME]``      :func:`parse_fmt_options`; only ``fields`` changes the answer; also
                           as one JSON object ``fmt_options={"fields": [...]}``
                           (:func:`fmt_object_entries`), the form Constructor's documents show
``variations_map``         JSON, :func:`parse_variations_map` / :func:`group_results`
``i``, ``ui``, ``c``       strings of 1-256 characters, no control characters
``s``                      integer 1..2**31-1
``us``                     repeatable, each as ``i``; at most 50
=========================  ====================================================================

Any other parameter is a 400, except what Constructor's clients add and this engine has no
use for (``_dt``, ``origin_referrer``, test cells ``ef-<name>``): ignored. A parameter that
takes one value and is given twice is a 400.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from ..errors import InvalidParameter
from ..filters import MAX_FIELD_LENGTH
from ..service.index_keys import check_section
from ..service.validation import MAX_TAG_VALUE_CHARS

#: Most results a query pages through: ``search_image``'s largest ``top_k``.
RESULTS_CAP = 1000
DEFAULT_SECTION = "Products"
#: Constructor's default page size; 200 is the largest page this endpoint serves.
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200
MAX_FILTER_NAMES = 50
MAX_FILTER_VALUES = 100
MAX_ID_CHARS = 256  # i, ui, c and each us
MAX_SEGMENTS_PARAM = 50  # us values
MAX_SESSION = 2**31 - 1
MAX_VARIATIONS_MAP_CHARS = 10_000
MAX_VARIATION_FIELDS = 20
MAX_LIST_ITEMS = 100  # fmt_options list values

#: Parameters a Constructor client sends that carry nothing for this engine: the cache
#: buster ``_dt``, ``origin_referrer``, and A/B test cells ``ef-<name>``. Accepted, ignored.
IGNORED = frozenset({"_dt", "origin_referrer"})
SINGLE = ("key", "section", "page", "num_results_per_page", "use_segmentation", "search_crop_type",
          "return_segments", "variations_map", "i", "s", "ui", "c")
CROP_TYPES = ("bbox", "segment")

# filters[NAME], filters[NAME][] and filters[NAME][3] (how qs-style clients write arrays).
_FILTER = re.compile(r"filters\[([^\[\]]*)\](?:\[\d*\])?")
# fmt_options[KEY], fmt_options[KEY][] / [3], fmt_options[facet_options][NAME] (+ [] / [3]).
_FMT = re.compile(r"fmt_options\[([^\[\]]*)\]((?:\[[^\[\]]*\])*)")
_INDEX = re.compile(r"\[\d*\]")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_FMT_LISTS = ("fields", "hidden_fields", "hidden_facets", "hidden_sort_options")
_FMT_BOOLS = ("show_hidden_fields", "show_hidden_facets", "show_hidden_facet_options", "show_protected_facets",
              "show_hidden_sort_options")
_FMT_INTS = ("groups_max_depth", "facet_groups_limit")
_FMT_ENUMS = {
    "variations_return_type": ("default", "all", "matched"),
    "groups_sort_order": ("ascending", "descending"),
}
_FMT_STRINGS = ("groups_sort_by", "groups_start")  # groups_start: current | top | group_id:<ID>
FMT_OPTIONS = (*_FMT_LISTS, *_FMT_BOOLS, *_FMT_INTS, *_FMT_ENUMS, *_FMT_STRINGS, "facet_options")

AGGREGATIONS = ("first", "min", "max", "all", "count", "field_count")
DTYPES = ("array", "object")


@dataclass(frozen=True)
class ValueSpec:
    """One ``variations_map.values`` entry: aggregate ``field`` (a key of a result's ``data``)."""

    aggregation: str
    field: str


@dataclass(frozen=True)
class VariationsMap:
    """The supported form of ``variations_map``.

    Attributes:
        group_by: (name, data key) pairs; results with equal values of all keys form one group.
        values: output name -> what to aggregate over the group.
        dtype: ``array`` or ``object``: the shape of each result's ``variations_map``.
    """

    group_by: tuple[tuple[str, str], ...]
    values: dict[str, ValueSpec]
    dtype: str


@dataclass(frozen=True)
class ImageSearchParams:
    """The parsed query of one request. ``echo()`` is the response's ``request`` object."""

    key: str | None
    section: str = DEFAULT_SECTION
    page: int = 1
    num_results_per_page: int = DEFAULT_PER_PAGE
    filters: dict[str, list[str]] = field(default_factory=dict)
    use_segmentation: bool = False
    search_crop_type: str = "bbox"
    return_segments: bool = False
    fmt_options: dict[str, Any] = field(default_factory=dict)
    variations_map: VariationsMap | None = None
    variations_map_raw: Any = None
    i: str | None = None
    s: int | None = None
    ui: str | None = None
    us: list[str] = field(default_factory=list)
    c: str | None = None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.num_results_per_page

    def tag_filter(self) -> list[dict[str, Any]] | None:
        """``filters`` in the ``tag_filter`` language: AND over names, ``in`` over each name's values."""
        if not self.filters:
            return None
        return [{"field": name, "op": "in", "value": [m for v in values for m in filter_members(v)]}
                for name, values in self.filters.items()]

    def echo(self) -> dict[str, Any]:
        return {
            "section": self.section, "page": self.page, "num_results_per_page": self.num_results_per_page,
            "filters": self.filters, "use_segmentation": self.use_segmentation,
            "search_crop_type": self.search_crop_type, "return_segments": self.return_segments,
            "fmt_options": self.fmt_options, "variations_map": self.variations_map_raw,
            "i": self.i, "s": self.s, "ui": self.ui, "us": self.us, "c": self.c,
        }


def filter_members(value: str) -> list[str | float | bool]:
    """What one ``filters[NAME]=VALUE`` string matches: tags equal to the string itself, to
    its number form when it is a finite decimal number (``10`` and ``10.0`` match the
    number tag 10), and to the boolean when it is ``true`` / ``false`` (any case)."""
    members: list[str | float | bool] = [value]
    if _NUMBER.fullmatch(value.strip()) and math.isfinite(number := float(value)):
        members.append(number)
    if value.lower() in ("true", "false"):
        members.append(value.lower() == "true")
    return members


def parse_query(items: Sequence[tuple[str, str]]) -> ImageSearchParams:
    """Parse and validate the query string pairs of a request, in order.

    Raises:
        InvalidParameter: the first rule broken, naming the parameter.
    """
    single: dict[str, str] = {}
    filters: dict[str, list[str]] = {}
    fmt: list[tuple[str, str | None, str]] = []
    us: list[str] = []
    for name, value in items:
        if name == "us":
            us.append(_text(value, "us"))
        elif m := _FILTER.fullmatch(name):
            filters.setdefault(_filter_name(m[1]), []).append(_filter_value(value, m[1]))
        elif m := _FMT.fullmatch(name):
            fmt.append((m[1], m[2], value))  # (key, trailing brackets, value)
        elif name == "fmt_options":
            if "fmt_options" in single:
                raise InvalidParameter("fmt_options: given more than once; it takes one JSON object")
            single[name] = value
            fmt.extend(fmt_object_entries(value))
        elif name in SINGLE:
            if name in single:
                raise InvalidParameter(f"{name}: given more than once; it takes one value")
            single[name] = value
        elif name in IGNORED or name.startswith("ef-"):
            continue
        else:
            raise InvalidParameter(_unknown(name))
    return _build(single, filters, fmt, us)


def _build(single: dict[str, str], filters: dict[str, list[str]], fmt: list, us: list[str]) -> ImageSearchParams:
    _check_filters(filters)
    if len(us) > MAX_SEGMENTS_PARAM:
        raise InvalidParameter(f"us: at most {MAX_SEGMENTS_PARAM} user segments")
    per_page = _int(single.get("num_results_per_page"), "num_results_per_page", 1, MAX_PER_PAGE, DEFAULT_PER_PAGE)
    page = _int(single.get("page"), "page", 1, None, 1)
    if (page - 1) * per_page >= RESULTS_CAP:
        raise InvalidParameter(
            f"page: page {page} of {per_page} results starts past result {RESULTS_CAP}, the most this endpoint"
            f" pages through; the last page is {math.ceil(RESULTS_CAP / per_page)}")
    crop = single.get("search_crop_type", "bbox")
    if crop not in CROP_TYPES:
        raise InvalidParameter(f"search_crop_type: must be one of {', '.join(CROP_TYPES)} (got {crop!r})")
    raw_map = single.get("variations_map")
    variations = parse_variations_map(raw_map) if raw_map is not None else None
    return ImageSearchParams(
        key=single.get("key"),
        section=check_section(single.get("section", DEFAULT_SECTION)),
        page=page,
        num_results_per_page=per_page,
        filters=filters,
        use_segmentation=_bool(single.get("use_segmentation"), "use_segmentation"),
        search_crop_type=crop,
        return_segments=_bool(single.get("return_segments"), "return_segments"),
        fmt_options=parse_fmt_options(fmt),
        variations_map=variations,
        variations_map_raw=json.loads(raw_map) if raw_map is not None else None,
        i=_opt_text(single.get("i"), "i"),
        s=_int(single.get("s"), "s", 1, MAX_SESSION, None),
        ui=_opt_text(single.get("ui"), "ui"),
        us=us,
        c=_opt_text(single.get("c"), "c"),
    )


def _unknown(name: str) -> str:
    if name.startswith("filters"):
        return f"{name}: filters are written filters[NAME]=VALUE, e.g. filters[color]=red"
    if name.startswith("fmt_options"):
        return f"{name}: format options are written fmt_options[NAME]=VALUE, e.g. fmt_options[fields]=price"
    accepted = ", ".join((*SINGLE, "us", "filters[NAME]", "fmt_options[NAME]"))
    return f"{name[:64]}: unknown query parameter; accepted: {accepted}"


# --- scalars -----------------------------------------------------------------------------


def _bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidParameter(f"{name}: must be true or false (got {value[:32]!r})")


@overload
def _int(value: str | None, name: str, low: int, high: int | None, default: int) -> int: ...
@overload
def _int(value: str | None, name: str, low: int, high: int | None, default: None) -> int | None: ...


def _int(value: str | None, name: str, low: int, high: int | None, default: int | None) -> int | None:
    if value is None:
        return default
    text = value.strip()
    rule = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    if not re.fullmatch(r"[+-]?\d{1,12}", text) or int(text) < low or (high is not None and int(text) > high):
        raise InvalidParameter(f"{name}: must be {rule} (got {value[:32]!r})")
    return int(text)


def _text(value: str, name: str) -> str:
    # Control characters are refused: these strings go into log lines.
    if not value or len(value) > MAX_ID_CHARS or _CONTROL.search(value):
        raise InvalidParameter(f"{name}: must be 1-{MAX_ID_CHARS} characters without control characters")
    return value


def _opt_text(value: str | None, name: str) -> str | None:
    return None if value is None else _text(value, name)


# --- filters -----------------------------------------------------------------------------


def _filter_name(name: str) -> str:
    if not name or len(name) > MAX_FIELD_LENGTH:
        raise InvalidParameter(f"filters[{name[:64]}]: a filter name is 1-{MAX_FIELD_LENGTH} characters")
    return name


def _filter_value(value: str, name: str) -> str:
    if not value or len(value) > MAX_TAG_VALUE_CHARS:
        raise InvalidParameter(f"filters[{name}]: a value is 1-{MAX_TAG_VALUE_CHARS} characters")
    return value


def _check_filters(filters: dict[str, list[str]]) -> None:
    if len(filters) > MAX_FILTER_NAMES:
        raise InvalidParameter(f"filters: at most {MAX_FILTER_NAMES} filter names")
    for name, values in filters.items():
        if len(values) > MAX_FILTER_VALUES:
            raise InvalidParameter(f"filters[{name}]: at most {MAX_FILTER_VALUES} values")
        values[:] = list(dict.fromkeys(values))  # a repeated value adds nothing to an OR


# --- fmt_options -------------------------------------------------------------------------


def parse_fmt_options(entries: Sequence[tuple[str, str | None, str]]) -> dict[str, Any]:
    """``fmt_options[KEY](...)=VALUE`` entries -> the parsed options, e.g.
    ``{"fields": ["price"], "groups_max_depth": 1, "facet_options": {"color": ["red"]}}``.

    Accepted keys and values (Constructor's): lists of names ``fields``, ``hidden_fields``,
    ``hidden_facets``, ``hidden_sort_options`` (repeat the parameter, or ``[0]``, ``[1]``...);
    booleans ``show_hidden_fields``, ``show_hidden_facets``, ``show_hidden_facet_options``,
    ``show_protected_facets``, ``show_hidden_sort_options``; integers >= 0
    ``groups_max_depth``, ``facet_groups_limit``; ``variations_return_type`` (default | all |
    matched); ``groups_sort_order`` (ascending | descending); strings ``groups_sort_by``,
    ``groups_start``; ``facet_options[NAME]`` (a list per facet).
    """
    out: dict[str, Any] = {}
    for key, brackets, value in entries:
        where = f"fmt_options[{key}]{brackets}"
        if key == "facet_options":
            facet = re.fullmatch(r"\[([^\[\]]+)\](\[\d*\])?", brackets or "")
            if not facet:
                raise InvalidParameter(f"{where}: write fmt_options[facet_options][NAME]=VALUE")
            _append(out.setdefault("facet_options", {}), facet[1], _text(value, where), where)
        elif brackets and not (key in _FMT_LISTS and _INDEX.fullmatch(brackets)):
            raise InvalidParameter(f"{where}: fmt_options[{key}] takes no sub-key")
        elif key in _FMT_LISTS:
            _append(out, key, _text(value, where), where)
        elif key in out:
            raise InvalidParameter(f"{where}: given more than once; it takes one value")
        elif key in _FMT_BOOLS:
            out[key] = _bool(value, where)
        elif key in _FMT_INTS:
            out[key] = _int(value, where, 0, 1000, None)
        elif key in _FMT_ENUMS:
            if value not in _FMT_ENUMS[key]:
                raise InvalidParameter(f"{where}: must be one of {', '.join(_FMT_ENUMS[key])} (got {value[:32]!r})")
            out[key] = value
        elif key in _FMT_STRINGS:
            out[key] = _text(value, where)
        else:
            raise InvalidParameter(f"{where[:80]}: unknown format option; accepted: {', '.join(FMT_OPTIONS)}")
    return out


def fmt_object_entries(text: str) -> list[tuple[str, str, str]]:
    """``fmt_options`` in its object form, a JSON object (``{"fields": ["price"],
    "groups_max_depth": 1, "facet_options": {"color": ["red"]}}``), as the
    ``fmt_options[KEY]...=VALUE`` entries ``parse_fmt_options`` reads: the same rules apply.

    Raises:
        InvalidParameter: not a JSON object, or a value that is not a string, number,
            boolean, list of those or (``facet_options``) an object of them.
    """
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidParameter("fmt_options: must be a JSON object, e.g. {\"fields\": [\"price\"]}") from None
    if not isinstance(raw, dict):
        raise InvalidParameter("fmt_options: must be a JSON object, e.g. {\"fields\": [\"price\"]}")
    entries: list[tuple[str, str, str]] = []
    for key, value in raw.items():
        if isinstance(value, dict):
            for name, sub in value.items():
                entries += [(key, f"[{name}]", v) for v in _fmt_scalars(sub, f"fmt_options.{key}.{name}")]
        else:
            brackets = "[]" if isinstance(value, list) else ""
            entries += [(key, brackets, v) for v in _fmt_scalars(value, f"fmt_options.{key}")]
    return entries


def _fmt_scalars(value: object, where: str) -> list[str]:
    """A JSON scalar or list of scalars as the query-string texts they stand for."""
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_LIST_ITEMS:
        raise InvalidParameter(f"{where}: at most {MAX_LIST_ITEMS} values")
    texts = []
    for item in items:
        if isinstance(item, bool):
            texts.append("true" if item else "false")
        elif isinstance(item, (str, int, float)):
            texts.append(str(item))
        else:
            raise InvalidParameter(f"{where}: must be a string, number, boolean or a list of them")
    return texts


def _append(target: dict[str, Any], key: str, value: str, where: str) -> None:
    items = target.setdefault(key, [])
    if len(items) >= MAX_LIST_ITEMS:
        raise InvalidParameter(f"{where}: at most {MAX_LIST_ITEMS} values")
    if value not in items:
        items.append(value)


def apply_fields(data: dict[str, Any], fmt_options: dict[str, Any]) -> dict[str, Any]:
    """``fmt_options[fields]``: keep only ``id`` and the listed fields (and any
    ``hidden_fields``, which this engine does not hide anyway) in a result's ``data``."""
    fields = fmt_options.get("fields")
    if not fields:
        return data
    keep = {"id", *fields, *fmt_options.get("hidden_fields", ())}
    return {k: v for k, v in data.items() if k in keep}


# --- variations_map ----------------------------------------------------------------------


def parse_variations_map(text: str) -> VariationsMap:
    """Validate ``variations_map`` (a JSON string) in the supported form::

        {"group_by": [{"name": "color", "field": "data.color"}, ...],      # 1..20 entries
         "values": {"min_price": {"aggregation": "min", "field": "data.price"}, ...},  # 0..20
         "dtype": "array" | "object"}                                       # default "array"

    ``field`` is ``data.<key>`` (a key of a result's ``data``: a tag, ``id``, ``url``,
    ``image_url``); ``data.facets.<tag>`` is accepted for Constructor maps and means
    ``data.<tag>``. Aggregations: ``first``, ``min``, ``max``, ``all``, ``count``,
    ``field_count`` (see :func:`group_results`). Anything else (``filter_by``, nested
    group_by fields, other aggregations) is refused.
    """
    where = "variations_map"
    if len(text) > MAX_VARIATIONS_MAP_CHARS:
        raise InvalidParameter(f"{where}: at most {MAX_VARIATIONS_MAP_CHARS} characters")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidParameter(f"{where}: is not valid JSON") from None
    if not isinstance(raw, dict):
        raise InvalidParameter(f"{where}: must be a JSON object with group_by, values and dtype")
    extra = sorted(set(raw) - {"group_by", "values", "dtype"})
    if extra:
        raise InvalidParameter(f"{where}.{extra[0]}: not supported; supported keys: group_by, values, dtype")
    dtype = raw.get("dtype", "array")
    if dtype not in DTYPES:
        raise InvalidParameter(f"{where}.dtype: must be one of {', '.join(DTYPES)}")
    group_by = _group_by(raw.get("group_by"))
    values = _values(raw.get("values", {}), {name for name, _ in group_by})
    return VariationsMap(group_by=group_by, values=values, dtype=dtype)


def _group_by(raw: object) -> tuple[tuple[str, str], ...]:
    where = "variations_map.group_by"
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_VARIATION_FIELDS:
        raise InvalidParameter(f"{where}: must be an array of 1-{MAX_VARIATION_FIELDS} {{name, field}} objects")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or set(entry) != {"name", "field"}:
            raise InvalidParameter(f"{where}[{i}]: must be an object with exactly the keys name and field")
        out.append((_map_name(entry["name"], f"{where}[{i}].name"), _data_key(entry["field"], f"{where}[{i}].field")))
    if len({name for name, _ in out}) != len(out):
        raise InvalidParameter(f"{where}: names must differ")
    return tuple(out)


def _values(raw: object, taken: set[str]) -> dict[str, ValueSpec]:
    where = "variations_map.values"
    if not isinstance(raw, dict) or len(raw) > MAX_VARIATION_FIELDS:
        raise InvalidParameter(f"{where}: must be an object of at most {MAX_VARIATION_FIELDS} entries")
    out = {}
    for name, spec in raw.items():
        at = f"{where}.{name}"
        _map_name(name, at)
        if name in taken:
            raise InvalidParameter(f"{at}: the name is already a group_by name")
        if not isinstance(spec, dict) or set(spec) != {"aggregation", "field"}:
            raise InvalidParameter(f"{at}: must be an object with exactly the keys aggregation and field")
        if spec["aggregation"] not in AGGREGATIONS:
            raise InvalidParameter(f"{at}.aggregation: must be one of {', '.join(AGGREGATIONS)}")
        out[name] = ValueSpec(aggregation=spec["aggregation"], field=_data_key(spec["field"], f"{at}.field"))
    return out


def _map_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_FIELD_LENGTH:
        raise InvalidParameter(f"{where}: must be a string of 1-{MAX_FIELD_LENGTH} characters")
    return name


def _data_key(path: object, where: str) -> str:
    if not isinstance(path, str) or not path.startswith("data.") or len(path) <= 5:
        raise InvalidParameter(f"{where}: must be 'data.<field>', e.g. data.color")
    key = path[5:]
    return key[7:] if key.startswith("facets.") and len(key) > 7 else key


def group_results(items: list[dict[str, Any]], spec: VariationsMap) -> list[dict[str, Any]]:
    """Group formatted results (``{"value", "data", ...}``, best first) by ``spec.group_by``.

    Each group becomes its best result plus ``variations_map``, its aggregated ``values``;
    groups keep the rank of their best result. A result with none of the group_by fields
    stays on its own. Aggregations over the group's results, in rank order, of those that
    have ``field``: ``first`` the best one's value; ``min`` / ``max`` over numbers (over
    strings, by code point, when none is a number); ``all`` the distinct values; ``count``
    how many have it; ``field_count`` ``{value: how many}``. None (``first``, ``min``,
    ``max``) or empty when no result has it.

    ``dtype`` ``array``: ``[{<group_by name>: value, ..., <values name>: aggregate, ...}]``;
    ``object``: ``{<first group value>: {<next group value>: ... {<values name>: aggregate}}}``
    (keys as strings, a missing value as ``"null"``).
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for n, item in enumerate(items):
        data = item["data"]
        key = tuple(data.get(f) for _, f in spec.group_by)
        if all(data.get(f) is None for _, f in spec.group_by):
            key = ("\0single", n)  # nothing to group on: the result stays alone
        groups.setdefault(key, []).append(item)
    out = []
    for members in groups.values():
        values = {name: _aggregate(members, v) for name, v in spec.values.items()}
        head = dict(members[0])
        head["variations_map"] = _shape(spec, members[0]["data"], values)
        out.append(head)
    return out


def _aggregate(members: list[dict[str, Any]], spec: ValueSpec) -> Any:
    present = [m["data"][spec.field] for m in members if m["data"].get(spec.field) is not None]
    if spec.aggregation == "first":
        return present[0] if present else None
    if spec.aggregation in ("min", "max"):
        numbers: list[Any] = [v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool)]
        pool = numbers or [v for v in present if isinstance(v, str)]
        return (min if spec.aggregation == "min" else max)(pool) if pool else None
    if spec.aggregation == "all":
        return list(dict.fromkeys(present))
    if spec.aggregation == "count":
        return len(present)
    counts: dict[str, int] = {}
    for v in present:
        counts[_key_text(v)] = counts.get(_key_text(v), 0) + 1
    return counts


def _shape(spec: VariationsMap, data: dict[str, Any], values: dict[str, Any]) -> Any:
    if spec.dtype == "array":
        return [{**{name: data.get(f) for name, f in spec.group_by}, **values}]
    shaped: Any = values
    for _, f in reversed(spec.group_by):
        shaped = {_key_text(data.get(f)): shaped}
    return shaped


def _key_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
