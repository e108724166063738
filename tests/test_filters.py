from __future__ import annotations

import math
import random

import numpy as np
import pytest

from lookalike.errors import InvalidFilter
from lookalike.filters import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_IN_MEMBERS,
    AllOf,
    AnyOf,
    Condition,
    TagColumns,
    evaluate,
    fields_of,
    matches,
    parse_filter,
)

ROWS: list[dict[str, object]] = [
    {"color": "red", "size": 10, "price": 9.5, "sale": True, "name": "Red Shirt"},
    {"color": "blue", "size": 12.0, "price": 20, "sale": False, "name": "blue jeans"},
    {"color": "Red", "size": "L", "price": 15, "name": "shirt"},
    {"size": 1, "sale": 1, "name": 42},
    {"color": "red", "size": True, "price": -3},
    {},
]


def selected(raw: object, rows: list[dict[str, object]] = ROWS) -> list[int]:
    """Rows the filter keeps, asserting both evaluators agree."""
    node = parse_filter(raw)
    assert node is not None
    by_row = [i for i, tags in enumerate(rows) if matches(node, tags)]
    mask = evaluate(node, TagColumns(rows))
    assert mask.dtype == np.bool_ and mask.shape == (len(rows),)
    assert list(np.flatnonzero(mask)) == by_row
    return by_row


def cond(field: object, op: object, value: object) -> dict[str, object]:
    return {"field": field, "op": op, "value": value}


# --- operators -----------------------------------------------------------------------------


def test_equal_string_is_case_sensitive_and_typed() -> None:
    assert selected(cond("color", "=", "red")) == [0, 4]
    assert selected(cond("color", "!=", "red")) == [1, 2, 3, 5]


def test_equal_number_int_and_float_are_one_type() -> None:
    assert selected(cond("size", "=", 12)) == [1]
    assert selected(cond("size", "=", 10.0)) == [0]
    assert selected(cond("price", "=", 20.0)) == [1]


def test_booleans_are_not_numbers() -> None:
    assert selected(cond("sale", "=", True)) == [0]
    assert selected(cond("sale", "=", 1)) == [3]
    assert selected(cond("size", "=", 1)) == [3]
    assert selected(cond("sale", "=", False)) == [1]
    assert selected(cond("sale", "!=", True)) == [1, 2, 3, 4, 5]


def test_ordering_numbers() -> None:
    assert selected(cond("price", ">", 9.5)) == [1, 2]
    assert selected(cond("price", ">=", 9.5)) == [0, 1, 2]
    assert selected(cond("price", "<", 15)) == [0, 4]
    assert selected(cond("price", "<=", 15)) == [0, 2, 4]
    # "size" holds strings and bools too: they never order against a number.
    assert selected(cond("size", ">", 0)) == [0, 1, 3]


def test_ordering_strings_by_code_point() -> None:
    # "R" (0x52) < "b" (0x62) < "r" (0x72)
    assert selected(cond("color", "<", "b")) == [2]
    assert selected(cond("color", ">=", "blue")) == [0, 1, 4]
    assert selected(cond("color", "<=", "blue")) == [1, 2]
    assert selected(cond("color", ">", "red")) == []
    assert selected(cond("size", "<", "Z")) == [2]


def test_contains_is_a_case_sensitive_substring_of_strings() -> None:
    assert selected(cond("name", "contains", "hirt")) == [0, 2]
    assert selected(cond("name", "contains", "Shirt")) == [0]
    assert selected(cond("name", "not_contains", "hirt")) == [1, 3, 4, 5]
    # Every string contains "", nothing else does.
    assert selected(cond("name", "contains", "")) == [0, 1, 2]


def test_in_and_not_in_with_mixed_members() -> None:
    assert selected(cond("color", "in", ["red", "blue"])) == [0, 1, 4]
    assert selected(cond("size", "in", ["L", 10, True])) == [0, 2, 4]
    assert selected(cond("size", "in", [12])) == [1]
    # 1 in the list must not pull in the boolean true, nor True the number 1.
    assert selected(cond("sale", "in", [1])) == [3]
    assert selected(cond("sale", "in", [True])) == [0]
    assert selected(cond("color", "not_in", ["red", "blue"])) == [2, 3, 5]


def test_negative_ops_include_missing_fields() -> None:
    assert selected(cond("nothing", "!=", "x")) == [0, 1, 2, 3, 4, 5]
    assert selected(cond("nothing", "not_in", ["x", 1])) == [0, 1, 2, 3, 4, 5]
    assert selected(cond("nothing", "not_contains", "x")) == [0, 1, 2, 3, 4, 5]
    for op, value in [("=", "x"), (">", 0), ("<=", "z"), ("contains", ""), ("in", [1])]:
        assert selected(cond("nothing", op, value)) == []


def test_null_and_nested_tags_match_no_positive_op() -> None:
    rows: list[dict[str, object]] = [{"a": None}, {"a": [1]}, {"a": {"b": 1}}, {"a": 1}]
    assert selected(cond("a", "=", 1), rows) == [3]
    assert selected(cond("a", "!=", 1), rows) == [0, 1, 2]
    assert selected(cond("a", "contains", ""), rows) == []


def test_numbers_compare_as_doubles() -> None:
    rows: list[dict[str, object]] = [
        {"n": 10**400},
        {"n": -(10**400)},
        {"n": float("nan")},
        {"n": float("inf")},
        {"n": -0.0},
        {"n": 2**53 + 1},
    ]
    assert selected(cond("n", ">", 1e308), rows) == [0, 3]
    assert selected(cond("n", "<", -1e308), rows) == [1]
    assert selected(cond("n", "=", 0), rows) == [4]
    assert selected(cond("n", "!=", 0), rows) == [0, 1, 2, 3, 5]
    assert selected(cond("n", "=", 2**53), rows) == [5]


def test_awkward_strings() -> None:
    rows: list[dict[str, object]] = [
        {"s": "a\x00"},
        {"s": "a"},
        {"s": "\ud800"},
        {"s": "\U0001f600"},
        {"s": "\uffff"},
        {"s": ""},
    ]
    assert selected(cond("s", "=", "a\x00"), rows) == [0]
    assert selected(cond("s", "=", "a"), rows) == [1]
    assert selected(cond("s", "contains", "\x00"), rows) == [0]
    assert selected(cond("s", "=", "\ud800"), rows) == [2]
    assert selected(cond("s", ">", "\uffff"), rows) == [3]
    assert selected(cond("s", "<", "a"), rows) == [5]


# --- structure -----------------------------------------------------------------------------


def test_none_is_no_filter() -> None:
    assert parse_filter(None) is None


def test_forms_parse_to_the_ast() -> None:
    red = Condition("color", "=", "red")
    assert parse_filter(cond("color", "=", "red")) == red
    assert parse_filter([cond("color", "=", "red")]) == AllOf((red,))
    assert parse_filter({"or": [cond("color", "=", "red")]}) == AnyOf((red,))
    assert parse_filter(cond("color", "in", ["a", 1])) == Condition("color", "in", ("a", 1))


def test_issue_example() -> None:
    raw = [
        cond("category", "!=", "pants"),
        {"or": [cond("color", "=", "red"), cond("season", "=", "summer")]},
    ]
    rows: list[dict[str, object]] = [
        {"category": "shirt", "color": "red"},
        {"category": "pants", "color": "red"},
        {"category": "shirt", "color": "blue", "season": "summer"},
        {"category": "shirt", "color": "blue"},
        {"color": "red"},
        {"season": "summer", "category": 5},
    ]
    assert selected(raw, rows) == [0, 2, 4, 5]
    node = parse_filter(raw)
    assert node is not None
    assert fields_of(node) == {"category", "color", "season"}


def test_nesting() -> None:
    assert selected([cond("color", "=", "red"), cond("sale", "=", True)]) == [0]
    assert selected({"or": [cond("color", "=", "blue"), cond("sale", "=", True)]}) == [0, 1]
    assert selected(
        {"or": [[cond("color", "=", "red"), cond("price", "<", 0)], cond("size", "=", "L")]}
    ) == [2, 4]
    assert selected([[[{"or": [[cond("color", "=", "red")]]}]]]) == [0, 4]


def test_max_depth_is_accepted() -> None:
    raw: object = cond("color", "=", "red")
    for _ in range(MAX_DEPTH):
        raw = [raw]
    assert selected(raw) == [0, 4]


def test_max_conditions_is_accepted() -> None:
    assert selected([cond("color", "=", "red")] * MAX_CONDITIONS) == [0, 4]


def test_result_mask_is_not_shared_with_the_cache() -> None:
    columns = TagColumns(ROWS)
    node = parse_filter(cond("sale", "=", True))
    assert node is not None
    evaluate(node, columns)[:] = False
    assert list(np.flatnonzero(evaluate(node, columns))) == [0]


def test_empty_columns() -> None:
    node = parse_filter([cond("a", "=", 1), {"or": [cond("b", "contains", "x")]}])
    assert node is not None
    columns = TagColumns([])
    assert len(columns) == 0
    assert evaluate(node, columns).shape == (0,)


# --- validation ----------------------------------------------------------------------------


def deep(depth: int) -> object:
    raw: object = cond("a", "=", 1)
    for _ in range(depth):
        raw = [raw]
    return raw


@pytest.mark.parametrize(
    ("raw", "path", "word"),
    [
        ("red", "tag_filter", "condition object"),
        (3, "tag_filter", "got number"),
        ([cond("a", "=", 1), None], "tag_filter[1]", "got null"),
        ([], "tag_filter", "empty"),
        ({"or": []}, "tag_filter.or", "empty"),
        ({"or": cond("a", "=", 1)}, "tag_filter.or", "array"),
        ({"or": [cond("a", "=", 1)], "field": "a"}, "tag_filter", "only the key 'or'"),
        ([{"or": [cond("a", "==", 1)]}], "tag_filter[0].or[0].op", "unknown operator '=='"),
        (cond("a", 5, 1), "tag_filter.op", "unknown operator"),
        (cond("a", "equals", 1), "tag_filter.op", "not_in"),
        ({"field": "a", "op": "=", "value": 1, "x": 2}, "tag_filter", "unknown key 'x'"),
        ({"and": [cond("a", "=", 1)]}, "tag_filter", "JSON array for AND"),
        ({"op": "=", "value": 1}, "tag_filter.field", "required"),
        ({"field": "a", "value": 1}, "tag_filter.op", "required"),
        ({"field": "a", "op": "="}, "tag_filter.value", "required"),
        ({}, "tag_filter.field", "required"),
        (cond("", "=", 1), "tag_filter.field", "non-empty string"),
        (cond(7, "=", 1), "tag_filter.field", "string"),
        (cond("x" * 129, "=", 1), "tag_filter.field", "128"),
        (cond("a", "=", None), "tag_filter.value", "got null"),
        (cond("a", "=", [1]), "tag_filter.value", "got array"),
        (cond("a", "!=", {"b": 1}), "tag_filter.value", "got object"),
        (cond("a", "contains", 5), "tag_filter.value", "needs a string"),
        (cond("a", "not_contains", True), "tag_filter.value", "needs a string"),
        (cond("a", ">", True), "tag_filter.value", "got boolean"),
        (cond("a", "<=", [1]), "tag_filter.value", "string or a number"),
        (cond("a", "=", float("nan")), "tag_filter.value", "finite"),
        (cond("a", "<", float("-inf")), "tag_filter.value", "finite"),
        (cond("a", "=", 10**400), "tag_filter.value", "finite"),
        (cond("a", "in", "red"), "tag_filter.value", "needs an array"),
        (cond("a", "not_in", []), "tag_filter.value", "non-empty"),
        (cond("a", "in", ["a", None]), "tag_filter.value[1]", "got null"),
        (cond("a", "in", [1, [2]]), "tag_filter.value[1]", "got array"),
        (cond("a", "in", [1, float("inf")]), "tag_filter.value[1]", "finite"),
        (cond("a", "in", list(range(MAX_IN_MEMBERS + 1))), "tag_filter.value", "at most 1000"),
        (deep(MAX_DEPTH + 1), "tag_filter" + "[0]" * MAX_DEPTH, "too deep"),
        (
            [cond("a", "=", 1)] * (MAX_CONDITIONS + 1),
            f"tag_filter[{MAX_CONDITIONS}]",
            "too many conditions",
        ),
        (
            [[cond("a", "=", 1)] * 200, {"or": [cond("a", "=", 1)] * 100}],
            "tag_filter[1].or[56]",
            "256",
        ),
    ],
)
def test_invalid_filters(raw: object, path: str, word: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse_filter(raw)
    error = caught.value
    assert error.path == path
    assert word in error.rule
    assert str(error) == f"{path}: {error.rule}"
    assert error.http_status == 400


def test_custom_root_path() -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse_filter([cond("a", "~", 1)], path="body.tag_filter")
    assert caught.value.path == "body.tag_filter[0].op"
    assert "expected one of =, !=, >, >=, <, <=, contains, not_contains, in, not_in" in str(
        caught.value
    )


def test_long_client_text_is_cut_in_messages() -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse_filter(cond("a", "x" * 10_000, 1))
    assert len(caught.value.rule) < 200


# --- evaluate agrees with matches on random filters and tags --------------------------------

FIELDS = ["a", "b", "c", "ü", "long name"]
STRINGS = ["", "a", "ab", "b", "B", "ä", "a\x00", "\U0001f600", "\ud800", "abc", "red", "1"]
NUMBERS: list[object] = [0, -0.0, 1, 1.0, 1.5, -2, 3, 2**53, 2**53 + 1, 10**20, 1e-300]
TAG_ONLY: list[object] = [
    float("nan"),
    float("inf"),
    -float("inf"),
    10**400,
    None,
    [1],
    {"x": 1},
]


def random_scalar(rng: random.Random) -> object:
    pick = rng.random()
    if pick < 0.4:
        return rng.choice(STRINGS)
    if pick < 0.8:
        return rng.choice(NUMBERS)
    return rng.choice([True, False])


def random_tags(rng: random.Random) -> dict[str, object]:
    tags: dict[str, object] = {}
    for field in FIELDS:
        if rng.random() < 0.25:
            continue  # missing field
        tags[field] = rng.choice(TAG_ONLY) if rng.random() < 0.05 else random_scalar(rng)
    return tags


def random_condition(rng: random.Random) -> dict[str, object]:
    op = rng.choice(["=", "!=", ">", ">=", "<", "<=", "contains", "not_contains", "in", "not_in"])
    if op in ("in", "not_in"):
        value: object = [random_scalar(rng) for _ in range(rng.randint(1, 5))]
    elif op in ("contains", "not_contains"):
        value = rng.choice(STRINGS + ["x", "bc"])
    elif op in (">", ">=", "<", "<="):
        value = rng.choice(STRINGS + NUMBERS)
    else:
        value = random_scalar(rng)
    return cond(rng.choice(FIELDS), op, value)


def random_filter(rng: random.Random, depth: int = 0) -> object:
    if depth >= 3 or rng.random() < 0.4:
        return random_condition(rng)
    children = [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 4))]
    return children if rng.random() < 0.5 else {"or": children}


def test_evaluate_agrees_with_matches() -> None:
    rng = random.Random(20240611)
    hits = 0
    for _ in range(40):
        rows = [random_tags(rng) for _ in range(200)]
        columns = TagColumns(rows)  # shared: exercises the column cache
        for _ in range(50):
            node = parse_filter(random_filter(rng))
            assert node is not None
            expected = [matches(node, tags) for tags in rows]
            mask = evaluate(node, columns)
            assert mask.tolist() == expected, node
            hits += sum(expected)
    # The random filters must select neither nothing nor everything, or they test little.
    assert 0.1 < hits / (40 * 50 * 200) < 0.9


def oracle(op: str, tag: object, value: object) -> bool:
    """The module docstring's rules, written out apart from the module."""

    def kind(x: object) -> str | None:
        if isinstance(x, bool):
            return "boolean"
        if isinstance(x, (int, float)):
            return "number"
        return "string" if isinstance(x, str) else None

    def key(x: object) -> object:
        if kind(x) != "number":
            return x
        try:
            return float(x)  # type: ignore[arg-type]
        except OverflowError:
            return math.inf if x > 0 else -math.inf  # type: ignore[operator]

    def equal(x: object, y: object) -> bool:
        return kind(x) == kind(y) and key(x) == key(y)

    negated = {"!=": "=", "not_contains": "contains", "not_in": "in"}
    if op in negated:
        return not oracle(negated[op], tag, value)
    if op == "=":
        return equal(tag, value)
    if op == "in":
        return any(equal(tag, m) for m in value)  # type: ignore[attr-defined]
    if op == "contains":
        return isinstance(tag, str) and value in tag  # type: ignore[operator]
    if kind(tag) != kind(value):
        return False
    a, b = key(tag), key(value)
    result = {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]  # type: ignore[operator]
    return bool(result)


def test_matches_follows_the_documented_rules() -> None:
    missing = object()
    rng = random.Random(7)
    for _ in range(5000):
        tags = random_tags(rng)
        raw = random_condition(rng)
        node = parse_filter(raw)
        assert isinstance(node, Condition)
        tag = tags.get(node.field, missing)
        expected = node.op in ("!=", "not_contains", "not_in") if tag is missing else oracle(
            node.op, tag, raw["value"]
        )
        assert matches(node, tags) == expected, (raw, tags)
