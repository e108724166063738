"""Access tokens, the rate limit and credits of the creator-search API: CLI, service, concurrency."""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.errors import Conflict, InvalidParameter, NotFound, PaymentRequired, RateLimited, Unauthorized
from lookalike.service.creators.access import (
    AccessService,
    ChargeReceipt,
    cost_milli,
    format_credits,
    min_cost_milli,
    parse_credits,
)
from lookalike.service.creators.platforms import RULES
from lookalike.store.token_store import TokenStore

INSTAGRAM_SEARCH_MILLI = RULES["instagram"].search_milli
TIKTOK_PROFILE_MILLI = RULES["tiktok"].profile_milli

SECRET = re.compile(r"^lk_[A-Za-z0-9_-]{32}$", re.MULTILINE)


class Clock:
    """A settable clock (Unix seconds) for AccessService."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "access.db"


@pytest.fixture
def store(db):
    with TokenStore(db) as s:
        yield s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def access(store, clock) -> AccessService:
    return AccessService(store, clock=clock)


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


# -- CLI ------------------------------------------------------------------------------------


def cli(data_dir: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["tokens", *args, "--data-dir", str(data_dir)], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def table_row(listing: str, token_id: str) -> list[str]:
    """The cells of the rich table row of ``token_id`` in ``tokens list`` output."""
    line = next(line for line in listing.splitlines() if token_id in line)
    return [cell.strip() for cell in re.split(r"[│|]", line)[1:-1]]


def test_cli_token_lifecycle(tmp_path):
    data_dir = tmp_path / "data"
    out = cli(data_dir, "create", "--credits", "10", "--label", "shop-a")
    secret = SECRET.search(out).group(0)
    token_id = re.search(r"id ([0-9a-f]{8}), balance 10 credits, label shop-a", out).group(1)

    with TokenStore(data_dir / "access.db") as store:
        service = AccessService(store)
        assert service.authenticate(bearer(secret)).id == token_id

        listing = cli(data_dir, "list")
        assert secret not in listing and secret[3:] not in listing
        assert table_row(listing, token_id)[:3] == [token_id, "shop-a", "10"]

        assert "balance 10.15 credits" in cli(data_dir, "top-up", token_id, "--credits", "0.15")
        assert store.balance(token_id) == 10_150
        service.charge(service.authenticate(bearer(secret)), 25)
        row = table_row(cli(data_dir, "list"), token_id)
        assert row[2] == "10.125" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row[3]) and row[4] == ""

        cli(data_dir, "revoke", token_id)
        with pytest.raises(Unauthorized, match="revoked"):
            service.authenticate(bearer(secret))
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", table_row(cli(data_dir, "list"), token_id)[4])


def test_cli_rejects_bad_credits_and_ids(tmp_path):
    data_dir = tmp_path / "data"
    for bad in ("-1", "0.0001", "abc", "1e3", "1,5", ""):
        assert "--credits" in cli(data_dir, "create", "--credits", bad, code=2)
    out = cli(data_dir, "create", "--credits", "0.025")
    token_id = re.search(r"id ([0-9a-f]{8}), balance 0.025 credits", out).group(1)
    assert "must be greater than 0" in cli(data_dir, "top-up", token_id, "--credits", "0", code=2)
    assert "not found" in cli(data_dir, "top-up", "deadbeef", "--credits", "1", code=2)
    assert "not found" in cli(data_dir, "revoke", "deadbeef", code=2)
    cli(data_dir, "revoke", token_id)
    assert "revoked" in cli(data_dir, "top-up", token_id, "--credits", "1", code=2)
    with TokenStore(data_dir / "access.db") as store:
        assert [(t.id, t.credits_milli, t.revoked) for t in store.list()] == [(token_id, 25, True)]


def test_only_the_hash_of_the_secret_is_stored(store, db):
    _, secret = store.create(5_000, "hash check")
    assert SECRET.fullmatch(secret)
    raw = sqlite3.connect(db)
    rows = raw.execute("SELECT * FROM tokens").fetchall()
    raw.close()
    assert len(rows) == 1
    assert hashlib.sha256(secret.encode()).hexdigest() in rows[0]
    assert not any(secret in str(value) or secret[3:] in str(value) for value in rows[0])
    store.close()  # checkpoints the WAL: every byte is in the main file now
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    assert not any(secret[3:].encode() in p.read_bytes() for p in files)


def test_secrets_and_ids_are_distinct(store):
    made = [store.create(0) for _ in range(50)]
    assert len({r.id for r, _ in made}) == 50 and len({s for _, s in made}) == 50
    assert all(re.fullmatch(r"[0-9a-f]{8}", r.id) for r, _ in made)


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("header, why", [
    (None, "missing"), ("", "missing"), ("   ", "missing"),
    ("Basic dXNlcjpwYXNz", "expected 'Bearer <token>'"), ("Bearer", "expected 'Bearer <token>'"),
    ("Bearer lk_a lk_b", "expected 'Bearer <token>'"), ("Bearer lk_tooshort", "malformed"),
    ("Bearer " + "x" * 35, "malformed"), ("Bearer lk_" + "A" * 32, "unknown token"),
])
def test_authenticate_rejects_with_401(access, store, header, why):
    store.create(1_000)
    with pytest.raises(Unauthorized, match=why) as info:
        access.authenticate(header)
    assert info.value.http_status == 401 and info.value.code == "api_token_invalid"
    assert info.value.message.startswith("Authorization:")


def test_authenticate_accepts_any_case_of_the_scheme_and_rejects_revoked(access, store):
    record, secret = store.create(1_000)
    assert access.authenticate(f"bearer {secret}") == record
    assert access.authenticate(f"  BEARER   {secret} ") == record
    access.revoke(record.id)
    with pytest.raises(Unauthorized, match="revoked"):
        access.authenticate(bearer(secret))


# -- rate limit -----------------------------------------------------------------------------


def test_one_request_per_second_per_endpoint(access, store, clock):
    token, _ = store.create(1_000)
    other, _ = store.create(1_000)
    access.admit(token, "instagram")
    clock.now += 0.4
    with pytest.raises(RateLimited) as info:
        access.admit(token, "instagram")
    assert info.value.retry_after == 1 and info.value.http_status == 429 and info.value.code == "rate_limit_exceeded"
    access.admit(token, "tiktok")  # another endpoint has its own budget
    access.admit(other, "instagram")  # and so has another token
    clock.now += 0.6  # one second after the first admitted request
    access.admit(token, "instagram")
    clock.now += 0.9
    with pytest.raises(RateLimited):
        access.admit(token, "instagram")
    clock.now += 0.1  # the refused request at +0.9 did not take the slot
    access.admit(token, "instagram")


def test_retry_after_is_whole_seconds_rounded_up(store, clock):
    token, _ = store.create(1_000)
    slow = AccessService(store, clock=clock, interval_s=3.0)
    slow.admit(token, "instagram")
    for elapsed, expected in ((0.5, 3), (1.0, 2), (2.2, 1), (2.999, 1)):
        clock.now = 1_000_000.0 + elapsed
        with pytest.raises(RateLimited) as info:
            slow.admit(token, "instagram")
        assert info.value.retry_after == expected, elapsed


def test_rate_limit_under_concurrent_threads_admits_exactly_one_per_window(db, clock):
    with TokenStore(db) as setup:
        token, _ = setup.create(1_000)
    stores = [TokenStore(db) for _ in range(32)]  # one connection each: SQLite arbitrates, not a Python lock
    try:
        services = [AccessService(s, clock=clock) for s in stores]
        for window in range(3):
            clock.now = 2_000_000.0 + window
            barrier = threading.Barrier(len(services))

            def attempt(service: AccessService, barrier: threading.Barrier = barrier) -> int | None:
                barrier.wait()
                try:
                    service.admit(token, "instagram")
                except RateLimited as exc:
                    return exc.retry_after
                return None

            with ThreadPoolExecutor(len(services)) as pool:
                outcomes = list(pool.map(attempt, services))
            assert outcomes.count(None) == 1, window
            assert sorted(o for o in outcomes if o is not None) == [1] * (len(services) - 1)
    finally:
        for s in stores:
            s.close()


# -- credits --------------------------------------------------------------------------------


def test_prices_and_credit_strings():
    assert (INSTAGRAM_SEARCH_MILLI, TIKTOK_PROFILE_MILLI) == (150, 25)
    assert cost_milli("instagram", 0) == cost_milli("instagram", 6) == 150
    assert (cost_milli("tiktok", 0), cost_milli("tiktok", 7)) == (0, 175)
    assert (min_cost_milli("instagram"), min_cost_milli("tiktok")) == (150, 25)
    for text, milli in (("10", 10_000), ("0.15", 150), ("0.025", 25), ("0", 0), ("1.5", 1_500), ("007.100", 7_100)):
        assert parse_credits(text) == milli
    for milli, text in ((150, "0.15"), (10_000, "10"), (25, "0.025"), (0, "0"), (10_125, "10.125"), (1_010, "1.01")):
        assert format_credits(milli) == text and parse_credits(text) == milli
    for bad in ("-1", "0.0005", "1e3", "nan", ".5", "1.", "2000000000"):
        with pytest.raises(InvalidParameter, match="credits"):
            parse_credits(bad)


def test_require_and_charge_never_go_negative(access, store):
    token, _ = store.create(200)
    assert access.require(token, INSTAGRAM_SEARCH_MILLI) == 200
    assert access.charge(token, INSTAGRAM_SEARCH_MILLI) == ChargeReceipt(charged_milli=150, left_milli=50)
    with pytest.raises(PaymentRequired, match="costs 0.15, the balance is 0.05") as info:
        access.require(token, INSTAGRAM_SEARCH_MILLI)
    assert (info.value.http_status, info.value.code) == (402, "not_enough_credits")
    with pytest.raises(PaymentRequired) as info:
        access.charge(token, INSTAGRAM_SEARCH_MILLI)
    assert (info.value.needed_milli, info.value.balance_milli) == (150, 50)
    assert store.balance(token.id) == 50  # a refused charge takes nothing
    # TikTok: 2 profiles fit, 3 would not; a page that does not fit is refused whole.
    with pytest.raises(PaymentRequired):
        access.charge(token, cost_milli("tiktok", 3))
    assert store.balance(token.id) == 50
    assert access.charge(token, cost_milli("tiktok", 2)) == ChargeReceipt(50, 0)
    assert access.charge(token, cost_milli("tiktok", 0)) == ChargeReceipt(0, 0)
    with pytest.raises(InvalidParameter):
        store.charge(token.id, -25)
    assert store.balance(token.id) == 0


def test_top_up_and_revoke(access, store):
    token, _ = store.create(0, "empty")
    with pytest.raises(PaymentRequired):
        access.require(token, TIKTOK_PROFILE_MILLI)
    assert access.top_up(token.id, 1_000).credits_milli == 1_000
    assert access.top_up(token.id, 150).credits_milli == 1_150
    assert access.charge(token, 150).left_milli == 1_000
    revoked = access.revoke(token.id)
    assert revoked.revoked and access.revoke(token.id).revoked_at == revoked.revoked_at  # idempotent
    assert store.charge(token.id, 150) is None
    with pytest.raises(Unauthorized, match="revoked"):
        access.charge(token, 150)  # revoked between authenticate and charge
    with pytest.raises(Conflict, match="revoked"):
        access.top_up(token.id, 1_000)
    assert store.balance(token.id) == 1_000
    with pytest.raises(NotFound):
        access.top_up("00000000", 1_000)
    with pytest.raises(NotFound):
        access.revoke("00000000")
    with pytest.raises(InvalidParameter):
        store.create(-1)


@pytest.mark.parametrize("shared_connection", [True, False], ids=["one-connection", "connection-per-thread"])
def test_concurrent_charges_spend_exactly_the_balance(db, shared_connection):
    cost, charges, rest = INSTAGRAM_SEARCH_MILLI, 40, 70
    with TokenStore(db) as setup:
        token, _ = setup.create(cost * charges + rest)
    threads = 24
    stores = [TokenStore(db)] * threads if shared_connection else [TokenStore(db) for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def spend(store: TokenStore) -> tuple[list[int], int]:
        service, lefts, refused = AccessService(store), [], 0
        barrier.wait()
        while True:
            try:
                lefts.append(service.charge(token, cost).left_milli)
            except PaymentRequired:
                refused += 1
                return lefts, refused

    try:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(spend, stores))
    finally:
        for s in set(stores):
            s.close()
    lefts = sorted((left for got, _ in results for left in got), reverse=True)
    assert len(lefts) == charges  # successes x cost == exactly what was spent
    assert lefts == [cost * (charges - k) + rest for k in range(1, charges + 1)]  # each balance seen once
    assert all(refused == 1 for _, refused in results)
    with TokenStore(db) as after:
        assert after.balance(token.id) == rest


def _process_worker(db: str, token_id: str, cost: int, ready, go, results) -> None:
    """Runs in a spawned process: one rate-limit attempt, then charge until refused."""
    with TokenStore(Path(db)) as store:
        ready.put(None)
        go.wait(60)
        slot = store.try_acquire_slot(token_id, "tiktok", now=3_000_000.0)
        lefts = []
        while (left := store.charge(token_id, cost)) is not None:
            lefts.append(left)
        results.put((slot is None, lefts))


def test_concurrent_processes_share_one_balance_and_one_slot(db):
    cost, charges, rest, procs = TIKTOK_PROFILE_MILLI, 120, 10, 4
    with TokenStore(db) as setup:
        token, _ = setup.create(cost * charges + rest)
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_process_worker, args=(str(db), token.id, cost, ready, go, results))
               for _ in range(procs)]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            ready.get(timeout=120)  # every process has its connection open: start together
        go.set()
        outcomes = [results.get(timeout=120) for _ in workers]
    finally:
        for w in workers:
            w.join(30)
    assert all(w.exitcode == 0 for w in workers)
    assert sum(admitted for admitted, _ in outcomes) == 1  # one slot for 4 processes
    lefts = sorted((left for _, got in outcomes for left in got), reverse=True)
    assert lefts == [cost * (charges - k) + rest for k in range(1, charges + 1)]
    with TokenStore(db) as after:
        assert after.balance(token.id) == rest
