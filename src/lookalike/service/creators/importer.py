"""Importing and refreshing creators (the line format is ``lines.py``).

A line is validated as a whole (``parse_creator``) before anything is read or written; then
only the images of new posts and of posts whose image bytes changed (SHA-256) are decoded
and embedded, and the creator is written in one transaction (``CreatorStore.upsert_creator``).
A bad line is reported with its line number and nothing of it is written; a crash leaves
every creator either as before or fully refreshed. A line whose content hash equals the
stored one is skipped without reading any image, so re-running an import resumes it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...config import Settings
from ...errors import InvalidParameter, LookalikeError, ModelMismatch
from ...imaging import decode_base64, decode_image
from ...models import image_only_model_id
from ...models.base import Embedder
from ...store.creator_store import CreatorStore, PostUpsert
from ...store.creator_types import (
    PLATFORMS,
)
from ..importer import BATCH_SIZE
from ..local_files import read_local_file
from ..metrics import IMPORTED_CREATORS
from .lines import BadJson, ParsedCreator, ParsedPost, count_lines, parse_creator, read_jsonl

__all__ = ["CreatorImportOutcome", "CreatorImporter", "count_lines", "creator_model_id", "parse_creator"]

#: Image reads + decodes submitted ahead of the model, across creators: enough that the
#: worker threads never wait for the model or the store (at most 128 x (3, 224, 224) float32
#: inputs = 77 MB for efficientnet-lite0).
LOOKAHEAD_IMAGES = 4 * BATCH_SIZE
#: Lines admitted ahead at most, so a run of empty or unchanged lines is not parsed far ahead.
LOOKAHEAD_LINES = 4 * BATCH_SIZE


def creator_model_id(stored: str | None, default_model: str) -> str:
    """The model that embeds creator posts and creator-search queries.

    ``stored``: the creator store's model (``CreatorStore.model_id()``), kept once posts exist,
    so a store built before an upgrade keeps its model. A new store takes
    ``image_only_model_id(default_model)``: posts hold only the ``visual`` embedding, the same
    under ``efficientnet-lite0-multilingual`` and ``efficientnet-lite0``, so the creator path
    never loads the multilingual text encoder it would not use, and stores made before and
    after the multilingual ids record the same id.
    """
    return stored or image_only_model_id(default_model)


@dataclass
class CreatorImportOutcome:
    """What an import did.

    Attributes:
        imported: user ids written (new or refreshed), in input order.
        unchanged: user ids whose line equals the stored one (nothing read or written).
        failed: (where, message) of the lines skipped; the message starts with ``where``.
        posts_added, posts_removed: posts added to / dropped from the store.
        posts_embedded: images decoded and embedded (new posts and changed images).
    """

    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    posts_added: int = 0
    posts_removed: int = 0
    posts_embedded: int = 0


# -- validation ------------------------------------------------------------------------




@dataclass(frozen=True)
class _Loaded:
    sha256: str
    pixels: np.ndarray | None  # (3, S, S) float32 model input; None: image unchanged


class CreatorImporter:
    """Imports and refreshes creators (see the module docstring).

    Args:
        store: where creators go.
        models: model id -> loaded model (``ModelUnavailable`` if missing).
        settings: byte and pixel limits, import roots, the default model.
        workers: threads that read, hash and decode images while the model embeds.
    """

    def __init__(
        self, store: CreatorStore, models: Callable[[str], Embedder], settings: Settings, workers: int = 2
    ) -> None:
        self._store = store
        self._models = models
        self._settings = settings
        self._workers = workers

    def import_jsonl(
        self, path: Path, *, default_platform: str | None = None, progress: Callable[[int], None] | None = None
    ) -> CreatorImportOutcome:
        """Import a JSONL file, one creator a line (blank lines skipped); lines are named
        ``line N`` (1-based) and a line that is not JSON is reported in ``failed``.

        Raises:
            OSError: the file cannot be opened. Otherwise as ``import_creators``.
        """
        return self.import_creators(
            read_jsonl(path), base_dir=path.resolve().parent, default_platform=default_platform, progress=progress,
            local_files=True,
        )

    def import_creators(
        self,
        items: Iterable[tuple[str, object]],
        *,
        base_dir: Path | None = None,
        default_platform: str | None = None,
        progress: Callable[[int], None] | None = None,
        local_files: bool = False,
    ) -> CreatorImportOutcome:
        """Import (where, decoded JSON line) pairs, one creator each, in order.

        Each creator is written in its own transaction; a bad one is reported in ``failed``
        and nothing of it is written. Images are embedded with ``creator_model_id`` (the store's
        model, else the default's image-only twin), loaded only when some line needs an embedding.

        Lines are pipelined (see ``_Pipeline``): the images of the next creators are read
        and decoded on the worker threads while the model embeds the current one, at most
        ``LOOKAHEAD_IMAGES`` ahead; creators are still checked, written and reported in
        input order, and a line waits for an earlier line of the same creator to be written.

        Args:
            base_dir: folder relative image paths are resolved against.
            default_platform: platform for lines without ``platform``.
            progress: called with 1 after each item, in input order.
            local_files: the operator's import (a JSONL file): read any ``image_path`` /
                ``image_url`` file. Otherwise (HTTP) only files inside
                ``Settings.import_roots``, none without them (``service.local_files``).

        Raises:
            InvalidParameter: ``default_platform`` is not a platform.
            ModelUnavailable, ModelMismatch: the model cannot be loaded or differs from the
                stored embeddings'. Errors of the model itself propagate: creators written
                before stay written, the current one is untouched.
        """
        if default_platform is not None and default_platform not in PLATFORMS:
            raise InvalidParameter(f"platform: must be one of {', '.join(PLATFORMS)}")
        outcome = CreatorImportOutcome()
        with ThreadPoolExecutor(self._workers) as pool:
            roots = None if local_files else (self._settings.import_roots or ())
            _Pipeline(self, items, base_dir, default_platform, pool, outcome, roots).run(progress)
        for kind, done in (("imported", outcome.imported), ("unchanged", outcome.unchanged), ("failed", outcome.failed)):
            IMPORTED_CREATORS.labels(outcome=kind).inc(len(done))
        return outcome

    def _parse(self, where: str, obj: object, base_dir: Path | None, default_platform: str | None) -> ParsedCreator:
        if isinstance(obj, BadJson):
            raise InvalidParameter(f"{where}: {obj.message}")
        return parse_creator(obj, where, default_platform, base_dir)

    def _load_model(self) -> Embedder:
        stored = self._store.model_id()
        model = self._models(creator_model_id(stored, self._settings.default_model))
        dim = self._store.embedding_dim()
        if (stored is not None and model.info.model_id != stored) or (dim is not None and model.info.image_dim != dim):
            raise ModelMismatch(
                f"the creator store holds {dim}-dimensional embeddings of model '{stored}', but that model now "
                f"gives {model.info.image_dim}-dimensional ones ('{model.info.model_id}')"
            )
        return model

    def _load(
        self, post: ParsedPost, stored_sha: str | None, model: Embedder, roots: tuple[Path, ...] | None = ()
    ) -> _Loaded:
        """Read and hash the image; decode and preprocess it only if it is new or changed."""
        where = f"{post.where}.{post.image_field}"
        limit = self._settings.max_import_bytes
        if post.image_base64 is not None:
            data = decode_base64(post.image_base64, field=where, max_bytes=limit)
        else:
            assert post.image_file is not None, "a parsed post has base64 or a file"
            data = read_local_file(post.image_file, where, limit, roots)
        sha = hashlib.sha256(data).hexdigest()
        if sha == stored_sha:
            return _Loaded(sha, None)
        image = decode_image(data, field=where, max_pixels=self._settings.max_image_pixels)
        return _Loaded(sha, model.preprocess(image))


@dataclass(eq=False)
class _Entry:
    """A line between admission and its report. ``parsed`` None: failed at parse (``error``)."""

    where: str
    parsed: ParsedCreator | None = None
    error: str | None = None
    unchanged: bool = False
    stored: dict[str, str] = field(default_factory=dict)  # post_id -> stored image SHA-256
    submitted: int = 0  # posts whose load is submitted
    consumed: int = 0  # posts whose load was taken off the queue

    @property
    def writes(self) -> bool:
        return self.parsed is not None and not self.unchanged

    @property
    def creator(self) -> ParsedCreator:
        """The parsed line (entries admitted without a parse error only)."""
        assert self.parsed is not None
        return self.parsed

    @property
    def key(self) -> tuple[str, str]:
        return self.creator.record.platform, self.creator.record.user_id


class _Pipeline:
    """One ``import_creators`` run.

    The main thread admits lines in order (parse, unchanged check, stored image hashes) and
    submits their image loads to the pool while fewer than ``LOOKAHEAD_IMAGES`` are
    unconsumed, so reading and decoding the next creators overlaps embedding and writing the
    current one. Loads are consumed in submission order; the front line is embedded in
    batches of at most ``BATCH_SIZE`` and written as soon as its last post is embedded.
    Batches never span creators, so a model error leaves every earlier creator written and
    no later one touched. A line of a creator that an admitted line will write waits until
    that line is done: it must compare with what that line wrote.
    """

    def __init__(
        self, importer: CreatorImporter, items: Iterable[tuple[str, object]], base_dir: Path | None,
        default_platform: str | None, pool: ThreadPoolExecutor, outcome: CreatorImportOutcome,
        roots: tuple[Path, ...] | None = (),
    ) -> None:
        self._roots = roots
        self._imp, self._items, self._pool, self._outcome = importer, iter(items), pool, outcome
        self._base_dir, self._default_platform = base_dir, default_platform
        self._lines: deque[_Entry] = deque()  # admitted, not yet reported, in input order
        self._loads: deque[Future[_Loaded]] = deque()  # submitted, not yet consumed, in order
        self._writing: set[tuple[str, str]] = set()  # keys of admitted lines that write
        self._held: _Entry | None = None  # parsed, waiting for an earlier line of its creator
        self._model: Embedder | None = None

    def run(self, progress: Callable[[int], None] | None) -> None:
        try:
            self._fill()
            while self._lines:
                entry = self._lines[0]
                if entry.writes and entry.error is None:
                    self._import(entry)
                self._lines.popleft()
                if entry.writes:
                    self._writing.discard(entry.key)
                self._report(entry)
                if progress is not None:
                    progress(1)
                self._fill()
        finally:
            for future in self._loads:
                future.cancel()

    @property
    def model(self) -> Embedder:
        """The model, loaded when the first line that writes is admitted."""
        assert self._model is not None
        return self._model

    # -- admission ----------------------------------------------------------------------

    def _fill(self) -> None:
        """Submit loads, admitting lines as needed, until ``LOOKAHEAD_IMAGES`` are pending."""
        while len(self._loads) < LOOKAHEAD_IMAGES:
            tail = self._lines[-1] if self._lines else None
            if tail is not None and tail.writes and tail.error is None and tail.submitted < len(tail.creator.posts):
                post = tail.creator.posts[tail.submitted]
                self._loads.append(self._pool.submit(
                    self._imp._load, post, tail.stored.get(post.record.post_id), self.model, self._roots))
                tail.submitted += 1
            elif len(self._lines) >= LOOKAHEAD_LINES or not self._admit():
                return

    def _admit(self) -> bool:
        """Admit the next line; False at the end, or while it waits for its creator."""
        if self._held is None:
            item = next(self._items, None)
            if item is None:
                return False
            where, obj = item
            try:
                self._held = _Entry(where, self._imp._parse(where, obj, self._base_dir, self._default_platform))
            except LookalikeError as exc:
                self._lines.append(_Entry(where, error=_located(where, exc)))
                return True
        entry = self._held
        if entry.key in self._writing:
            return False
        self._held = None
        store = self._imp._store
        if store.content_hash(*entry.key) == entry.creator.content_hash:
            entry.unchanged = True
        else:
            if self._model is None:
                self._model = self._imp._load_model()
            entry.stored = store.post_hashes(*entry.key)
            self._writing.add(entry.key)
        self._lines.append(entry)
        return True

    # -- the front line -----------------------------------------------------------------

    def _import(self, entry: _Entry) -> None:
        """Embed the front line's new and changed images and write it; on a bad image or a
        refused write, set ``error`` and drop its remaining loads."""
        try:
            posts, embedded = self._embed(entry)
            report = self._imp._store.upsert_creator(
                entry.creator.record, posts, entry.creator.content_hash, self.model.info.model_id)
        except LookalikeError as exc:
            entry.error = _located(entry.where, exc)  # stops _fill submitting more of its posts
            for _ in range(entry.submitted - entry.consumed):
                self._loads.popleft().cancel()
            return
        self._outcome.posts_added += report.added
        self._outcome.posts_removed += report.removed
        self._outcome.posts_embedded += embedded

    def _embed(self, entry: _Entry) -> tuple[list[PostUpsert], int]:
        """Every post's (record, image SHA-256, embedding or None when unchanged) and the
        number of images embedded. Raises the first bad image's error."""
        posts = entry.creator.posts
        shas: list[str] = []
        vectors: list[np.ndarray | None] = [None] * len(posts)
        batch: list[tuple[int, np.ndarray]] = []
        for i in range(len(posts)):
            # The front line's loads lead the queue: earlier lines' are consumed or dropped,
            # and _fill submits the rest of a partly submitted line before admitting another.
            future = self._loads.popleft()
            entry.consumed += 1
            self._fill()
            loaded = future.result()
            shas.append(loaded.sha256)
            if loaded.pixels is not None:
                batch.append((i, loaded.pixels))
            if batch and (len(batch) == BATCH_SIZE or i == len(posts) - 1):
                self._flush(batch, vectors)
        embedded = sum(v is not None for v in vectors)
        return [(p.record, sha, v) for p, sha, v in zip(posts, shas, vectors, strict=True)], embedded

    def _flush(self, batch: list[tuple[int, np.ndarray]], vectors: list[np.ndarray | None]) -> None:
        visual = self.model.embed_pixels(np.stack([pixels for _, pixels in batch])).visual
        for (i, _), vector in zip(batch, visual, strict=True):
            vectors[i] = vector
        batch.clear()

    def _report(self, entry: _Entry) -> None:
        if entry.error is not None:
            self._outcome.failed.append((entry.where, entry.error))
        elif entry.unchanged:
            self._outcome.unchanged.append(entry.creator.record.user_id)
        else:
            self._outcome.imported.append(entry.creator.record.user_id)


def _located(where: str, exc: LookalikeError) -> str:
    return exc.message if exc.message.startswith(where) else f"{where}: {exc.message}"


