"""Access to the creator-search API: bearer tokens, 1 request/second/endpoint, credits.

Prices (``platforms.RULES``; issue 3, mirroring Modash's image-search pricing): an Instagram search costs 0.15
credit whatever it returns; a TikTok search costs 0.025 credit per returned profile.
Amounts are integer milli-credits everywhere below the CLI and the HTTP headers.

A search route calls, in this order::

    token = access.authenticate(request.headers.get("authorization"))  # 401
    access.admit(token, endpoint)                 # 429: not charged, slot not taken
    access.require(token, min_cost_milli(platform))   # 402 before any work
    ... search, build the whole response ...
    receipt = access.charge(token, cost_milli(platform, len(profiles)))   # 402, or charged once
    # headers X-Credits-Charged / X-Credits-Left = format_credits(receipt.*_milli)

**The charging rule.** ``charge`` is all or nothing, in one atomic UPDATE: either the full
cost of the response is taken and the response is sent, or (balance short, e.g. spent by a
concurrent request since ``require``) nothing is taken and the request fails with 402. A
page is never trimmed to fit the balance, because pages must stay stable for a query. So
the balance never goes negative, a request is charged at most once (``charge`` is called
once, last, after everything that could fail), and a request that fails costs nothing.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import InvalidParameter, PaymentRequired, RateLimited, Unauthorized
from ...store.token_store import MAX_CREDITS_MILLI, SECRET_PATTERN, TokenRecord, TokenStore
from .platforms import rules

#: Each token may make one search request per this many seconds per endpoint (issue 3).
RATE_INTERVAL_S = 1.0

_CREDITS = re.compile(r"(\d+)(?:\.(\d{1,3}))?")


def min_cost_milli(platform: str) -> int:
    """The least a search on ``platform`` (``instagram`` | ``tiktok``) can cost, milli-credits:
    what ``require`` checks before searching (TikTok: one profile)."""
    return rules(platform).min_cost_milli()


def cost_milli(platform: str, profiles: int) -> int:
    """The price of a successful search that returned ``profiles`` profiles, milli-credits.

    Instagram: 150 even for an empty page; TikTok: 25 per profile, so 0 for an empty page.
    """
    return rules(platform).cost_milli(profiles)


def parse_credits(text: str, *, field: str = "credits") -> int:
    """Decimal credits ("10", "0.15", "0.025") -> milli-credits (10000, 150, 25), exactly.

    Raises:
        InvalidParameter: not a plain non-negative decimal, more than 3 decimals, or above
            the largest balance (one billion credits).
    """
    m = _CREDITS.fullmatch(text.strip())
    if m is None:
        raise InvalidParameter(f"{field}: must be a non-negative decimal with at most 3 decimals (e.g. 10 or 0.15), "
                               f"got {text!r}")
    milli = int(m.group(1)) * 1000 + int((m.group(2) or "").ljust(3, "0"))
    if milli > MAX_CREDITS_MILLI:
        raise InvalidParameter(f"{field}: must be at most {MAX_CREDITS_MILLI // 1000} credits")
    return milli


def format_credits(milli: int) -> str:
    """Milli-credits -> the shortest exact decimal string: 150 -> "0.15", 10000 -> "10", 25 -> "0.025"."""
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), 1000)
    return f"{sign}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


@dataclass(frozen=True)
class ChargeReceipt:
    """What one request cost and what is left, in milli-credits."""

    charged_milli: int
    left_milli: int


class AccessService:
    """Token administration and the per-request checks of the creator-search API.

    Args:
        store: the tokens (``TokenStore(<data_dir>/access.db)``).
        clock: Unix seconds now; injected by tests.
        interval_s: seconds between two admitted requests of a token on one endpoint.
    """

    def __init__(self, store: TokenStore, clock: Callable[[], float] = time.time,
                 interval_s: float = RATE_INTERVAL_S) -> None:
        self.store = store
        self._clock = clock
        self._interval = interval_s

    # -- administration (CLI) ---------------------------------------------------------

    def create_token(self, credits_milli: int, label: str | None = None) -> tuple[TokenRecord, str]:
        """A new token and its secret (``lk_`` + 32 URL-safe chars), shown this once; only its hash is kept."""
        return self.store.create(credits_milli, label)

    def list_tokens(self) -> list[TokenRecord]:
        return self.store.list()

    def top_up(self, token_id: str, milli: int) -> TokenRecord:
        """Add milli-credits. Raises NotFound, Conflict (revoked), InvalidParameter (see ``TokenStore.top_up``)."""
        return self.store.top_up(token_id, milli)

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke for good; its next request gets 401. Raises NotFound."""
        return self.store.revoke(token_id)

    # -- per request ------------------------------------------------------------------

    def authenticate(self, authorization_header: str | None) -> TokenRecord:
        """The live token named by an ``Authorization: Bearer <secret>`` header.

        The scheme is case-insensitive (RFC 9110, 11.1). Raises:
            Unauthorized: header missing or not ``Bearer <secret>``, a secret of the wrong
                form (rejected without a lookup), an unknown or a revoked token.
        """
        if not authorization_header or not authorization_header.strip():
            raise Unauthorized("Authorization: header missing; send 'Authorization: Bearer <token>'")
        parts = authorization_header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise Unauthorized("Authorization: expected 'Bearer <token>'")
        if SECRET_PATTERN.fullmatch(parts[1]) is None:
            raise Unauthorized("Authorization: malformed token (expected 'lk_' and 32 URL-safe characters)")
        token = self.store.get_by_secret(parts[1])
        if token is None:
            raise Unauthorized("Authorization: unknown token; a valid API token is needed")
        if token.revoked:
            raise Unauthorized("Authorization: the token has been revoked")
        return token

    def admit(self, token: TokenRecord, endpoint: str) -> None:
        """Take the token's request slot on ``endpoint`` (any stable key, e.g. the route path).

        Raises:
            RateLimited: a request was admitted less than ``interval_s`` ago; ``retry_after``
                is the wait in whole seconds, rounded up, >= 1. The refused request does not
                take the slot and is not charged.
        """
        wait = self.store.try_acquire_slot(token.id, endpoint, self._clock(), self._interval)
        if wait is not None:
            retry_after = max(1, math.ceil(wait))
            raise RateLimited(f"Rate limit: 1 request per {self._interval:g} s per endpoint on '{endpoint}'; "
                              f"retry in {retry_after} s", retry_after=retry_after)

    def require(self, token: TokenRecord, milli: int) -> int:
        """Check, before any work, that the balance covers ``milli``; returns the balance.

        Raises:
            PaymentRequired: the balance is below ``milli``.
        """
        balance = self.store.balance(token.id)
        if balance < milli:
            raise self._short(milli, balance)
        return balance

    def charge(self, token: TokenRecord, milli: int) -> ChargeReceipt:
        """Take ``milli`` (>= 0) milli-credits, all or nothing, atomically; call once, last.

        Raises:
            PaymentRequired: the balance cannot cover ``milli`` (nothing was taken).
            Unauthorized: the token was revoked since ``authenticate``.
        """
        left = self.store.charge(token.id, milli)
        if left is not None:
            return ChargeReceipt(charged_milli=milli, left_milli=left)
        current = self.store.get(token.id)
        if current is None or current.revoked:
            raise Unauthorized("Authorization: the token has been revoked")
        raise self._short(milli, current.credits_milli)

    @staticmethod
    def _short(milli: int, balance: int) -> PaymentRequired:
        return PaymentRequired(f"Not enough credits: this request costs {format_credits(milli)}, "
                               f"the balance is {format_credits(balance)}",
                               needed_milli=milli, balance_milli=balance)
