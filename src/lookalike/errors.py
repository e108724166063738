"""Errors raised below the API layer.

Every error carries a machine-readable ``status`` (the envelope's ``status`` field) and
the HTTP code the API maps it to, so the service never imports the web framework.
"""

from __future__ import annotations


class LookalikeError(Exception):
    """Base class. ``status`` names the problem; ``http_status`` is its HTTP code."""

    http_status = 500
    status = "INTERNAL_ERROR"

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidParameter(LookalikeError):
    """A request field breaks a rule (HTTP 400). The message names the field and the rule."""

    http_status = 400
    status = "INVALID_PARAMETER"


class InvalidImage(InvalidParameter):
    """Image bytes that cannot be decoded or break a size limit (HTTP 400)."""

    status = "INVALID_IMAGE"


class InvalidFilter(InvalidParameter):
    """A ``tag_filter`` that breaks the filter grammar (HTTP 400).

    ``path`` locates the problem inside the filter, e.g. ``tag_filter[1].or[0].op``.
    """

    status = "INVALID_TAG_FILTER"

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"{path}: {rule}")
        self.path = path
        self.rule = rule


class ModeNotSupported(InvalidParameter):
    """The library's mode does not support the operation (HTTP 400)."""

    status = "MODE_NOT_SUPPORTED"


class ModelMismatch(InvalidParameter):
    """A library was built with another model or embedding size than the one offered (HTTP 400)."""

    status = "MODEL_MISMATCH"


class ModelUnavailable(LookalikeError):
    """Model weights cannot be found locally (HTTP 400 when a client named the model)."""

    http_status = 400
    status = "MODEL_UNAVAILABLE"


class NotFound(LookalikeError):
    """A library or image does not exist (HTTP 404)."""

    http_status = 404
    status = "NOT_FOUND"


class LibraryNotFound(NotFound):
    status = "LIBRARY_NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(f"Image library '{name}' not found.")
        self.name = name


class ImageNotFound(NotFound):
    status = "IMAGE_NOT_FOUND"

    def __init__(self, library: str, image_id: str) -> None:
        super().__init__(f"Image '{image_id}' not found in library '{library}'.")


class Conflict(LookalikeError):
    """The resource already exists (HTTP 409)."""

    http_status = 409
    status = "ALREADY_EXISTS"


# --- Access to the creator-search API (issue 3). ``code`` is the Modash-style error code
# of the ``{"error": true, "code", "message"}`` body; ``status`` keeps this module's style.


class Unauthorized(LookalikeError):
    """A missing or malformed ``Authorization`` header, or an unknown or revoked token (HTTP 401).

    ``code`` is Modash's ``api_token_invalid`` (https://docs.modash.io, "Error codes").
    """

    http_status = 401
    status = "UNAUTHORIZED"
    code = "api_token_invalid"


class RateLimited(LookalikeError):
    """The token used its request budget on this endpoint (HTTP 429); nothing was charged.

    ``retry_after`` is whole seconds (>= 1) to send as the ``Retry-After`` header.
    """

    http_status = 429
    status = "RATE_LIMITED"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PaymentRequired(LookalikeError):
    """The token's credits cannot cover the request (HTTP 402); nothing was charged.

    ``needed_milli`` and ``balance_milli`` are milli-credits (1 credit = 1000).
    """

    http_status = 402
    status = "NOT_ENOUGH_CREDITS"
    code = "not_enough_credits"

    def __init__(self, message: str, *, needed_milli: int, balance_milli: int) -> None:
        super().__init__(message)
        self.needed_milli = needed_milli
        self.balance_milli = balance_milli


class CreatorNotFound(NotFound):
    """A creator profile is not stored for that platform (HTTP 404)."""

    status = "CREATOR_NOT_FOUND"

    def __init__(self, platform: str, user_id: str) -> None:
        super().__init__(f"Creator '{user_id}' not found on {platform}.")
        self.platform = platform
        self.user_id = user_id


# --- The Constructor-compatible API's index keys and request bodies (``api/constructor.py``).


class KeyNotFound(NotFound):
    """The index key does not exist (the Constructor API answers it with HTTP 401)."""

    status = "KEY_NOT_FOUND"

    def __init__(self, key: str) -> None:
        super().__init__(f"Index key '{key}' not found.")
        self.key = key


class SectionNotFound(NotFound):
    """The index key has no such section (HTTP 404)."""

    status = "SECTION_NOT_FOUND"

    def __init__(self, key: str, section: str) -> None:
        super().__init__(f"Index key '{key}' has no section '{section}'.")
        self.key = key
        self.section = section


class KeyRejected(LookalikeError):
    """A missing or unknown index key (HTTP 401)."""

    http_status = 401
    status = "INVALID_KEY"


class PayloadTooLarge(InvalidParameter):
    """The query image is over ``max_query_bytes`` (HTTP 413)."""

    http_status = 413
    status = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(InvalidParameter):
    """A body type other than JSON, multipart or raw image bytes (HTTP 415)."""

    http_status = 415
    status = "UNSUPPORTED_MEDIA_TYPE"


class InvalidJSON(InvalidParameter):
    """A request body that is not parseable JSON (HTTP 400); the message gives line and column."""

    status = "INVALID_JSON"


class Busy(LookalikeError):
    """The server's decode budget is taken by other requests (HTTP 503); try again after
    ``retry_after`` whole seconds (the ``Retry-After`` header)."""

    http_status = 503
    status = "BUSY"
    code = "server_busy"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AdminRequired(Unauthorized):
    """A write or management route called without a valid admin token (HTTP 401)."""

    status = "UNAUTHORIZED"
    code = "admin_token_invalid"


class StoreUnavailable(LookalikeError):
    """The storage backend (a Milvus server) cannot be reached or did not answer in time
    (HTTP 503). Retrying later may succeed; nothing of the failed write was acknowledged."""

    http_status = 503
    status = "STORE_UNAVAILABLE"
