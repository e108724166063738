"""Labelled photo sets: a folder with ``images/`` and ``labels.csv`` (``path,label,split``)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

#: Where the labelled sets are looked for when a command is given none: ``$LOOKALIKE_DATASETS``
#: if set, else ``../shared/datasets`` beside the repository or the working directory.
DATASETS_ENV = "LOOKALIKE_DATASETS"


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


def datasets_root() -> Path | None:
    """The folder of labelled sets: ``$LOOKALIKE_DATASETS`` when set (even to a folder that
    does not exist: then ``None``), else the first existing ``shared/datasets`` beside the
    repository or the working directory; ``None`` when there is none (a fresh clone)."""
    env = os.environ.get(DATASETS_ENV)
    if env:
        return Path(env) if Path(env).is_dir() else None
    here = Path(__file__).resolve()
    for root in (here.parents[3].parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets"):
        if root.is_dir():
            return root
    return None
