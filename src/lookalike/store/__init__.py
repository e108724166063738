"""Storage: the ``Store`` contract and its embedded default."""

from .base import FIELDS, Hit, ImageRecord, ImportReport, LibraryRecord, NewImage, Store
from .embedded import EmbeddedStore

__all__ = ["FIELDS", "EmbeddedStore", "Hit", "ImageRecord", "ImportReport", "LibraryRecord", "NewImage", "Store"]
