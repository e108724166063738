"""Labelled photo sets: a folder with ``images/`` and ``labels.csv`` (``path,label,split``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabelledImage:
    """``path`` is absolute; ``label`` is '' when unlabelled; ``split`` is 'db', 'query' or ''."""

    path: Path
    label: str
    split: str


def load_labels(root: Path) -> list[LabelledImage]:
    """Rows of ``root/labels.csv`` with existing image files, in file order.

    Raises:
        FileNotFoundError: no ``labels.csv``. ValueError: a header other than ``path,label,split``.
    """
    path = root / "labels.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a header 'path,label,split'")
        rows = [
            LabelledImage(path=root / r["path"], label=(r.get("label") or "").strip(), split=(r.get("split") or "").strip())
            for r in reader
        ]
    return [r for r in rows if r.path.is_file()]


def labels_are_words(labels: set[str]) -> bool:
    """True when labels read as words (class names), not ids: text queries make sense then."""
    return bool(labels) and sum(any(c.isalpha() for c in lab) for lab in labels) / len(labels) > 0.5
