"""Settings shared by the server and the CLI.

All state lives under one data dir: ``--data-dir``, else ``$LOOKALIKE_DATA_DIR``,
else ``~/.lookalike``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "efficientnet-lite0-multilingual"  # = models.DEFAULT_MODEL_ID (tests check)


def default_data_dir() -> Path:
    """The data dir from ``$LOOKALIKE_DATA_DIR``, else ``~/.lookalike``."""
    env = os.environ.get("LOOKALIKE_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".lookalike"


@dataclass(frozen=True)
class Settings:
    """Runtime settings.

    Attributes:
        data_dir: root of all state (database, vector index files, ONNX model cache).
        max_query_bytes: largest accepted query image, in bytes of the decoded base64 (5 MB).
        max_import_bytes: largest accepted imported image, in bytes.
        max_request_bytes: largest accepted HTTP request body, in bytes (bulk imports are the
            big ones: 1000 images a request).
        max_image_pixels: largest accepted width x height, in pixels; a guard against
            decompression bombs (Pillow's own default warns at 89.5 Mpx).
        default_model: model id used when a library is created without one.
        import_roots: folders that HTTP imports may read local files from (a local
            ``image_uri``, a creator's ``image_path`` / ``image_url``); ``None`` (the default):
            HTTP requests never make the server read its files. ``$LOOKALIKE_IMPORT_ROOTS``,
            ``os.pathsep``-separated. The CLI (the operator) reads any file it names.
        max_query_pixels: largest query image, width x height in pixels (50 Mpx: a 7071 x 7071
            image; the models need ~224 px, so queries are decoded reduced, see ``imaging``).
        decode_budget_pixels: pixels that all decodes in flight may hold at once (a
            process-wide budget: 64 Mpx is about 260 MB of RGBA); a decode larger than the
            budget runs alone.
        decode_wait_s: how long a query waits for decode budget before 503 ``BUSY``, seconds.
        search_key: when set (``$LOOKALIKE_SEARCH_KEY``), the operator API's searches and reads
            need it as a bearer credential; None: they are open (the default).
        cors_origins: origins browsers may call from (``$LOOKALIKE_CORS_ORIGINS``,
            comma-separated; ``*`` any). Default ``("*",)``: /v2 is called from shop pages with
            a public index key and no cookies.
        cors_faces: which faces answer CORS (``$LOOKALIKE_CORS_FACES``, comma-separated among
            ``v2``, ``v1``, ``operator``); default ``("v2",)``.
        models_dir: ONNX export cache; default ``<data_dir>/models`` (``$LOOKALIKE_MODEL_CACHE``
            shares one cache between data dirs).
        store: where image libraries live (``$LOOKALIKE_STORE``): ``embedded`` (SQLite + in-memory
            index under the data dir) or a Milvus server, ``milvus://[USER:PASSWORD@]HOST:PORT[/DB]``
            with options ``?secure=true&timeout=SECONDS&prefix=NAME_`` (see ``store/milvus_uri.py``).
    """

    data_dir: Path = field(default_factory=default_data_dir)
    max_query_bytes: int = 5 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    max_import_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 256 * 1024 * 1024
    default_model: str = DEFAULT_MODEL
    models_dir: Path | None = None
    import_roots: tuple[Path, ...] | None = None
    max_query_pixels: int = 50_000_000
    decode_budget_pixels: int = 64_000_000
    decode_wait_s: float = 5.0
    search_key: str | None = None
    cors_origins: tuple[str, ...] = ("*",)
    cors_faces: tuple[str, ...] = ("v2",)
    store: str = "embedded"

    # Every file name inside the data dir is here, and only here.

    @property
    def db_path(self) -> Path:
        """Libraries and images (SQLite)."""
        return self.data_dir / "lookalike.db"

    @property
    def keys_db_path(self) -> Path:
        """Index keys of the Constructor-compatible API (SQLite, apart so key look-ups never wait on imports)."""
        return self.data_dir / "keys.db"

    @property
    def creators_db_path(self) -> Path:
        """Creators and their posts (SQLite)."""
        return self.data_dir / "creators.db"

    @property
    def tokens_db_path(self) -> Path:
        """Access tokens, credits and rate-limit slots of the creator-search API (SQLite)."""
        return self.data_dir / "access.db"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def milvus_bytes_path(self) -> Path:
        """Original image bytes of libraries kept in Milvus (Milvus holds vectors and tags)."""
        return self.data_dir / "milvus-bytes.db"

    @property
    def model_cache_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None) -> Settings:
        """Settings with ``data_dir`` (or the default) and limits from ``LOOKALIKE_*`` env vars."""
        kwargs: dict = {}
        if data_dir is not None:
            kwargs["data_dir"] = Path(data_dir).expanduser()
        if v := os.environ.get("LOOKALIKE_MAX_QUERY_BYTES"):
            kwargs["max_query_bytes"] = int(v)
        if v := os.environ.get("LOOKALIKE_MAX_REQUEST_BYTES"):
            kwargs["max_request_bytes"] = int(v)
        if v := os.environ.get("LOOKALIKE_MAX_IMAGE_PIXELS"):
            kwargs["max_image_pixels"] = int(v)
        if v := os.environ.get("LOOKALIKE_MODEL_CACHE"):
            kwargs["models_dir"] = Path(v).expanduser()
        if v := os.environ.get("LOOKALIKE_IMPORT_ROOTS"):
            kwargs["import_roots"] = tuple(Path(p).expanduser().resolve() for p in v.split(os.pathsep) if p)
        if v := os.environ.get("LOOKALIKE_MAX_QUERY_PIXELS"):
            kwargs["max_query_pixels"] = int(v)
        if v := os.environ.get("LOOKALIKE_DECODE_BUDGET_PIXELS"):
            kwargs["decode_budget_pixels"] = int(v)
        if v := os.environ.get("LOOKALIKE_SEARCH_KEY"):
            kwargs["search_key"] = v
        if (v := os.environ.get("LOOKALIKE_CORS_ORIGINS")) is not None:
            kwargs["cors_origins"] = tuple(o.strip() for o in v.split(",") if o.strip())
        if (v := os.environ.get("LOOKALIKE_CORS_FACES")) is not None:
            kwargs["cors_faces"] = tuple(f.strip() for f in v.split(",") if f.strip())
        if v := os.environ.get("LOOKALIKE_MODEL"):
            kwargs["default_model"] = v
        if v := os.environ.get("LOOKALIKE_STORE"):
            kwargs["store"] = v.strip()
        return cls(**kwargs)
