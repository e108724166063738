"""Decoding untrusted image bytes into RGB Pillow images.

Accepts JPEG, PNG, WebP and GIF (first frame); applies the EXIF orientation; rejects
oversized inputs before decoding pixels (decompression bombs); decodes large images at a
reduced size (JPEG draft mode, ``Image.reduce`` for the others), since the models need only
about 224 px; and bounds the memory of all decodes in flight with one ``DecodeBudget``.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import io
import re
import threading
import time
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import Busy, InvalidImage, InvalidParameter

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})

# Smallest side kept when JPEG draft mode downsamples by 1/2, 1/4 or 1/8 at decode time.
# 2x the largest model input (260 px for Lite2) keeps resampling quality.
DRAFT_MIN_SIDE = 520


_WHITESPACE = re.compile(r"\s+")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=\-_\s]")


def decode_base64(
    data: str, *, field: str, max_bytes: int, too_large: type[InvalidParameter] = InvalidImage
) -> bytes:
    """Decode base64 text (optionally a ``data:image/...;base64,`` URL) to bytes.

    Accepts the common variants (RFC 4648): the standard alphabet or the URL-safe one
    (``-``, ``_``), padded or unpadded, and line-wrapped text as MIME and ``base64`` print it
    (any whitespace is dropped). Anything else is refused with the exact reason.

    Args:
        data: the base64 text.
        field: request field name, used in error messages.
        max_bytes: limit on the decoded size, in bytes.
        too_large: the error raised over ``max_bytes`` (the Constructor face answers 413).

    Raises:
        InvalidImage: empty, or not base64: the message names the first character outside
            the alphabet and its 0-based position in ``data``, mixed alphabets, ``=`` inside
            the data, or a length no base64 text can have; ``too_large`` (default
            InvalidImage): larger than ``max_bytes``.
    """
    if not isinstance(data, str) or not data.strip():
        raise InvalidImage(f"{field}: must be a non-empty base64 string")
    offset = len(data) - len(data.lstrip())
    text = data.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        offset += len(head) + 1
    # 4 base64 chars carry 3 bytes: reject before allocating a huge buffer.
    if (len(text) - sum(map(text.count, " \t\r\n"))) * 3 // 4 > max_bytes + 3:  # line breaks carry nothing
        raise too_large(f"{field}: image is larger than the limit of {max_bytes} bytes")
    bad = _NOT_BASE64.search(text)
    if bad is not None:
        raise InvalidImage(f"{field}: is not valid base64: character {bad.group()!r} at position "
                           f"{bad.start() + offset} is not in the base64 alphabet (A-Z a-z 0-9 + / or URL-safe - _)")
    standard = re.search(r"[+/]", text)
    urlsafe = re.search(r"[-_]", text)
    if standard and urlsafe:
        later = max(standard, urlsafe, key=lambda m: m.start())
        raise InvalidImage(f"{field}: is not valid base64: mixes the standard ('+', '/') and URL-safe ('-', '_')"
                           f" alphabets ({later.group()!r} at position {later.start() + offset})")
    compact = _WHITESPACE.sub("", text)
    body = compact.rstrip("=")
    pad = len(compact) - len(body)
    if "=" in body:
        where = text.index("=")
        raise InvalidImage(f"{field}: is not valid base64: padding '=' at position {where + offset} is followed by"
                           " more data")
    if len(body) % 4 == 1:
        raise InvalidImage(f"{field}: is not valid base64: {len(body)} base64 characters (4n+1) cannot be decoded;"
                           " the text is truncated or has an extra character")
    needed = -len(body) % 4
    if pad and pad != needed:
        raise InvalidImage(f"{field}: is not valid base64: wrong padding: {len(body)} characters take {needed} '=',"
                           f" got {pad}")
    try:
        raw = base64.b64decode(body + "=" * needed, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError) as exc:  # unreachable after the checks above; kept as a guard
        raise InvalidImage(f"{field}: is not valid base64 ({exc})") from None
    if len(raw) > max_bytes:
        raise too_large(f"{field}: image is {len(raw)} bytes, larger than the limit of {max_bytes} bytes")
    if not raw:
        raise InvalidImage(f"{field}: decodes to zero bytes")
    return raw


def image_format(data: bytes) -> str | None:
    """The Pillow format name of encoded image bytes (``JPEG``, ``PNG``, ``WEBP``, ``GIF``, ...),
    read from the header only; ``None`` when Pillow does not recognise them."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # noqa: BLE001 - any unreadable header means "unknown"
        return None


class DecodeBudget:
    """A process-wide budget of pixels that decodes in flight may hold at once.

    A decode takes ``min(width * height, capacity)`` pixels before Pillow allocates them and
    gives them back when the (reduced) image is ready, so the decode memory of the whole
    process stays near ``capacity`` x 4 bytes (RGBA) whatever the number of requests; one
    image larger than the budget runs alone. Thread-safe (a ``threading.Condition``).

    Args:
        capacity: pixels; ``Settings.decode_budget_pixels`` (``configure`` sets it at start-up).
    """

    def __init__(self, capacity: int = 64_000_000) -> None:
        self.capacity = capacity
        self._used = 0
        self._cond = threading.Condition()

    def configure(self, capacity: int) -> None:
        """Set the capacity (pixels, >= 1)."""
        with self._cond:
            self.capacity = max(1, int(capacity))
            self._cond.notify_all()

    def acquire(self, pixels: int, wait: float | None, field: str) -> int:
        """Take ``pixels`` (capped at the capacity); returns what was taken, for ``release``.

        Args:
            wait: seconds to wait for room; None waits as long as it takes (imports).

        Raises:
            Busy (503): no room within ``wait`` seconds.
        """
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            take = min(pixels, self.capacity)
            while self._used + take > self.capacity:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise Busy(f"{field}: the server is decoding other large images; retry in a moment",
                               retry_after=1)
                self._cond.wait(left)
                take = min(pixels, self.capacity)
            self._used += take
            return take

    def release(self, pixels: int) -> None:
        """Give back what ``acquire`` returned."""
        with self._cond:
            self._used -= pixels
            self._cond.notify_all()

    @property
    def used(self) -> int:
        """Pixels held by decodes in flight now."""
        return self._used


#: glibc's ``mallopt`` parameter for the mmap threshold (malloc.h: M_MMAP_THRESHOLD = -3).
_M_MMAP_THRESHOLD = -3
#: Allocations from this size up get their own mapping, returned to the OS when freed.
MMAP_THRESHOLD_BYTES = 1 << 20


def return_freed_decodes_to_os() -> bool:
    """Make glibc serve every allocation of ``MMAP_THRESHOLD_BYTES`` or more (Pillow's image
    blocks) from its own mapping, so a decode's memory goes back to the OS when freed.

    By default glibc raises its mmap threshold up to 32 MB after the first large free (the
    "dynamic threshold"), after which decode buffers come from heap arenas that the process
    keeps: measured 0.83 GB still resident after a burst of 7071 x 7071 PNG queries
    (``benchmarks/decode_memory.py``). Setting the threshold explicitly turns the dynamic one
    off (mallopt(3)). Returns False where there is no glibc (the setting is skipped).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


#: The one budget of this process (``Runtime.open`` sizes it from ``Settings``).
DECODE_BUDGET = DecodeBudget()
_BOMB_SIZE = re.compile(r"\((\d+) pixels\)")


def decode_image(
    data: bytes,
    *,
    field: str = "image",
    max_pixels: int = 50_000_000,
    min_side: int = DRAFT_MIN_SIDE,
    wait: float | None = None,
) -> Image.Image:
    """Decode image bytes to an RGB image, reduced to what the models need.

    Args:
        data: encoded JPEG / PNG / WebP / GIF bytes.
        field: request field name, used in error messages.
        max_pixels: limit on width x height of the encoded image, in pixels.
        min_side: images whose shortest side is at least twice this come back reduced by an
            integer factor, shortest side still >= ``min_side`` pixels: JPEGs decode reduced
            (Pillow's draft mode: 1/2..1/8 in the DCT), others are reduced with
            ``Image.reduce`` right after decoding.
        wait: seconds to wait for the process's ``DECODE_BUDGET`` (queries); None waits as
            long as it takes (imports).

    Returns:
        An RGB ``PIL.Image.Image``, EXIF orientation applied.

    Raises:
        InvalidImage: unknown or corrupt format, too many pixels, truncated data.
        Busy (503): no decode budget within ``wait`` seconds.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(f"{field}: not a decodable image (accepted: JPEG, PNG, WebP, GIF)") from None
    except Image.DecompressionBombError as exc:  # above 2x Pillow's own limit: too many pixels, not corrupt
        found = _BOMB_SIZE.search(str(exc))
        size = f"image is {found.group(1)} pixels" if found else "image has more pixels than Pillow opens"
        raise InvalidImage(f"{field}: too many pixels: {size}, above the limit of {max_pixels}") from None
    except Exception as exc:  # Pillow raises many types on corrupt headers
        raise InvalidImage(f"{field}: corrupt image header ({type(exc).__name__})") from None
    if image.format not in ACCEPTED_FORMATS:
        raise InvalidImage(f"{field}: format {image.format} is not accepted (accepted: JPEG, PNG, WebP, GIF)")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"{field}: image has no pixels")
    if width * height > max_pixels:
        raise InvalidImage(
            f"{field}: too many pixels: image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
        )
    factor = max(1, min(width, height) // max(1, min_side))
    if image.format == "JPEG" and factor >= 2:
        # draft picks a DCT scale of 1/2..1/8 whose result still covers the requested size
        image.draft("RGB", (max(1, width // factor), max(1, height // factor)))
    decoded_pixels = image.size[0] * image.size[1]
    held = DECODE_BUDGET.acquire(decoded_pixels, wait, field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)  # GIF / animated WebP: first frame
            image.load()
        left = max(1, min(image.size) // max(1, min_side))
        if left >= 2:
            if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
                image = image.convert("RGBA" if _has_alpha(image) else "RGB")
            image = image.reduce(left)
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = _to_rgb(image)
    except InvalidImage:
        raise
    except Exception as exc:
        raise InvalidImage(f"{field}: image data is corrupt or truncated ({type(exc).__name__})") from None
    finally:
        DECODE_BUDGET.release(held)
    return image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _to_rgb(image: Image.Image) -> Image.Image:
    # Transparent pixels become white, as they show on a typical product page.
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """Encode an RGB image as JPEG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
