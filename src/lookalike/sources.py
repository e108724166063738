"""Reading import items from a folder, a CSV file or a JSONL file.

- DIR: every JPEG / PNG / WebP / GIF below it; ``image_id`` = path relative to DIR,
  ``image_uri`` = absolute path, tag ``folder`` = the relative parent folder.
- CSV: a header row; columns ``image_id``, ``image_uri``, ``path``, ``image_base64`` and
  ``tags`` (a JSON object) are import fields, any other column becomes a string tag (so
  the ``path,label,split`` files of labelled photo sets import with ``label`` and ``split``
  tags). Relative paths are resolved against the CSV's folder; ``image_id`` defaults to
  ``path``.
- JSONL: one JSON object a line with the API's import fields ``image_id``, ``image_uri``,
  ``image_base64`` or ``path``, ``tags``.

A line that cannot be read becomes a ``BadLine`` (with its line number) instead of an
``ImportItem``, so the caller reports it and goes on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .service.importer import ImportItem

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif"})
IMPORT_FIELDS = ("image_id", "image_uri", "path", "image_base64", "tags")


@dataclass(frozen=True)
class BadLine:
    """An unreadable input line: ``where`` is e.g. ``line 12``."""

    where: str
    message: str


def iter_source(source: Path) -> Iterator[ImportItem | BadLine]:
    """Items from a folder, ``.csv`` or ``.jsonl`` file (see module docstring).

    Raises:
        ValueError: ``source`` is neither a folder nor a .csv / .jsonl / .json file.
    """
    if source.is_dir():
        return _from_dir(source)
    suffix = source.suffix.lower()
    if suffix == ".csv":
        return _from_csv(source)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _from_jsonl(source)
    raise ValueError(f"{source}: expected a folder, a .csv or a .jsonl file")


def count_items(source: Path) -> int | None:
    """Number of items ``iter_source`` will yield, for a progress bar (``None`` if unknown)."""
    if source.is_dir():
        return sum(1 for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    with source.open("rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    return lines - 1 if source.suffix.lower() == ".csv" else lines


def _from_dir(root: Path) -> Iterator[ImportItem]:
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        rel = path.relative_to(root)
        folder = rel.parent.as_posix()
        yield ImportItem(
            image_id=rel.as_posix(),
            image_uri=str(path.resolve()),
            path=str(path),
            tags={"folder": folder} if folder != "." else {},
            where=str(rel),
        )


def _from_csv(source: Path) -> Iterator[ImportItem | BadLine]:
    base = source.resolve().parent
    with source.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            where = f"line {reader.line_num}"
            try:
                tags = json.loads(row["tags"]) if row.get("tags") else {}
                if not isinstance(tags, dict):
                    raise ValueError("tags column must hold a JSON object")
            except ValueError as exc:
                yield BadLine(where, f"tags: {exc}")
                continue
            tags.update({k: v for k, v in row.items() if k not in IMPORT_FIELDS and k is not None and v not in (None, "")})
            path = row.get("path") or None
            if path and not Path(path).is_absolute():
                path = str(base / path)
            yield ImportItem(
                image_id=row.get("image_id") or row.get("path") or None,
                image_uri=row.get("image_uri") or row.get("path") or None,
                path=path,
                image_base64=row.get("image_base64") or None,
                tags=tags,
                where=where,
            )


def _from_jsonl(source: Path) -> Iterator[ImportItem | BadLine]:
    base = source.resolve().parent
    with source.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadLine(where, f"not valid JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                yield BadLine(where, "must be a JSON object")
                continue
            unknown = set(obj) - set(IMPORT_FIELDS)
            if unknown:
                yield BadLine(where, f"unknown fields {sorted(unknown)}; expected {', '.join(IMPORT_FIELDS)}")
                continue
            path = obj.get("path")
            if isinstance(path, str) and path and not Path(path).is_absolute():
                path = str(base / path)
            yield ImportItem(
                image_id=obj.get("image_id"),
                image_uri=obj.get("image_uri"),
                image_base64=obj.get("image_base64"),
                path=path,
                tags=obj.get("tags") or {},
                where=where,
            )
