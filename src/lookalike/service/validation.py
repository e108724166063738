"""Checks on client-supplied names, ids and tags, shared by the HTTP API and the CLI."""

from __future__ import annotations

import math
import re

from ..errors import InvalidParameter

LIBRARY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MODES = ("general_search", "item_search")
MAX_IMAGE_ID_CHARS = 256
MAX_TAGS = 100
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 2048


def check_library_name(name: object, field: str = "library_name") -> str:
    """Raises ``InvalidParameter`` unless ``name`` is 1-128 chars of letters, digits, ``_ . -``."""
    if not isinstance(name, str) or not LIBRARY_NAME.match(name):
        raise InvalidParameter(
            f"{field}: must be 1-128 characters of letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def check_mode(mode: object, field: str = "mode") -> str:
    """Raises ``InvalidParameter`` unless ``mode`` is ``general_search`` or ``item_search``."""
    if mode not in MODES:
        raise InvalidParameter(f"{field}: must be one of {', '.join(MODES)}")
    return mode  # type: ignore[return-value]


def check_image_id(image_id: object, field: str = "image_id") -> str:
    """Raises ``InvalidParameter`` unless a non-empty string of at most 256 characters."""
    if not isinstance(image_id, str) or not image_id or len(image_id) > MAX_IMAGE_ID_CHARS:
        raise InvalidParameter(f"{field}: must be a non-empty string of at most {MAX_IMAGE_ID_CHARS} characters")
    if not _is_unicode(image_id):
        raise InvalidParameter(f"{field}: must be valid Unicode (a lone surrogate such as \\ud800 is not)")
    return image_id


def _is_unicode(text: str) -> bool:
    """False for strings holding lone surrogates (JSON's ``"\\ud800"`` decodes to one): they are not
    Unicode scalar values, so no UTF-8 store (SQLite, Milvus) can hold them (RFC 8259 section 8.2)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_tags(tags: object, field: str = "tags") -> dict[str, object]:
    """Validate image tags: an object of at most 100 keys whose values are strings, finite
    numbers or booleans (no null, lists or objects: the filter language compares scalars).

    Raises:
        InvalidParameter: naming the offending key, e.g. ``tags.color``.
    """
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InvalidParameter(f"{field}: must be an object of string, number or boolean values")
    if len(tags) > MAX_TAGS:
        raise InvalidParameter(f"{field}: at most {MAX_TAGS} tags per image")
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > MAX_TAG_KEY_CHARS:
            raise InvalidParameter(f"{field}: keys must be non-empty strings of at most {MAX_TAG_KEY_CHARS} characters")
        if not _is_unicode(key):
            raise InvalidParameter(f"{field}: keys must be valid Unicode (a lone surrogate such as \\ud800 is not)")
        where = f"{field}.{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidParameter(f"{where}: numbers must be finite")
            continue
        if isinstance(value, str):
            if len(value) > MAX_TAG_VALUE_CHARS:
                raise InvalidParameter(f"{where}: strings must be at most {MAX_TAG_VALUE_CHARS} characters")
            if not _is_unicode(value):
                raise InvalidParameter(f"{where}: must be valid Unicode (a lone surrogate such as \\ud800 is not)")
            continue
        raise InvalidParameter(f"{where}: must be a string, number or boolean (got {type(value).__name__})")
    return dict(tags)


def check_top_k(top_k: object, field: str = "top_k", maximum: int = 100) -> int:
    """Raises ``InvalidParameter`` unless an integer in 1..``maximum``."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= maximum:
        raise InvalidParameter(f"{field}: must be an integer from 1 to {maximum}")
    return top_k
