"""Translate a ``tag_filter`` AST into a Milvus 2.3 boolean expression over a JSON field.

The translation is exact only where Milvus evaluates a condition exactly as
:func:`lookalike.filters.matches` does; these facts were checked against a Milvus 2.3.5
standalone server (``tests/test_milvus_store.py`` keeps checking them):

* ``tags["k"] == 1.0`` matches JSON ints and floats of that value, never booleans or strings;
  ``tags["k"] == true`` matches only the boolean; a missing key or a tag of another type is
  false for every comparison, so ``not (...)`` gives the negative operators' semantics.
* Strings compare byte-wise on UTF-8, which is Unicode code-point order (Python's ``str``).
* Number literals are written as Python float ``repr`` (``1.0``, ``1e+19``): Milvus then
  compares as doubles, as the filter language does.
* ``in`` needs members of one type (mixed lists fail on the server), so members are grouped
  by type and OR-ed.

What Milvus cannot express identically is not translated and the condition is reported as
inexact: ``contains`` / ``not_contains`` (Milvus 2.3 ``like`` matches prefixes only), keys
outside ``[A-Za-z0-9_-]`` (Milvus splits JSON paths on brackets and quotes), strings that
are not valid UTF-8 (lone surrogates), and integers beyond the double range. The caller
then evaluates the exact filter itself over the rows a *superset* expression selects.

Values are never spliced raw: a string literal is ``json.dumps(value, ensure_ascii=False)``,
whose escapes (``\\"``, ``\\\\``, ``\\n``, ``\\u0000``...) are the ones Milvus's expression
parser reads back verbatim (checked with hostile strings); keys pass a strict allow-list.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from ..filters import AllOf, AnyOf, Condition, Node, Scalar

__all__ = ["ALL_ROWS", "Translation", "literal", "safe_key", "safe_value", "translate"]

#: An expression every row passes (primary keys are positive), for "no condition".
ALL_ROWS = "pk >= 0"

_SAFE_KEY = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_NEGATIVE = {"!=": "=", "not_contains": "contains", "not_in": "in"}


@dataclass(frozen=True)
class Translation:
    """A Milvus expression for a filter.

    Attributes:
        expr: the expression, or None for "every row" (nothing translatable narrowed it).
        exact: True when ``expr`` selects exactly the rows the filter passes; False when it
            selects a superset and the caller must apply the filter itself.
    """

    expr: str | None
    exact: bool


def safe_key(key: str) -> bool:
    """Whether a tag key can be written as a Milvus JSON path (``tags["key"]``)."""
    return _SAFE_KEY.fullmatch(key) is not None


def safe_value(value: object) -> bool:
    """Whether a tag value is stored and compared by Milvus exactly as by the filter language:
    strings that encode to UTF-8, booleans, and numbers within the double range."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def literal(value: Scalar) -> str:
    """A Milvus literal for a safe scalar (see :func:`safe_value`): a quoted, escaped string,
    ``true``/``false``, or a float. Raises ``ValueError`` for an unsafe one."""
    if not safe_value(value):
        raise ValueError(f"value cannot be written as a Milvus literal: {value!r}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(float(value))


def translate(node: Node | None, field: str = "tags") -> Translation:
    """Translate a parsed filter (``lookalike.filters.parse_filter``) for the JSON field ``field``.

    Returns:
        The expression and whether it is exact (see :class:`Translation`); ``None`` as the
        filter gives ``Translation(None, True)``.
    """
    if node is None:
        return Translation(None, True)
    return _node(node, field)


def _node(node: Node, field: str) -> Translation:
    if isinstance(node, Condition):
        return _condition(node, field)
    parts = [_node(child, field) for child in node.children]
    exact = all(p.exact for p in parts)
    if isinstance(node, AllOf):
        exprs = [p.expr for p in parts if p.expr is not None]
        if not exprs:
            return Translation(None, exact)
        return Translation(" and ".join(f"({e})" for e in exprs), exact)
    assert isinstance(node, AnyOf)
    if any(p.expr is None for p in parts):  # one child passes every row: so does the OR
        return Translation(None, exact and all(p.expr is None for p in parts))
    return Translation(" or ".join(f"({p.expr})" for p in parts), exact)


def _condition(cond: Condition, field: str) -> Translation:
    positive_op = _NEGATIVE.get(cond.op, cond.op)
    expr = _positive(positive_op, cond, field)
    if expr is None:
        return Translation(None, False)
    if positive_op != cond.op:
        return Translation(f"not ({expr})", True)
    return Translation(expr, True)


def _positive(op: str, cond: Condition, field: str) -> str | None:
    """The expression of a positive operator, or None where Milvus cannot match it exactly."""
    if op == "contains" or not safe_key(cond.field):
        return None
    path = f"{field}[{json.dumps(cond.field)}]"
    if isinstance(cond.value, tuple):  # "in"
        if not all(safe_value(m) for m in cond.value):
            return None
        groups: list[str] = []
        strings = [m for m in cond.value if isinstance(m, str)]
        numbers = [m for m in cond.value if not isinstance(m, (str, bool))]
        if strings:
            groups.append(f"{path} in [{', '.join(literal(m) for m in strings)}]")
        if numbers:
            groups.append(f"{path} in [{', '.join(literal(m) for m in numbers)}]")
        # Identity, as in filters._in_mask: True == 1 in Python, but true must not match 1.
        for flag in (True, False):
            if any(m is flag for m in cond.value):
                groups.append(f"{path} == {literal(flag)}")
        return " or ".join(f"({g})" for g in groups) if len(groups) > 1 else groups[0]
    if not safe_value(cond.value):
        return None
    milvus_op = "==" if op == "=" else op
    return f"{path} {milvus_op} {literal(cond.value)}"
