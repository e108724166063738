"""End-to-end HTTP tests of the Modash-compatible creator search (``/v1``) and the creator import routes.

Everything goes through HTTP: creators are imported with ``POST /api/v1/creators/import`` (real
photos as base64, embedded by the real efficientnet-lite0 model) and searched with
``POST /v1/ai/image-search`` / ``POST /v1/ai/tiktok/image-search``.

The world (one per module, built once): Instagram and TikTok creators with designed facts. The
query is scikit-image's ``chelsea`` (a cat) rotated by 3 degrees; "matching" creators post
augmented copies of the cat (crops, flips, small rotations, colour jitter; cosine >= 0.90 to the
query, calibrated score >= 0.93), the others only unrelated photos (astronaut, coffee, rocket, ...;
cosine < 0.2, score < 0.3), so the match threshold (0.7) separates them by a wide margin. Each
filter has a case below where it admits or drops specific creators; expected sets are derived by
hand from the fact tables (``IG`` / ``TT``). Post dates are relative to the wall clock, which the
search uses as "now".

Rate limit: the world's ``runtime.access`` is an ``AccessService`` over a settable ``Clock`` (the
runtime is a plain dataclass and the API reads ``runtime.access`` per request, so replacing it is
clean). By default its interval is 0 s, so paging, filter and credit tests are never rate-limited,
not even by parallel requests; ``World.rate_limited()`` restores the 1 s interval with time frozen,
so every request of the block falls in one second. ``test_rate_limit_with_the_real_clock`` checks
the default wiring (``time.time``) on a fresh runtime.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance

from conftest import admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.config import Settings
from lookalike.imaging import decode_image
from lookalike.runtime import Runtime
from lookalike.service.creators.access import RATE_INTERVAL_S, AccessService

DAY = 86400.0
IG_SEARCH = "/v1/ai/image-search"
TT_SEARCH = "/v1/ai/tiktok/image-search"
IMPORT = "/api/v1/creators/import"
CREDITS = 1000  # milli-credits per credit

# Locations (ids of the shipped dictionary; the tree is checked in test_location_ids_of_the_world).
AUSTIN, DALLAS, TEXAS, US = 4671654, 4684888, 1084001144, 6252001
LOS_ANGELES, CALIFORNIA = 5368361, 1084000492
PARIS, FRANCE = 2988507, 3017382
BERLIN_CITY, BERLIN_STATE, GERMANY = 2950159, 1027600459, 2921044
LONDON, TOKYO, MADRID, TORONTO = 2643743, 1850147, 3117735, 6167865


class Clock:
    """A settable clock (Unix seconds) for ``AccessService``; time stands still unless a test moves it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def unlimited(runtime: Runtime, clock: Clock) -> AccessService:
    """Access checks with the rate limit off (interval 0 s at a frozen time): credits still count."""
    return AccessService(runtime.tokens, clock=clock, interval_s=0.0)


# --- real images -------------------------------------------------------------------------------


def _small(image: Image.Image, side: int = 256) -> Image.Image:
    image = image.copy()
    image.thumbnail((side, side))
    return image


def _cat_variants() -> dict[str, Image.Image]:
    """Augmented copies of the cat (near-duplicates of the query)."""
    cat = _small(photo("chelsea"))
    w, h = cat.size
    return {
        "exact": cat,
        "crop90": cat.crop((int(w * 0.05), int(h * 0.05), int(w * 0.95), int(h * 0.95))),
        "crop75": cat.crop((int(w * 0.125), int(h * 0.125), int(w * 0.875), int(h * 0.875))),
        "flip": cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "rot5": cat.rotate(5, resample=Image.Resampling.BILINEAR),
        "rot-8": cat.rotate(-8, resample=Image.Resampling.BILINEAR),
        "bright": ImageEnhance.Brightness(cat).enhance(1.3),
        "sat": ImageEnhance.Color(cat).enhance(0.6),
        "contrast": ImageEnhance.Contrast(cat).enhance(1.25),
        "flipcrop": cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((int(w * 0.1), 0, w, int(h * 0.9))),
        "leftcrop": cat.crop((0, 0, int(w * 0.7), h)),
        "rightcrop": cat.crop((int(w * 0.3), 0, w, h)),
    }


UNRELATED = ("astronaut", "coffee", "rocket", "hubble_deep_field", "camera")


@pytest.fixture(scope="module")
def jpegs() -> dict[str, bytes]:
    """name -> JPEG bytes: the cat variants and unrelated photos, all at most 256 px."""
    out = {name: encode(img, quality=90) for name, img in _cat_variants().items()}
    out.update({name: encode(_small(photo(name)), quality=90) for name in UNRELATED})
    out["query"] = encode(_small(photo("chelsea")).rotate(3, resample=Image.Resampling.BILINEAR), quality=90)
    return out


# --- the designed world ------------------------------------------------------------------------

# A post: (image name, days ago, content type). Matching creators post at least one cat variant.
# Instagram creators: facts for each filter (see the module docstring).
IG: dict[str, dict[str, Any]] = {
    "ig01": dict(followersCount=1_000, engagementRate=0.010, gender="MALE", ageGroup="18-24", locations=[AUSTIN],
                 language="en", accountType="creator", hasEmail=True, brands=["Nike"],
                 posts=[("exact", 1), ("coffee", 3)]),
    "ig02": dict(followersCount=5_000, engagementRate=0.020, gender="FEMALE", ageGroup="25-34", locations=[DALLAS],
                 language="en", accountType="creator", hasEmail=False, posts=[("crop90", 5)]),
    "ig03": dict(followersCount=9_999, engagementRate=0.030, gender="FEMALE", ageGroup="25-34", locations=[TEXAS],
                 language="es", accountType="brand", hasEmail=True, brands=["Adidas"], posts=[("flip", 8)]),
    "ig04": dict(followersCount=10_000, engagementRate=0.040, gender="MALE", ageGroup="35-44",
                 locations=[LOS_ANGELES], language="en", accountType="creator", brands=["Nike", "Puma"],
                 posts=[("rot5", 12)]),
    # every optional fact unknown
    "ig05": dict(followersCount=25_000, engagementRate=0.050, posts=[("sat", 15)]),
    "ig06": dict(followersCount=50_000, engagementRate=0.060, gender="FEMALE", ageGroup="45-64", locations=[PARIS],
                 language="fr", accountType="creator", hasEmail=True, brands=["Lancôme"], posts=[("bright", 20)]),
    # its only matching post is 40 days old, but it posted (something unrelated) 2 days ago
    "ig07": dict(followersCount=100_000, engagementRate=0.015, gender="MALE", ageGroup="25-34",
                 locations=[BERLIN_CITY], language="de", accountType="brand",
                 posts=[("contrast", 40), ("astronaut", 2)]),
    "ig08": dict(followersCount=200_000, engagementRate=0.025, gender="FEMALE", ageGroup="13-17", locations=[TORONTO],
                 language="en", accountType="creator", posts=[("rot-8", 60)]),
    "ig09": dict(followersCount=500_000, engagementRate=0.080, gender="MALE", ageGroup="65+", locations=[TOKYO],
                 language="ja", accountType="creator", hasEmail=True, posts=[("leftcrop", 90)]),
    "ig10": dict(followersCount=1_000_000, engagementRate=0.005, gender="FEMALE", ageGroup="18-24", locations=[MADRID],
                 language="es", accountType="creator", brands=["adidas"], posts=[("rightcrop", 120)]),
    "ig11": dict(followersCount=30_000, engagementRate=0.035, gender="UNKNOWN", ageGroup="25-34", locations=[AUSTIN],
                 language="en", accountType="creator", posts=[("flipcrop", 6)]),
    # seven matching posts (5 are shown) and two newer unrelated ones (recentPosts is by date only)
    "ig12": dict(followersCount=75_000, engagementRate=0.045, gender="FEMALE", ageGroup="25-34", locations=[LONDON],
                 language="en", accountType="creator", hasEmail=True,
                 posts=[("exact", 3), ("crop90", 9), ("flip", 14), ("rot5", 21), ("sat", 30), ("bright", 45),
                        ("crop75", 50), ("rocket", 2), ("hubble_deep_field", 4)]),
    # the same post as ig02: an exact tie in relevance, broken by userId
    "ig13": dict(followersCount=5_000, engagementRate=0.020, gender="FEMALE", ageGroup="25-34", locations=[DALLAS],
                 language="en", accountType="creator", posts=[("crop90", 5)]),
    # non-matching: ig90 has ig01's facts, ig91 has ig06's; ig92 has no posts at all
    "ig90": dict(followersCount=1_000, engagementRate=0.010, gender="MALE", ageGroup="18-24", locations=[AUSTIN],
                 language="en", accountType="creator", hasEmail=True, brands=["Nike"],
                 posts=[("coffee", 1), ("rocket", 2)]),
    "ig91": dict(followersCount=50_000, engagementRate=0.060, gender="FEMALE", ageGroup="45-64", locations=[PARIS],
                 language="fr", accountType="creator", hasEmail=True, brands=["Sephora"],
                 posts=[("astronaut", 3), ("camera", 4)]),
    "ig92": dict(followersCount=20_000, posts=[]),
}
IG_MATCHING = {f"ig{i:02d}" for i in range(1, 14)}

# TikTok: followers around the snapping steps, post types and ages for the post filters.
TT: dict[str, dict[str, Any]] = {
    "tt01": dict(username="CatLover", followersCount=800, gender="MALE", locations=[AUSTIN],
                 posts=[("crop90", 2, "video")]),
    "tt02": dict(followersCount=9_000, gender="FEMALE", brands=["Gymshark"], posts=[("flip", 4, "video")]),
    "tt03": dict(followersCount=11_000, gender="FEMALE", posts=[("rot5", 6, "image")]),
    "tt04": dict(followersCount=14_000, gender="MALE", posts=[("sat", 8, "video")]),
    "tt05": dict(followersCount=16_000, posts=[("bright", 10, "video")]),
    "tt06": dict(followersCount=40_000, gender="FEMALE", posts=[("contrast", 12, "image")]),
    "tt07": dict(followersCount=3_500_000, gender="MALE", posts=[("leftcrop", 14, "video")]),
    # only match is 200 days old (6.6 months)
    "tt08": dict(followersCount=60_000, gender="FEMALE", posts=[("rightcrop", 200, "image"), ("astronaut", 3, "video")]),
    # best match is an old video; a recent image matches too
    "tt09": dict(followersCount=70_000, gender="MALE",
                 posts=[("exact", 300, "video"), ("flipcrop", 20, "image"), ("coffee", 1, "video")]),
    # matches only with a video
    "tt10": dict(followersCount=20_000, gender="FEMALE", posts=[("rot-8", 30, "video"), ("rocket", 5, "image")]),
    "tt11": dict(username="catlover2", followersCount=25_000, gender="FEMALE", posts=[("crop75", 9, "video")]),
    "tt90": dict(followersCount=14_000, gender="MALE", brands=["Nike"],
                 posts=[("coffee", 3, "image"), ("astronaut", 2, "video")]),
}
TT_MATCHING = {f"tt{i:02d}" for i in range(1, 12)}


def _stats(platform: str, seed: int) -> dict[str, int]:
    stats = {"likesCount": 100 + seed, "commentsCount": 10 + seed}
    if platform == "tiktok":
        stats.update(sharesCount=20 + seed, playsCount=1000 + seed, collectsCount=5 + seed)
    return stats


def creator_line(platform: str, uid: str, facts: dict[str, Any], images: dict[str, bytes], now: float) -> dict:
    """One creator in the import line format, posts ``{uid}-{image}`` dated ``now - days``."""
    facts = dict(facts)
    posts = []
    for seed, (image, days, *kind) in enumerate(facts.pop("posts")):
        pid = f"{uid}-{image}"
        posts.append({
            "id": pid, "url": f"https://example.com/{platform}/p/{pid}", "thumbnail": f"https://cdn.example.com/{pid}.jpg",
            "created_at": now - days * DAY, "type": kind[0] if kind else "image",
            "stats": _stats(platform, seed), "image_base64": b64(images[image]),
        })
    return {
        "userId": uid, "username": facts.pop("username", uid), "fullName": f"Creator {uid}",
        "profilePicture": f"https://cdn.example.com/{uid}/avatar.jpg", "accountCategory": "Pets",
        **facts, "posts": posts,
    }


@dataclass
class World:
    runtime: Runtime
    client: TestClient
    clock: Clock
    images: dict[str, bytes]
    query: str  # base64 of the query JPEG

    def token(self, credits_milli: int = 100 * CREDITS) -> tuple[str, str]:
        """A fresh token: (id, secret)."""
        record, secret = self.runtime.tokens.create(credits_milli, "test")
        return record.id, secret

    def balance(self, token_id: str) -> int:
        return self.runtime.tokens.balance(token_id)

    @contextmanager
    def rate_limited(self) -> Iterator[Clock]:
        """The 1 request/s/endpoint limit on, all requests of the block in the same second
        unless the test moves the yielded clock."""
        self.runtime.access = AccessService(self.runtime.tokens, clock=self.clock, interval_s=RATE_INTERVAL_S)
        try:
            yield self.clock
        finally:
            self.runtime.access = unlimited(self.runtime, self.clock)


@pytest.fixture(scope="module")
def world(tmp_path_factory, models, jpegs) -> Iterator[World]:
    rt = Runtime.open(Settings(data_dir=tmp_path_factory.mktemp("modash")), models=models)
    clock = Clock()
    rt.access = unlimited(rt, clock)
    now = time.time()
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        for platform, table in (("instagram", IG), ("tiktok", TT)):
            lines = [creator_line(platform, uid, facts, jpegs, now) for uid, facts in table.items()]
            r = client.post(IMPORT, json={"platform": platform, "creators": lines}, headers=admin_headers(rt))
            assert r.status_code == 200, r.text
            data = r.json()["data"]
            assert data["imported"] == list(table) and data["failed"] == []
        yield World(rt, client, clock, jpegs, b64(jpegs["query"]))


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def body(query: str, filters: dict | None = None, page: int = 0, page_size: int | None = None,
         image_type: str = "image/jpeg") -> dict:
    out: dict[str, Any] = {"imageType": image_type, "base64Image": query, "page": page, "filters": filters or {}}
    if page_size is not None:
        out["pageSize"] = page_size
    return out


def search(world: World, platform: str, secret: str, filters: dict | None = None, page: int = 0,
           page_size: int | None = None) -> httpx.Response:
    path = IG_SEARCH if platform == "instagram" else TT_SEARCH
    return world.client.post(path, json=body(world.query, filters, page, page_size), headers=auth(secret))


def all_pages(world: World, platform: str, filters: dict | None = None, page_size: int | None = None,
              secret: str | None = None) -> tuple[int, list[list[dict]]]:
    """Every page of a query (through the first empty one): (total, pages of profiles)."""
    secret = secret or world.token()[1]
    pages, total = [], None
    while True:
        r = search(world, platform, secret, filters, page=len(pages), page_size=page_size)
        assert r.status_code == 200, r.text
        data = r.json()
        assert total is None or data["total"] == total, "total changed between pages"
        total = data["total"]
        pages.append(data["profiles"])
        if not data["profiles"]:
            return total, pages
        assert len(pages) < 20


def found(world: World, platform: str, filters: dict | None = None) -> set[str]:
    """The userIds of every matching profile, checking that total counts them and none repeats."""
    total, pages = all_pages(world, platform, filters, page_size=None if platform == "instagram" else 50)
    ids = [p["userId"] for page in pages for p in page]
    assert len(ids) == len(set(ids)) == total
    return set(ids)


# --- the fixtures' own facts -------------------------------------------------------------------


def test_location_ids_of_the_world(world):
    locations = world.runtime.locations
    assert locations.ancestors(AUSTIN) == (TEXAS, US)
    assert locations.ancestors(DALLAS) == (TEXAS, US)
    assert locations.ancestors(LOS_ANGELES) == (CALIFORNIA, US)
    assert locations.ancestors(PARIS) == (FRANCE,)
    assert locations.ancestors(BERLIN_CITY) == (BERLIN_STATE, GERMANY)


def test_unfiltered_search_finds_exactly_the_creators_who_post_the_cat(world):
    assert found(world, "instagram") == IG_MATCHING
    assert found(world, "tiktok") == TT_MATCHING


# --- every filter changes the result -----------------------------------------------------------

IG_CASES = [
    ({"followersCount": {"min": 10_000}}, {"ig04", "ig05", "ig06", "ig07", "ig08", "ig09", "ig10", "ig11", "ig12"}),
    ({"followersCount": {"max": 9_999}}, {"ig01", "ig02", "ig03", "ig13"}),
    ({"followersCount": {"min": 5_000, "max": 50_000}}, {"ig02", "ig03", "ig04", "ig05", "ig06", "ig11", "ig13"}),
    # a creator in a city matches its state and its country
    ({"locations": [US]}, {"ig01", "ig02", "ig03", "ig04", "ig11", "ig13"}),
    ({"locations": [TEXAS]}, {"ig01", "ig02", "ig03", "ig11", "ig13"}),
    ({"locations": [AUSTIN]}, {"ig01", "ig11"}),
    ({"locations": [CALIFORNIA]}, {"ig04"}),
    ({"locations": [FRANCE, GERMANY]}, {"ig06", "ig07"}),
    ({"locations": [BERLIN_STATE]}, {"ig07"}),
    ({"gender": "MALE"}, {"ig01", "ig04", "ig07", "ig09"}),
    ({"gender": "FEMALE"}, {"ig02", "ig03", "ig06", "ig08", "ig10", "ig12", "ig13"}),
    ({"gender": "female"}, {"ig02", "ig03", "ig06", "ig08", "ig10", "ig12", "ig13"}),
    ({"gender": "KNOWN"}, IG_MATCHING - {"ig05", "ig11"}),
    ({"gender": "UNKNOWN"}, {"ig05", "ig11"}),
    ({"lastPostedInDays": 30}, IG_MATCHING - {"ig08", "ig09", "ig10"}),
    # ig07's matching post is 40 days old, but its newest post (unrelated) is 2 days old
    ({"lastPostedInDays": 7}, {"ig01", "ig02", "ig07", "ig11", "ig12", "ig13"}),
    ({"accountType": "brand"}, {"ig03", "ig07"}),
    ({"accountType": ["creator"]}, IG_MATCHING - {"ig03", "ig05", "ig07"}),
    ({"accountType": ["creator", "brand"]}, IG_MATCHING - {"ig05"}),
    ({"language": "es"}, {"ig03", "ig10"}),
    ({"language": "DE"}, {"ig07"}),
    ({"age": {"min": 18, "max": 25}}, {"ig01", "ig10"}),
    ({"age": {"min": 25, "max": 35}}, {"ig02", "ig03", "ig07", "ig11", "ig12", "ig13"}),
    ({"age": {"min": 45}}, {"ig06", "ig09"}),
    ({"age": {"max": 18}}, {"ig08"}),
    ({"age": {"min": 35, "max": 65}}, {"ig04", "ig06"}),
    ({"engagementRate": {"min": 0.05}}, {"ig05", "ig06", "ig09"}),
    ({"engagementRate": {"min": 0.045}}, {"ig05", "ig06", "ig09", "ig12"}),
    ({"hasEmail": True}, {"ig01", "ig03", "ig06", "ig09", "ig12"}),
    ({"hasEmail": False}, IG_MATCHING - {"ig01", "ig03", "ig06", "ig09", "ig12"}),
    ({"brands": ["nike"]}, {"ig01", "ig04"}),
    ({"brands": ["ADIDAS"]}, {"ig03", "ig10"}),
    ({"brands": ["Puma", "Lancôme"]}, {"ig04", "ig06"}),
    # the only Sephora creator posts no cat
    ({"brands": ["Sephora"]}, set()),
    ({"gender": "FEMALE", "locations": [US]}, {"ig02", "ig03", "ig13"}),
    ({"gender": None, "locations": [], "brands": []}, IG_MATCHING),  # null / empty = absent
]


@pytest.mark.parametrize("filters, expected", IG_CASES, ids=[str(f) for f, _ in IG_CASES])
def test_instagram_filter_selects_its_creators(world, filters, expected):
    assert found(world, "instagram", filters) == expected


TT_CASES = [
    # max 11,000 snaps up to 15,000: admits the 14,000 creator, not the 16,000 one
    ({"followersCount": {"max": 11_000}}, {"tt01", "tt02", "tt03", "tt04"}),
    # min 12,000 snaps down to 10,000: admits the 11,000 creator, not the 9,000 one
    ({"followersCount": {"min": 12_000}}, TT_MATCHING - {"tt01", "tt02"}),
    ({"followersCount": {"max": 3_000_000}}, TT_MATCHING - {"tt07"}),
    # above the last step: no upper bound (snapping only widens)
    ({"followersCount": {"max": 4_000_000}}, TT_MATCHING),
    ({"username": "@catlover"}, {"tt01"}),
    ({"username": "CATLOVER2"}, {"tt11"}),
    ({"maxPostAgeMonths": 6}, TT_MATCHING - {"tt08"}),
    ({"maxPostAgeMonths": 9}, TT_MATCHING),
    ({"contentType": "image"}, {"tt03", "tt06", "tt08", "tt09"}),
    ({"contentType": "video"}, TT_MATCHING - {"tt03", "tt06", "tt08"}),
    # tt09's recent match is an image and its video match is 300 days old
    ({"contentType": "video", "maxPostAgeMonths": 3}, TT_MATCHING - {"tt03", "tt06", "tt08", "tt09"}),
    ({"gender": "KNOWN"}, TT_MATCHING - {"tt05"}),
    ({"locations": [US]}, {"tt01"}),
    ({"brands": ["gymshark"]}, {"tt02"}),
]


@pytest.mark.parametrize("filters, expected", TT_CASES, ids=[str(f) for f, _ in TT_CASES])
def test_tiktok_filter_selects_its_creators(world, filters, expected):
    assert found(world, "tiktok", filters) == expected


def test_post_filters_decide_which_posts_are_shown_as_matches(world):
    _, secret = world.token()

    def matched(filters: dict) -> list[str]:
        r = search(world, "tiktok", secret, {"username": "tt09", **filters})
        [profile] = r.json()["profiles"]
        return [p["id"] for p in profile["matchedPosts"]]

    assert matched({}) == ["tt09-exact", "tt09-flipcrop"]
    assert matched({"maxPostAgeMonths": 3}) == ["tt09-flipcrop"]
    assert matched({"contentType": "video"}) == ["tt09-exact"]


def test_brands_by_dictionary_id(world):
    _, secret = world.token()
    r = world.client.get("/v1/ai/brands", params={"query": "adid"}, headers=auth(secret))
    [adidas] = r.json()["brands"]
    assert found(world, "instagram", {"brands": [adidas["id"]]}) == {"ig03", "ig10"}
    r = world.client.get("/v1/ai/tiktok/brands", params={"query": "gym"}, headers=auth(secret))
    [gymshark] = r.json()["brands"]
    assert found(world, "tiktok", {"brands": [gymshark["id"]]}) == {"tt02"}
    # ids are per platform: an Instagram brand is unknown on TikTok
    r = search(world, "tiktok", secret, {"brands": [adidas["id"]]})
    assert r.status_code == 400 and r.json()["message"].startswith("filters.brands[0]:")


# --- response shape ----------------------------------------------------------------------------


def _cosines(world: World, names: list[str]) -> dict[str, float]:
    """Cosine of each named image to the query, from the model the posts were embedded with."""
    model = world.runtime.models(world.runtime.creators.model_id())
    images = [decode_image(world.images[n]) for n in ["query", *names]]
    vectors = np.asarray(model.embed_images(images).visual)
    return dict(zip(names, (vectors[1:] @ vectors[0]).tolist()))


def test_instagram_profile_shape_matched_and_recent_posts(world):
    _, pages = all_pages(world, "instagram")
    profiles = {p["userId"]: p for page in pages for p in page}
    for p in profiles.values():
        assert set(p) == {"userId", "fullName", "username", "profilePicture", "followersCount", "engagementRate",
                          "accountCategory", "matchedPosts", "recentPosts"}
    p = profiles["ig12"]
    assert (p["fullName"], p["username"], p["followersCount"], p["engagementRate"], p["accountCategory"]) == (
        "Creator ig12", "ig12", 75_000, 0.045, "Pets")
    assert p["profilePicture"] == "https://cdn.example.com/ig12/avatar.jpg"
    for post in p["matchedPosts"] + p["recentPosts"]:
        assert set(post) == {"id", "url", "thumbnail", "stats"}
        assert post["url"] == f"https://example.com/instagram/p/{post['id']}"
        assert post["thumbnail"] == f"https://cdn.example.com/{post['id']}.jpg"
        assert set(post["stats"]) == {"likesCount", "commentsCount"}
    # matchedPosts: the 5 most similar of its 7 cat posts, most similar first; never an unrelated post
    cats = [image for image, _ in IG["ig12"]["posts"] if image not in UNRELATED]
    cos = _cosines(world, cats)
    best = sorted(cats, key=lambda n: -cos[n])[:5]
    assert [m["id"] for m in p["matchedPosts"]] == [f"ig12-{n}" for n in best]
    # recentPosts: the 5 newest posts, newest first, matching or not
    newest = sorted(IG["ig12"]["posts"], key=lambda post: post[1])[:5]
    assert [r["id"] for r in p["recentPosts"]] == [f"ig12-{n}" for n, _ in newest]
    seed = [n for n, _ in IG["ig12"]["posts"]].index("rocket")
    assert p["recentPosts"][0]["stats"] == _stats("instagram", seed)


def test_tiktok_profile_shape_has_tiktok_stats(world):
    _, secret = world.token()
    r = search(world, "tiktok", secret, {"username": "tt08"})
    assert r.status_code == 200
    data = r.json()
    assert data["error"] is False and data["total"] == 1
    [p] = data["profiles"]
    assert set(p) == {"userId", "fullName", "username", "profilePicture", "followersCount", "engagementRate",
                      "accountCategory", "matchedPosts", "recentPosts"}
    assert [m["id"] for m in p["matchedPosts"]] == ["tt08-rightcrop"]
    assert [m["id"] for m in p["recentPosts"]] == ["tt08-astronaut", "tt08-rightcrop"]
    assert p["matchedPosts"][0]["stats"] == _stats("tiktok", 0)
    assert set(p["recentPosts"][0]["stats"]) == {"likesCount", "commentsCount", "sharesCount", "playsCount",
                                                 "collectsCount"}


@pytest.mark.parametrize("fmt, image_type", [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_png_and_webp_queries(world, fmt, image_type):
    _, secret = world.token()
    query = b64(encode(decode_image(world.images["query"]), fmt))
    r = world.client.post(IG_SEARCH, json=body(query, image_type=image_type), headers=auth(secret))
    assert r.status_code == 200, r.text
    assert r.json()["total"] == len(IG_MATCHING)


# --- paging ------------------------------------------------------------------------------------


def test_instagram_pages_of_six_are_stable_and_complete(world):
    total, pages = all_pages(world, "instagram")
    assert total == len(IG_MATCHING) == 13
    assert [len(p) for p in pages] == [6, 6, 1, 0]
    again_total, again = all_pages(world, "instagram")
    assert again_total == total and again == pages
    ids = [p["userId"] for page in pages for p in page]
    assert sorted(ids) == sorted(IG_MATCHING)
    # ig02 and ig13 post the same image: equal relevance, ordered by userId
    assert ids.index("ig02") + 1 == ids.index("ig13")
    _, secret = world.token()
    far = search(world, "instagram", secret, page=50)
    assert far.status_code == 200 and far.json() == {"error": False, "total": total, "profiles": []}


@pytest.mark.parametrize("page_size", [1, 4, 10])
def test_tiktok_page_and_page_size_are_stable_and_complete(world, page_size):
    total, pages = all_pages(world, "tiktok", page_size=page_size)
    assert total == len(TT_MATCHING)
    full, rest = divmod(total, page_size)
    assert [len(p) for p in pages] == [page_size] * full + ([rest] if rest else []) + [0]
    ids = [p["userId"] for page in pages for p in page]
    assert sorted(ids) == sorted(TT_MATCHING)
    # the same order as one big page
    _, [big, _] = all_pages(world, "tiktok", page_size=50)
    assert ids == [p["userId"] for p in big]
    _, again = all_pages(world, "tiktok", page_size=page_size)
    assert again == pages


def test_a_filtered_query_pages_completely(world):
    filters = {"gender": "KNOWN"}
    total, pages = all_pages(world, "instagram", filters)
    assert total == 11 and [len(p) for p in pages] == [6, 5, 0]
    assert {p["userId"] for page in pages for p in page} == IG_MATCHING - {"ig05", "ig11"}


# --- credits -----------------------------------------------------------------------------------


def test_credit_headers_instagram_per_search(world):
    token_id, secret = world.token(1 * CREDITS)
    r = search(world, "instagram", secret)
    assert r.status_code == 200
    assert (r.headers["X-Credits-Charged"], r.headers["X-Credits-Left"]) == ("0.15", "0.85")
    # a page past the end is still a search
    r = search(world, "instagram", secret, page=9)
    assert r.json()["profiles"] == []
    assert (r.headers["X-Credits-Charged"], r.headers["X-Credits-Left"]) == ("0.15", "0.7")
    assert world.balance(token_id) == 700


def test_credit_headers_tiktok_per_returned_profile(world):
    token_id, secret = world.token(1 * CREDITS)
    charged = []
    for page in range(4):  # 11 profiles by 4: 4, 4, 3, 0
        r = search(world, "tiktok", secret, page=page, page_size=4)
        assert r.status_code == 200
        charged.append((r.headers["X-Credits-Charged"], r.headers["X-Credits-Left"]))
    assert charged == [("0.1", "0.9"), ("0.1", "0.8"), ("0.075", "0.725"), ("0", "0.725")]
    assert world.balance(token_id) == 725


def test_402_when_credits_are_short_and_nothing_is_charged(world):
    token_id, secret = world.token(100)  # 0.1 credit: less than an Instagram search
    r = search(world, "instagram", secret)
    assert r.status_code == 402
    assert r.json()["error"] is True and r.json()["code"] == "not_enough_credits"
    assert "X-Credits-Charged" not in r.headers
    assert world.balance(token_id) == 100
    # TikTok: 4 profiles cost 0.1 > 0.06 (no page is trimmed to fit), 2 profiles cost 0.05
    token_id, secret = world.token(60)
    assert search(world, "tiktok", secret, page_size=4).status_code == 402
    assert world.balance(token_id) == 60
    r = search(world, "tiktok", secret, page_size=2)
    assert r.status_code == 200 and len(r.json()["profiles"]) == 2
    assert (r.headers["X-Credits-Charged"], r.headers["X-Credits-Left"]) == ("0.05", "0.01")
    assert search(world, "tiktok", secret, page_size=1).status_code == 402
    assert world.balance(token_id) == 10


# --- rate limit --------------------------------------------------------------------------------


def test_429_with_retry_after_is_not_charged_and_is_per_endpoint(world):
    token_id, secret = world.token(1 * CREDITS)
    with world.rate_limited() as clock:
        first = search(world, "instagram", secret)
        clock.now += 0.5
        second = search(world, "instagram", secret)
        other_endpoint = search(world, "tiktok", secret, page_size=1)
        _, other_secret = world.token()
        other_token = search(world, "instagram", other_secret)
        assert world.balance(token_id) == 1000 - 150 - 25
        clock.now += 0.5  # a second after the first: admitted again
        third = search(world, "instagram", secret)
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["error"] is True and second.json()["code"] == "rate_limit_exceeded"
    assert second.headers["Retry-After"] == "1"
    assert "X-Credits-Charged" not in second.headers
    assert other_endpoint.status_code == 200 and other_token.status_code == 200
    assert third.status_code == 200
    assert world.balance(token_id) == 1000 - 2 * 150 - 25


def test_rate_limit_with_the_real_clock(client, runtime, jpegs):
    """The default wiring (``time.time``): two back-to-back searches on one endpoint."""
    token, secret = runtime.tokens.create(1 * CREDITS, "t")
    _, warm = runtime.tokens.create(1 * CREDITS, "warm-up")
    query = b64(jpegs["query"])
    assert client.post(IG_SEARCH, json=body(query), headers=auth(warm)).status_code == 200  # loads the model
    start = time.monotonic()
    first = client.post(IG_SEARCH, json=body(query), headers=auth(secret))
    second = client.post(IG_SEARCH, json=body(query), headers=auth(secret))
    elapsed = time.monotonic() - start
    assert first.status_code == 200
    assert second.status_code == 429 or elapsed >= 1.0, (second.status_code, elapsed)
    assert runtime.tokens.balance(token.id) == 850


# --- errors ------------------------------------------------------------------------------------

BAD_FILTERS = [
    ({"gender": "OTHER"}, "filters.gender:"),
    ({"followersCount": {"min": -1}}, "filters.followersCount.min:"),
    ({"followersCount": {"min": 10, "max": 5}}, "filters.followersCount:"),
    ({"followersCount": {"least": 10}}, "filters.followersCount.least:"),
    ({"age": {"min": 20}}, "filters.age.min:"),
    ({"age": {"max": 13}}, "filters.age.max:"),
    ({"engagementRate": {"min": 2}}, "filters.engagementRate.min:"),
    ({"lastPostedInDays": 0}, "filters.lastPostedInDays:"),
    ({"hasEmail": "yes"}, "filters.hasEmail:"),
    ({"language": "english"}, "filters.language:"),
    ({"accountType": "celebrity"}, "filters.accountType:"),
    ({"locations": ["Paris"]}, "filters.locations[0]:"),
    ({"locations": [US, 123456789]}, "filters.locations[1]:"),  # not in the dictionary
    ({"brands": [12345]}, "filters.brands[0]:"),  # not a brand id of /ai/brands
    ({"brands": "Nike"}, "filters.brands:"),
    ({"colour": "red"}, "filters.colour:"),
    # TikTok-only filters on Instagram
    ({"username": "tt01"}, "filters.username:"),
    ({"maxPostAgeMonths": 3}, "filters.maxPostAgeMonths:"),
    ({"contentType": "video"}, "filters.contentType:"),
]


def _bad_requests(world: World) -> list[tuple[str, dict, str]]:
    """(path, body, field the message must start with) of malformed search requests."""
    q = world.query
    png = b64(encode(decode_image(world.images["query"]), "PNG"))
    big = b64(b"\xff\xd8\xff" + bytes(5 * 1024 * 1024))  # a JPEG header, then > 5 MB
    out = [(IG_SEARCH, body(q, filters), where) for filters, where in BAD_FILTERS]
    out += [
        (TT_SEARCH, body(q, {"maxPostAgeMonths": 4}), "filters.maxPostAgeMonths:"),
        (TT_SEARCH, body(q, {"contentType": "reel"}), "filters.contentType:"),
        (TT_SEARCH, body(q, {"username": "@"}), "filters.username:"),
        (TT_SEARCH, body(q, page_size=0), "pageSize:"),
        (TT_SEARCH, body(q, page_size=51), "pageSize:"),
        (IG_SEARCH, body(q, page_size=6), "pageSize:"),
        (IG_SEARCH, body(q, page=-1), "page:"),
        (IG_SEARCH, body(q, page=100_000), "page:"),
        (IG_SEARCH, {**body(q), "page": True}, "page:"),
        (TT_SEARCH, {**body(q), "pageSize": "5"}, "pageSize:"),
        (IG_SEARCH, {**body(q), "filters": ["gender"]}, "filters:"),
        (IG_SEARCH, body(q, image_type="image/png"), "imageType:"),  # JPEG bytes
        (IG_SEARCH, body(png, image_type="image/jpeg"), "imageType:"),
        (IG_SEARCH, body(q, image_type="image/gif"), "imageType:"),
        (IG_SEARCH, {"base64Image": q}, "imageType:"),
        (IG_SEARCH, {"imageType": "image/jpeg"}, "base64Image:"),
        (IG_SEARCH, body("not base64 at all!"), "base64Image:"),
        (IG_SEARCH, body(b64(b"plain text, not an image")), "base64Image:"),
        (IG_SEARCH, body(big), "base64Image:"),
        (IG_SEARCH, {**body(q), "unknown": 1}, "unknown:"),
    ]
    return out


def test_invalid_requests_get_400_naming_the_field_and_cost_nothing(world):
    token_id, secret = world.token(1 * CREDITS)
    with world.rate_limited():
        for path, payload, where in _bad_requests(world):
            r = world.client.post(path, json=payload, headers=auth(secret))
            assert r.status_code == 400, (payload.get("filters"), r.text)
            data = r.json()
            assert data["error"] is True and data["code"] in ("invalid_parameter", "invalid_image")
            assert data["message"].startswith(where), (where, data["message"])
        # none of them took the rate-limit slot or a credit
        assert search(world, "instagram", secret).status_code == 200
    assert world.balance(token_id) == 850


def test_null_filters_and_page_mean_defaults(world):
    _, secret = world.token()
    r = world.client.post(IG_SEARCH, json={"imageType": "image/jpeg", "base64Image": world.query,
                                           "page": None, "filters": None}, headers=auth(secret))
    assert r.status_code == 200, r.text
    assert r.json()["total"] == len(IG_MATCHING)


def test_not_json_and_unknown_route_answer_in_modash_style(world):
    _, secret = world.token()
    r = world.client.post(IG_SEARCH, content=b"{not json", headers={**auth(secret), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {
        "error": True, "code": "invalid_json",
        "message": "body: is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"
                   " (character 1)"}
    r = world.client.get("/v1/ai/no-such-thing", headers=auth(secret))
    assert r.status_code == 404 and r.json()["error"] is True


@pytest.mark.parametrize("header", [
    None,
    "Bearer lk_" + "A" * 32,  # well-formed, unknown
    "Bearer not-a-token",
    "Basic dXNlcjpwYXNz",
    "Bearer",
])
def test_401_without_a_valid_token(world, header):
    headers = {} if header is None else {"Authorization": header}
    for method, path, kwargs in [
        ("post", IG_SEARCH, {"json": body(world.query)}),
        ("post", TT_SEARCH, {"json": body(world.query)}),
        ("get", "/v1/instagram/locations", {}),
        ("get", "/v1/tiktok/languages", {}),
        ("get", "/v1/ai/brands", {}),
        ("get", "/v1/ai/tiktok/brands", {}),
    ]:
        r = getattr(world.client, method)(path, headers=headers, **kwargs)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"] is True and r.json()["code"] == "api_token_invalid"


def test_401_for_a_revoked_token(world):
    token_id, secret = world.token()
    assert search(world, "instagram", secret).status_code == 200
    world.runtime.tokens.revoke(token_id)
    r = search(world, "instagram", secret)
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    assert world.balance(token_id) == 100 * CREDITS - 150


# --- concurrency through a real HTTP server ----------------------------------------------------


@pytest.fixture(scope="module")
def server(world) -> Iterator[str]:
    """uvicorn serving the world's runtime on a free port, in a background thread. Lifespan off:
    the module's TestClient owns the runtime and closes it."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(world.runtime), lifespan="off", log_level="warning", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _fire(base_url: str, jobs: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    """POST every (path, secret, body) at once, one thread and connection each."""
    barrier = threading.Barrier(len(jobs))

    def one(job: tuple[str, str, dict]) -> httpx.Response:
        path, secret, payload = job
        with httpx.Client(base_url=base_url, timeout=60) as http:
            barrier.wait()
            return http.post(path, json=payload, headers=auth(secret))

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def test_parallel_searches_spend_exactly_the_balance(world, server):
    """8 parallel searches on a token worth 3 (rate limit off), beside 6 searches of 3 other tokens
    on both endpoints: exactly 3 succeed, the others get 402, the balance ends at 0, never below."""
    poor_id, poor = world.token(3 * 150)
    rich = [world.token(10 * CREDITS) for _ in range(3)]
    jobs = [(IG_SEARCH, poor, body(world.query))] * 8
    jobs += [(path, secret, body(world.query)) for _, secret in rich for path in (IG_SEARCH, TT_SEARCH)]
    responses = _fire(server, jobs)
    mine = responses[:8]
    assert Counter(r.status_code for r in mine) == {200: 3, 402: 5}
    assert all(r.json()["code"] == "not_enough_credits" for r in mine if r.status_code == 402)
    assert sorted(r.headers["X-Credits-Left"] for r in mine if r.status_code == 200) == ["0", "0.15", "0.3"]
    assert world.balance(poor_id) == 0
    for i, (token_id, _) in enumerate(rich):
        ig, tt = responses[8 + 2 * i: 10 + 2 * i]
        assert ig.status_code == tt.status_code == 200
        assert ig.json()["total"] == len(IG_MATCHING) and len(tt.json()["profiles"]) == 10
        assert world.balance(token_id) == 10 * CREDITS - 150 - 10 * 25


def test_parallel_requests_in_one_second_admit_exactly_one(world, server):
    token_id, secret = world.token(1 * CREDITS)
    with world.rate_limited():
        responses = _fire(server, [(IG_SEARCH, secret, body(world.query))] * 8 + [(TT_SEARCH, secret, body(world.query))])
    ig, tt = responses[:8], responses[8]
    assert Counter(r.status_code for r in ig) == {200: 1, 429: 7}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in ig if r.status_code == 429)
    assert tt.status_code == 200  # another endpoint has its own slot
    assert world.balance(token_id) == 1000 - 150 - 10 * 25


# --- dictionaries ------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["instagram", "tiktok"])
def test_locations_dictionary(world, platform):
    _, secret = world.token()
    r = world.client.get(f"/v1/{platform}/locations", params={"query": "austin"}, headers=auth(secret))
    assert r.status_code == 200
    assert r.json()["locations"][0] == {"id": AUSTIN, "name": "Austin", "title": "Austin, Texas, United States"}
    r = world.client.get(f"/v1/{platform}/locations", params={"query": "tex", "limit": 5}, headers=auth(secret))
    assert TEXAS in [loc["id"] for loc in r.json()["locations"]]
    r = world.client.get(f"/v1/{platform}/locations", params={"query": "", "limit": 3}, headers=auth(secret))
    assert len(r.json()["locations"]) == 3
    for params, field in [({"limit": 0}, "limit:"), ({"limit": 101}, "limit:"), ({"limit": "x"}, "limit:"),
                          ({"query": "a" * 101}, "query:")]:
        r = world.client.get(f"/v1/{platform}/locations", params=params, headers=auth(secret))
        assert r.status_code == 400 and r.json()["message"].startswith(field), r.text


def test_languages_dictionary(world):
    _, secret = world.token()
    r = world.client.get("/v1/instagram/languages", params={"query": "span"}, headers=auth(secret))
    assert r.json()["languages"] == [{"code": "es", "name": "Spanish"}]
    r = world.client.get("/v1/tiktok/languages", params={"query": "en", "limit": 2}, headers=auth(secret))
    languages = r.json()["languages"]
    assert languages[0] == {"code": "en", "name": "English"} and len(languages) <= 2
    r = world.client.get("/v1/tiktok/languages", params={"limit": 0}, headers=auth(secret))
    assert r.status_code == 400 and r.json()["message"].startswith("limit:")


def test_brands_dictionary(world):
    _, secret = world.token()

    def names(path: str, **params) -> list[str]:
        r = world.client.get(path, params=params, headers=auth(secret))
        assert r.status_code == 200, r.text
        return [b["name"] for b in r.json()["brands"]]

    # Instagram brands of every creator (matching the image or not), one per spelling ignoring case
    assert names("/v1/ai/brands", limit=100) == ["Adidas", "Lancôme", "Nike", "Puma", "Sephora"]
    assert names("/v1/ai/brands", query="ni") == ["Nike"]
    assert names("/v1/ai/brands", query="LANCOME") == ["Lancôme"]  # case and accents ignored
    assert names("/v1/ai/brands", limit=2) == ["Adidas", "Lancôme"]
    assert names("/v1/ai/tiktok/brands") == ["Gymshark", "Nike"]
    r = world.client.get("/v1/ai/brands", params={"limit": 500}, headers=auth(secret))
    assert r.status_code == 400 and r.json()["message"].startswith("limit:")


# --- import and refresh through HTTP (a fresh runtime each) ------------------------------------


def _line(uid: str, posts: list[tuple[str, bytes, float]], **facts) -> dict:
    return {"userId": uid, "username": uid, "followersCount": 1000, **facts,
            "posts": [{"id": pid, "created_at": created, "image_base64": b64(data)} for pid, data, created in posts]}


@pytest.fixture
def fresh(client, runtime):
    """The conftest client over a fresh runtime with the rate limit off; returns a search."""
    runtime.access = unlimited(runtime, Clock())
    _, secret = runtime.tokens.create(100 * CREDITS, "t")

    def run(query: bytes, platform: str = "instagram") -> dict:
        r = client.post(IG_SEARCH if platform == "instagram" else TT_SEARCH, json=body(b64(query)),
                        headers=auth(secret))
        assert r.status_code == 200, r.text
        return r.json()

    return run


def test_reimport_updates_the_profile_and_the_posts(client, runtime, fresh, jpegs):
    now = time.time()
    cat, coffee, flip, crop = jpegs["exact"], jpegs["coffee"], jpegs["flip"], jpegs["crop90"]

    def do_import(line: dict) -> dict:
        r = client.post(IMPORT, json={"platform": "instagram", "creators": [line]})
        assert r.status_code == 200, r.text
        return r.json()["data"]

    first = _line("u1", [("a", cat, now - 10 * DAY), ("b", coffee, now - 5 * DAY)], fullName="Before")
    data = do_import(first)
    assert (data["imported"], data["posts_added"], data["posts_embedded"]) == (["u1"], 2, 2)
    [p] = fresh(jpegs["query"])["profiles"]
    assert ([m["id"] for m in p["matchedPosts"]], p["fullName"], p["followersCount"]) == (["a"], "Before", 1000)
    assert [m["id"] for m in fresh(coffee)["profiles"][0]["matchedPosts"]] == ["b"]

    assert do_import(first)["unchanged"] == ["u1"]

    # drop a, keep b, add c (a cat): the profile changes, the dropped post no longer matches, the new one does
    second = _line("u1", [("b", coffee, now - 5 * DAY), ("c", flip, now - 1 * DAY)], fullName="After",
                   followersCount=2000)
    data = do_import(second)
    assert (data["posts_added"], data["posts_removed"], data["posts_embedded"]) == (1, 1, 1)
    result = fresh(jpegs["query"])
    [p] = result["profiles"]
    assert [m["id"] for m in p["matchedPosts"]] == ["c"]
    assert (p["fullName"], p["followersCount"]) == ("After", 2000)
    assert [r["id"] for r in p["recentPosts"]] == ["c", "b"]

    # b's image becomes a cat under the same id: re-embedded, now it matches the cat
    third = _line("u1", [("b", crop, now - 5 * DAY), ("c", flip, now - 1 * DAY)], fullName="After",
                  followersCount=2000)
    data = do_import(third)
    assert (data["posts_added"], data["posts_removed"], data["posts_embedded"]) == (0, 0, 1)
    assert {m["id"] for m in fresh(jpegs["query"])["profiles"][0]["matchedPosts"]} == {"b", "c"}
    assert fresh(coffee)["total"] == 0

    # only the coffee post left: the creator no longer matches the cat
    do_import(_line("u1", [("b", coffee, now - 5 * DAY)], fullName="After"))
    assert fresh(jpegs["query"]) == {"error": False, "total": 0, "profiles": []}
    assert fresh(coffee)["total"] == 1

    r = client.delete("/api/v1/creators/instagram/u1")
    assert r.status_code == 200
    assert fresh(coffee)["total"] == 0
    assert client.delete("/api/v1/creators/instagram/u1").status_code == 404


def test_import_reaches_only_its_platform(client, runtime, fresh, jpegs):
    now = time.time()
    r = client.post(IMPORT, json={"creators": [
        {**_line("t1", [("x", jpegs["exact"], now)]), "platform": "tiktok"},
        {**_line("i1", [("y", jpegs["exact"], now)]), "platform": "instagram"},
    ]})
    assert r.status_code == 200 and r.json()["data"]["imported"] == ["t1", "i1"]
    assert [p["userId"] for p in fresh(jpegs["query"], "tiktok")["profiles"]] == ["t1"]
    assert [p["userId"] for p in fresh(jpegs["query"], "instagram")["profiles"]] == ["i1"]
    assert client.get("/api/v1/creators/tiktok").json()["data"]["creators"] == 1


@pytest.mark.parametrize("bad, where", [
    ({"followersCount": -5}, "creators[1].followersCount:"),
    ({"gender": "X"}, "creators[1].gender:"),
    ({"posts": None}, "creators[1].posts:"),
    ({"posts": [{"id": "p", "image_base64": "AAAA"}]}, "creators[1].posts[0].created_at:"),
    ({"posts": [{"id": "p", "created_at": 0}]}, "creators[1].posts[0]:"),
    ({"platform": "youtube"}, "creators[1].platform:"),
])
def test_a_malformed_creator_gets_400_and_nothing_is_written(client, runtime, fresh, jpegs, bad, where):
    good = _line("ok", [("p1", jpegs["exact"], time.time())])
    r = client.post(IMPORT, json={"platform": "instagram", "creators": [good, {**_line("bad", []), **bad}]})
    assert r.status_code == 400
    assert r.json()["message"].startswith(where), r.json()
    assert client.get("/api/v1/creators/instagram").json()["data"]["creators"] == 0
    assert fresh(jpegs["query"])["total"] == 0


def test_an_unreadable_image_fails_only_its_creator(client, runtime, fresh, jpegs):
    now = time.time()
    broken = _line("broken", [("p1", jpegs["exact"], now), ("p2", b"not an image", now)])
    r = client.post(IMPORT, json={"platform": "instagram", "creators": [_line("ok", [("p3", jpegs["exact"], now)]),
                                                                        broken]})
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["imported"] == ["ok"]
    [failure] = data["failed"]
    assert failure["where"] == "creators[1]" and failure["message"].startswith("creators[1].posts[1].image_base64:")
    assert [p["userId"] for p in fresh(jpegs["query"])["profiles"]] == ["ok"]


def test_import_body_is_validated(client):
    r = client.post(IMPORT, json={"platform": "instagram", "creators": []})
    assert r.status_code == 400 and r.json()["message"].startswith("creators:")
    r = client.post(IMPORT, json={"platform": "myspace", "creators": [{}]})
    assert r.status_code == 400 and r.json()["message"].startswith("platform:")
