"""Creator search with the ANN candidate stage returns the exact scan's pages.

A demo-sized platform (600 creators x 20 posts, profile facts drawn as ``lookalike creators
demo`` draws them, synthetic niche embeddings: ``evaluation.synthetic_creators``) is searched
twice: every counted post scored (the exact scan) and through ``AnnPostIndex`` (the IVF
candidate stage, grown until the page is provably the exact one). Pages, relevances and
matched posts must be equal, with and without profile and post filters.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.evaluation.creator_demo import REFERENCE_DATE
from lookalike.evaluation.synthetic_creators import SyntheticSpace, write_synthetic_platform
from lookalike.models.efficientnet import _IMAGE_CALIBRATION as IMAGE_CALIBRATIONS
from lookalike.service.creators.dictionaries import Locations
from lookalike.service.creators.filters import parse_filters
from lookalike.service.creators.search import CreatorSearchService
from lookalike.store.creator_store import CreatorStore
from lookalike.store.post_index import AnnPostIndex
from recording_index import Recording

PLATFORM = "tiktok"
LOCATIONS = Locations.load()


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    space = SyntheticSpace.make(27, 1280, seed=3)
    store = CreatorStore(tmp_path_factory.mktemp("creators") / "creators.db")
    write_synthetic_platform(store, space, 600, 20, seed=11, platform=PLATFORM, locations=LOCATIONS)
    rng = np.random.default_rng(5)
    queries = space.draw(rng, rng.integers(0, 27, 8))
    yield store, queries
    store.close()


def services(store, queries, post_index):
    images = [Image.new("RGB", (1, 1), (i, 0, 0)) for i in range(len(queries))]
    kw = {
        "expand_locations": LOCATIONS.expand, "clock": lambda: REFERENCE_DATE.timestamp(),
        "calibration": IMAGE_CALIBRATIONS["efficientnet-lite0"],
    }

    def embed(image):  # the query vector of a token image
        return queries[image.getpixel((0, 0))[0]]

    exact = CreatorSearchService(store, embed, **kw)
    ann = CreatorSearchService(store, embed, post_index=post_index, **kw)
    return images, exact, ann


FILTERS = [
    None,
    {"followersCount": {"min": 30_000}},
    {"gender": "FEMALE", "age": {"min": 18, "max": 35}},
    {"locations": [LOCATIONS.by_code("US").id]},
    {"contentType": "video", "maxPostAgeMonths": 6},
    {"lastPostedInDays": 30},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: "none" if f is None else "+".join(f))
def test_candidate_stage_pages_equal_the_exact_scan(platform, filters):
    store, queries = platform
    recording = Recording(AnnPostIndex(min_posts=1000, background=False))
    images, exact, ann = services(store, queries, recording)
    query = parse_filters(PLATFORM, filters)
    compared = 0
    for image in images:
        for page in (0, 1, 4):
            want = exact.search(PLATFORM, image, query, page, 6)
            got = ann.search(PLATFORM, image, query, page, 6)
            assert [p.creator.user_id for p in got.profiles] == [p.creator.user_id for p in want.profiles]
            assert [p.relevance for p in got.profiles] == [p.relevance for p in want.profiles]
            for a, b in zip(got.profiles, want.profiles, strict=True):
                assert [(p.post_id, s) for p, s in a.matched_posts] == [(p.post_id, s) for p, s in b.matched_posts]
            assert got.total <= want.total and got.total >= min(want.total, (page + 1) * 6)
            compared += len(want.profiles)
    assert compared > 0
    # the candidate stage really answered (not only the exact fallback)
    assert any(found is not None and found < counted for counted, _, found in recording.calls)


def test_without_an_index_of_the_snapshot_the_search_is_exact(platform):
    store, queries = platform
    images, exact, ann = services(store, queries, AnnPostIndex(min_posts=10**9))
    query = parse_filters(PLATFORM, None)
    for image in images[:3]:
        want, got = exact.search(PLATFORM, image, query, 0, 6), ann.search(PLATFORM, image, query, 0, 6)
        assert got.total == want.total and [p.relevance for p in got.profiles] == [p.relevance for p in want.profiles]


def test_on_a_real_photo_demo_the_candidate_stage_returns_the_exact_pages(tmp_path, settings, models, monkeypatch):
    """The same check on real efficientnet-lite0 embeddings: a demo built by ``build_demo`` from
    corel1k and oxford17 photos (80 creators, ~1.8k posts), queried with its held-out photos.
    The first candidate round is shrunk to this size (the constants tune cost, not exactness)."""
    import lookalike.service.creators.candidates as cc

    monkeypatch.setattr(cc, "MIN_CANDIDATES", 24)
    monkeypatch.setattr(cc, "CANDIDATES_PER_RANK", 4)
    from conftest import shared_set
    from lookalike.evaluation.creator_demo import build_demo, read_queries
    from lookalike.imaging import decode_image
    from lookalike.runtime import Runtime

    sets = [shared_set("corel1k"), shared_set("oxford17")]
    jsonl = tmp_path / "demo.jsonl"
    build_demo(sets, jsonl, creators=80, seed=7)
    rt = Runtime.open(settings, models=models)
    try:
        rt.creator_importer.import_jsonl(jsonl)
        model = rt.models(rt.creators.model_id())
        images = [decode_image(path.read_bytes(), field=str(path)) for path, _ in read_queries(jsonl)[::9][:12]]
        vectors = {id(image): vec for image, vec in zip(images, model.embed_images(images).visual, strict=True)}
        kw = {
            "expand_locations": rt.locations.expand, "clock": lambda: REFERENCE_DATE.timestamp(),
            "calibration": model.info.image_calibration,
        }

        def embed(image):  # embedded once above
            return vectors[id(image)]

        recording = Recording(AnnPostIndex(min_posts=300, background=False))
        exact = CreatorSearchService(rt.creators, embed, **kw)
        ann = CreatorSearchService(rt.creators, embed, post_index=recording, **kw)
        for platform, filters in (("instagram", None), ("tiktok", None), ("instagram", {"followersCount": {"min": 10_000}}),
                                  ("tiktok", {"gender": "FEMALE"}), ("tiktok", {"contentType": "video"})):  # fmt: skip
            query = parse_filters(platform, filters)
            for image in images:
                for page in (0, 1):
                    want = exact.search(platform, image, query, page, 6)
                    got = ann.search(platform, image, query, page, 6)
                    assert [(p.creator.user_id, p.relevance) for p in got.profiles] == [
                        (p.creator.user_id, p.relevance) for p in want.profiles
                    ], (platform, filters, page)
        assert any(found is not None and found < counted for counted, _, found in recording.calls)
    finally:
        rt.close()
