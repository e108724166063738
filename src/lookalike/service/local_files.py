"""Reading an image file named by a request or an import line, safely.

Two callers, two rules:

* the operator (the CLI, evaluations): ``roots=None``, any file the process can read;
* HTTP clients: ``roots`` = ``Settings.import_roots or ()``. With no roots the server reads no
  file for a client at all; with roots, only a regular file whose real path (symlinks and
  ``..`` resolved) lies inside one of them, never under ``/proc``, ``/sys`` or ``/dev``.
  Every refusal of a client's path has the same message, so a client cannot tell whether a
  path outside the roots exists.

Either way the file is opened without following a final symlink and without blocking (a
FIFO), checked to be a regular file on the open descriptor (no device such as
``/dev/zero``), and read with a hard cap of ``max_bytes`` + 1 bytes: the size is never
trusted from ``stat`` (``/proc`` files report 0).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import InvalidImage

#: Never read for a client, whatever the roots say: kernel and device files.
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
_CHUNK = 1 << 20


def read_local_file(source: Path, field: str, max_bytes: int, roots: tuple[Path, ...] | None = None) -> bytes:
    """The bytes of a local image file, at most ``max_bytes`` of them.

    Args:
        source: the path as given (relative paths are relative to the process's folder).
        field: the request field that named the file, used in error messages.
        max_bytes: size limit, in bytes, enforced while reading.
        roots: ``None``: the operator's own read, any regular file; else the folders a client
            may name files in (``()``: none, the default of ``Settings.import_roots``).

    Raises:
        InvalidImage: no roots for a client, outside the roots, missing, unreadable, not a
            regular file, or more than ``max_bytes`` bytes.
    """
    if roots is None:
        return _read(source, field, max_bytes, refused=None)
    if not roots:
        raise InvalidImage(f"{field}: this server reads no local files for HTTP requests; send the image as base64"
                           " (an operator can allow folders with LOOKALIKE_IMPORT_ROOTS)")
    refused = f"{field}: '{source}' is not a readable image file inside this server's import folders"
    resolved = Path(os.path.realpath(source))
    inside = any(resolved.is_relative_to(root) for root in roots)
    if not inside or any(resolved.is_relative_to(p) for p in PSEUDO_FILESYSTEMS):
        raise InvalidImage(refused)
    return _read(resolved, field, max_bytes, refused=refused)


def _read(path: Path, field: str, max_bytes: int, refused: str | None) -> bytes:
    """Open without following a final symlink or blocking, check S_ISREG on the descriptor, read capped.

    ``refused``: the one message for every failure that could reveal the path (clients); None
    tells the reason (the operator)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if refused is None:
        flags &= ~getattr(os, "O_NOFOLLOW", 0)  # the operator may point at a symlink on purpose
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InvalidImage(refused or f"{field}: cannot read '{path}' ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidImage(refused or f"{field}: '{path}' is not a regular file")
        chunks, size = [], 0
        try:
            while size <= max_bytes:
                chunk = f.read(min(_CHUNK, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise InvalidImage(refused or f"{field}: cannot read '{path}' ({exc.strerror or exc})") from None
    if size > max_bytes:
        raise InvalidImage(f"{field}: file is larger than the limit of {max_bytes} bytes")
    return b"".join(chunks)
