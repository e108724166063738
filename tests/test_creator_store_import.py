"""Creator storage, import and refresh: real photos, the real default model, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import b64, encode, photo
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.errors import Conflict, CreatorNotFound, InvalidParameter, ModelMismatch
from lookalike.imaging import decode_image
from lookalike.service.creators.importer import CreatorImporter, parse_creator
from lookalike.store.creator_store import CreatorStore
from lookalike.store.creator_types import CreatorRecord, PostRecord

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


class CountingModel:
    """The real model, counting embedded images; ``fail_on_call`` makes one call raise."""

    def __init__(self, inner) -> None:
        self.inner, self.info = inner, inner.info
        self.embedded, self.calls, self.fail_on_call = 0, 0, None

    def preprocess(self, image):
        return self.inner.preprocess(image)

    def embed_pixels(self, batch):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("model crashed")
        self.embedded += len(batch)
        return self.inner.embed_pixels(batch)


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "feed" / "img"
    root.mkdir(parents=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina"):
        (root / f"{name}.jpg").write_bytes(encode(photo(name)))
    return root


@pytest.fixture
def model(models):
    return CountingModel(models("efficientnet-lite0"))


@pytest.fixture
def store(tmp_path):
    s = CreatorStore(tmp_path / "data" / "creators.db")
    yield s
    s.close()


@pytest.fixture
def importer(store, model, tmp_path):
    return CreatorImporter(store, lambda model_id: model, Settings(data_dir=tmp_path / "data"))


def post(pid: str, image: str, day: int = 0, **extra) -> dict:
    """A post whose image is ``img/<image>.jpg`` relative to the JSONL file."""
    return {"id": pid, "url": f"https://instagram.com/p/{pid}", "thumbnail": f"https://cdn.example/{pid}.jpg",
            "created_at": T0 + day * 86400, "stats": {"likesCount": 100 + day, "commentsCount": 5},
            "image_path": f"img/{image}.jpg", **extra}


def creator(uid: str, posts: list[dict], **extra) -> dict:
    return {"platform": "instagram", "userId": uid, "username": f"User_{uid}", "fullName": f"Name {uid}",
            "followersCount": 12000, "engagementRate": 0.031, "accountType": "creator", "gender": "FEMALE",
            "ageGroup": "25-34", "locations": [148838], "language": "en", "hasEmail": True,
            "brands": ["Nike", "Adidas"], "posts": posts, **extra}


def write(path: Path, lines: list) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def direct(model, path: Path) -> np.ndarray:
    """The embedding of a photo computed directly, not through the importer."""
    return model.inner.embed_images([decode_image(path.read_bytes())]).visual[0]


def vectors_by_post(snap) -> dict[str, np.ndarray]:
    return dict(zip(snap.posts.post_ids, snap.posts.vectors, strict=True))


def test_import_real_photos_builds_the_snapshot(importer, store, model, images):
    feed = images.parent
    lines = [
        creator("u2", [post("p1", "astronaut", 1), post("p2", "chelsea", 3, type="video")]),
        creator("u1", [
            post("p3", "coffee", 2),
            {**post("p4", "rocket", 5), "image_path": None, "image_base64": b64(encode(photo("rocket")))},
            {**post("p5", "retina", 4), "image_path": None, "image_url": (images / "retina.jpg").as_uri()},
        ], username="MixedCase", brands=["NIKE", "Puma"], gender="unknown", language=None),
        creator("u3", [], followersCount=50),
    ]
    outcome = importer.import_jsonl(write(feed / "creators.jsonl", lines))
    assert outcome.failed == [] and outcome.imported == ["u2", "u1", "u3"]
    assert (outcome.posts_added, outcome.posts_embedded, model.embedded) == (5, 5, 5)

    snap = store.snapshot("instagram")
    assert snap.model_id == "efficientnet-lite0" and store.model_id() == "efficientnet-lite0"
    c = snap.creators
    assert list(c.user_ids) == ["u1", "u2", "u3"] and list(c.usernames) == ["mixedcase", "user_u2", "user_u3"]
    assert c.followers.tolist() == [12000, 12000, 50] and c.followers.dtype == np.int64
    assert list(c.gender) == [None, "FEMALE", "FEMALE"] and list(c.language) == [None, "en", "en"]
    assert c.brands[0] == frozenset({"nike", "puma"}) and c.location_ids[1] == frozenset({148838})
    assert c.last_post_at[0] == T0 + 5 * 86400 and c.last_post_at[1] == T0 + 3 * 86400 and np.isnan(c.last_post_at[2])

    p = snap.posts
    assert p.vectors.shape == (5, 1280) and p.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(p.vectors, axis=1), 1, atol=1e-4)
    # grouped by creator, newest first
    assert list(p.post_ids) == ["p4", "p5", "p3", "p2", "p1"] and p.creator_row.tolist() == [0, 0, 0, 1, 1]
    assert p.is_video.tolist() == [False, False, False, True, False]
    vectors = vectors_by_post(snap)
    for pid, name in {"p1": "astronaut", "p2": "chelsea", "p3": "coffee", "p4": "rocket", "p5": "retina"}.items():
        assert float(vectors[pid] @ direct(model, images / f"{name}.jpg")) > 0.999, pid

    assert store.count("instagram") == 3 and store.count("tiktok") == 0
    assert store.brands("instagram") == ["Adidas", "Nike", "Puma"]  # Nike: 2 creators spell it so, NIKE 1
    profile = store.profiles("instagram", ["u1", "nobody"])
    assert list(profile) == ["u1"] and profile["u1"].username == "MixedCase"
    assert profile["u1"].brands == ("NIKE", "Puma")
    assert store.posts("instagram", ["p2"])["p2"] == PostRecord(
        "p2", "u2", "https://instagram.com/p/p2", "https://cdn.example/p2.jpg", T0 + 3 * 86400, "video",
        {"likesCount": 103, "commentsCount": 5})
    recent = store.recent_posts("instagram", ["u1", "u3"], limit=2)
    assert [x.post_id for x in recent["u1"]] == ["p4", "p5"] and recent["u3"] == []


def test_refresh_updates_adds_drops_and_reembeds_only_changed_images(importer, store, model, images):
    feed = images.parent
    v1 = [post("a", "astronaut", 1), post("b", "chelsea", 2), post("c", "coffee", 3), post("d", "rocket", 4)]
    importer.import_jsonl(write(feed / "v1.jsonl", [creator("u1", v1)]))
    before = store.snapshot("instagram")
    assert model.embedded == 4

    v2 = [post("a", "astronaut", 1, stats={"likesCount": 999, "commentsCount": -1}),
          post("b", "retina", 2),                 # image changed
          post("c", "coffee", 3),
          post("e", "hubble_deep_field", 6)]      # new; "d" dropped
    outcome = importer.import_jsonl(write(feed / "v2.jsonl", [creator("u1", v2, followersCount=15000)]))
    assert outcome.imported == ["u1"] and outcome.failed == []
    assert (outcome.posts_added, outcome.posts_removed, outcome.posts_embedded) == (1, 1, 2)
    assert model.embedded == 4 + 2  # a and c were not embedded again

    after = store.snapshot("instagram")
    assert after.version > before.version and after.creators.followers.tolist() == [15000]
    old, new = vectors_by_post(before), vectors_by_post(after)
    assert sorted(new) == ["a", "b", "c", "e"]
    assert np.array_equal(new["a"], old["a"]) and np.array_equal(new["c"], old["c"])
    assert float(new["b"] @ direct(model, images / "retina.jpg")) > 0.999
    assert float(new["b"] @ old["b"]) < 0.9
    assert store.posts("instagram", ["a"])["a"].stats == {"likesCount": 999, "commentsCount": -1}
    assert after.creators.last_post_at[0] == T0 + 6 * 86400

    # The same file again: nothing read, embedded or written.
    again = importer.import_jsonl(feed / "v2.jsonl")
    assert again.unchanged == ["u1"] and again.imported == [] and model.embedded == 6
    assert store.snapshot("instagram") is after

    # Replacing an image file in place changes the line's hash: only that post is re-embedded.
    (images / "coffee.jpg").write_bytes(encode(photo("chelsea"), quality=70))
    third = importer.import_jsonl(feed / "v2.jsonl")
    assert third.imported == ["u1"] and third.posts_embedded == 1 and model.embedded == 7
    assert float(vectors_by_post(store.snapshot("instagram"))["c"] @ direct(model, images / "coffee.jpg")) > 0.999


def test_bad_lines_are_reported_and_leave_the_stored_creator_intact(importer, store, model, images):
    feed = images.parent
    importer.import_jsonl(write(feed / "v1.jsonl", [creator("u1", [post("a", "astronaut"), post("b", "chelsea")])]))
    profile, hashes = store.profiles("instagram", ["u1"])["u1"], store.post_hashes("instagram", "u1")
    vectors = vectors_by_post(store.snapshot("instagram"))
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")

    changed = {"followersCount": 1}  # every bad line would also change the profile
    lines = [
        creator("u2", [post("x", "coffee")]),
        creator("u1", [post("a", "astronaut"), post("c", "rocket", stats={"likesCount": -5})], **changed),
        creator("u1", [post("c", "rocket"), post("z", "does_not_exist")], **changed),
        creator("u1", [post("c", "rocket"), post("c", "retina")], **changed),
        "{broken json",
        creator("u1", [post("c", "rocket", image_path=None, image_url="https://cdn.example/c.jpg")], **changed),
        creator("u1", [post("c", "broken")], **changed),
        creator("u1", [post("x", "rocket")], **changed),  # post x belongs to u2
        [1, 2],
        creator("u1", [], engagementRate=3.1),
    ]
    outcome = importer.import_jsonl(write(feed / "bad.jsonl", lines))
    assert outcome.imported == ["u2"] and outcome.unchanged == []
    failed = dict(outcome.failed)
    assert [w for w, _ in outcome.failed] == [f"line {n}" for n in range(2, 11)]
    assert failed["line 2"] == "line 2: posts[1].stats.likesCount: must be an integer >= -1"
    assert failed["line 3"].startswith("line 3: posts[1].image_path: cannot read")
    assert "does_not_exist.jpg" in failed["line 3"]
    assert failed["line 4"] == "line 4: posts[1].id: 'c' repeats posts[0].id"
    assert failed["line 5"].startswith("line 5: not valid JSON")
    assert "posts[0].image_url" in failed["line 6"] and "does not fetch remote URLs" in failed["line 6"]
    assert failed["line 7"].startswith("line 7: posts[0].image_path: ") and "image" in failed["line 7"][30:]
    assert failed["line 8"] == "line 8: post 'x' already belongs to creator 'u2' on instagram"
    assert failed["line 9"] == "line 9: must be a JSON object (one creator per line)"
    assert failed["line 10"].startswith("line 10: engagementRate: must be a fraction between 0 and 1")

    assert store.profiles("instagram", ["u1"])["u1"] == profile
    assert store.post_hashes("instagram", "u1") == hashes
    now = vectors_by_post(store.snapshot("instagram"))
    assert sorted(now) == ["a", "b", "x"]
    assert all(np.array_equal(now[k], v) for k, v in vectors.items())


def test_a_crash_mid_import_keeps_the_previous_data_and_a_rerun_finishes(importer, store, model, images):
    feed = images.parent
    importer.import_jsonl(write(feed / "v1.jsonl", [creator("u1", [post("a", "astronaut"), post("b", "chelsea")])]))
    before = store.snapshot("instagram")
    profile = store.profiles("instagram", ["u1"])["u1"]

    src = write(feed / "v2.jsonl", [
        creator("u2", [post("x", "coffee")]),
        creator("u1", [post("a", "astronaut"), post("b", "retina"), post("c", "rocket")], followersCount=1),
    ])
    model.fail_on_call = model.calls + 2  # u2's batch goes through, u1's raises
    with pytest.raises(RuntimeError, match="model crashed"):
        importer.import_jsonl(src)
    assert store.profiles("instagram", ["u1"])["u1"] == profile
    assert sorted(store.post_hashes("instagram", "u1")) == ["a", "b"]
    assert np.array_equal(vectors_by_post(store.snapshot("instagram"))["b"], vectors_by_post(before)["b"])
    assert store.count("instagram") == 2  # u2 was committed before the crash

    rerun = importer.import_jsonl(src)
    assert rerun.unchanged == ["u2"] and rerun.imported == ["u1"] and rerun.posts_embedded == 2
    assert store.profiles("instagram", ["u1"])["u1"].followers_count == 1


NAMES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")


def many_creators(n: int, posts: int) -> list[dict]:
    """``n`` creators of ``posts`` posts each: more images than the importer reads ahead (128)."""
    return [creator(f"u{c}", [post(f"p{c}-{i}", NAMES[(c + i) % 6], i) for i in range(posts)]) for c in range(n)]


def test_same_creator_twice_in_a_file_is_applied_line_by_line(importer, store, model, images):
    feed = images.parent
    importer.import_jsonl(write(feed / "v1.jsonl", [creator("u1", [post("a", "astronaut")])]))
    lines = [
        creator("u1", [post("a", "chelsea")], followersCount=1),  # a's image changes...
        creator("u1", [post("a", "astronaut"), post("b", "coffee")], followersCount=2),  # ...and changes back
        creator("u1", [post("a", "astronaut"), post("b", "coffee")], followersCount=2),  # the line just written
    ]
    outcome = importer.import_jsonl(write(feed / "v2.jsonl", lines))
    # Each line compares with what the line before it wrote, not with the store before the import.
    assert outcome.failed == [] and outcome.imported == ["u1", "u1"] and outcome.unchanged == ["u1"]
    assert outcome.posts_embedded == 3 and model.embedded == 1 + 3
    assert float(vectors_by_post(store.snapshot("instagram"))["a"] @ direct(model, images / "astronaut.jpg")) > 0.999
    assert store.profiles("instagram", ["u1"])["u1"].followers_count == 2


def test_creators_beyond_the_lookahead_are_written_and_reported_in_order(importer, store, model, images):
    lines = many_creators(12, 15)
    lines[4]["posts"][9]["image_path"] = "img/missing.jpg"  # a bad image in the middle of a creator
    lines[7]["posts"][14]["id"] = "p2-0"  # a post of u2: refused when u7 is written
    ticks: list[int] = []
    outcome = importer.import_jsonl(write(images.parent / "many.jsonl", lines), progress=ticks.append)

    assert ticks == [1] * 12
    assert outcome.imported == [f"u{c}" for c in range(12) if c not in (4, 7)]
    assert [w for w, _ in outcome.failed] == ["line 5", "line 8"]
    assert outcome.failed[0][1].startswith("line 5: posts[9].image_path: cannot read")
    assert outcome.failed[1][1] == "line 8: post 'p2-0' already belongs to creator 'u2' on instagram"
    # One model call per creator of 15 posts: batches never span creators (u4 failed before its batch).
    assert model.calls == 11 and outcome.posts_embedded == 150 and outcome.posts_added == 150
    assert store.count("instagram") == 10 and store.post_hashes("instagram", "u4") == {}
    reference = {name: direct(model, images / f"{name}.jpg") for name in NAMES}
    vectors = vectors_by_post(store.snapshot("instagram"))
    assert sorted(vectors) == sorted(f"p{c}-{i}" for c in range(12) if c not in (4, 7) for i in range(15))
    for pid, vector in vectors.items():
        c, i = map(int, pid[1:].split("-"))
        assert float(vector @ reference[NAMES[(c + i) % 6]]) > 0.999, pid


def test_a_crash_with_loads_in_flight_keeps_earlier_creators_and_a_rerun_finishes(importer, store, model, images):
    src = write(images.parent / "many.jsonl", many_creators(6, 30))
    model.fail_on_call = 4  # u0..u2 embedded and written; u3's batch raises while u4, u5 are being read
    with pytest.raises(RuntimeError, match="model crashed"):
        importer.import_jsonl(src)
    assert store.count("instagram") == 3 and store.post_hashes("instagram", "u3") == {}
    assert sorted(store.profiles("instagram", [f"u{c}" for c in range(6)])) == ["u0", "u1", "u2"]

    rerun = importer.import_jsonl(src)
    assert rerun.unchanged == ["u0", "u1", "u2"] and rerun.imported == ["u3", "u4", "u5"]
    assert rerun.posts_embedded == 90 and store.count("instagram") == 6


@pytest.mark.parametrize(("change", "message"), [
    ({"platform": None}, "platform: must be one of instagram, tiktok"),
    ({"userId": 7}, "userId: must be a non-empty string of at most 256 characters"),
    ({"userId": None}, "userId: is required and must be a non-empty string"),
    ({"followersCount": -1}, "followersCount: must be an integer >= 0"),
    ({"followersCount": None}, "followersCount: is required and must be an integer >= 0"),
    ({"accountType": "bot"}, "accountType: must be one of creator, brand or null"),
    ({"gender": "X"}, "gender: must be MALE, FEMALE, UNKNOWN or null"),
    ({"ageGroup": "20-30"}, "ageGroup: must be one of 13-17, 18-24"),
    ({"language": "eng"}, "language: must be a two-letter ISO 639-1 code or null"),
    ({"locations": ["FR"]}, "locations[0]: must be an integer location id"),
    ({"brands": "Nike"}, "brands: must be a list of at most 1000 items, each a non-empty string"),
    ({"hasEmail": "yes"}, "hasEmail: must be true or false"),
    ({"posts": None}, "posts: is required: a list of at most 1000 posts"),
    ({"posts": [{"id": "p"}] * 1001}, "posts: is required: a list of at most 1000 posts"),
    ({"posts": [{**post("p", "x"), "type": "reel"}]}, "posts[0].type: must be one of image, video or null"),
    ({"posts": [post("p", "x", created_at="yesterday")]}, "posts[0].created_at: 'yesterday' is not an ISO 8601"),
    ({"posts": [post("p", "x", image_base64="AAAA")]}, "posts[0]: needs exactly one of image_base64, image_path"),
    ({"posts": [{**post("p", "x"), "image_path": None}]}, "posts[0]: needs exactly one of"),
    ({"posts": [{**post("p", "x"), "id": ""}]}, "posts[0].id: must be a non-empty string"),
])
def test_parse_names_the_field_and_the_rule(change, message):
    obj = {k: v for k, v in {**creator("u1", [post("p", "x")]), **change}.items() if v is not None}
    with pytest.raises(InvalidParameter) as info:
        parse_creator(obj, "line 12")
    assert info.value.message.startswith(f"line 12: {message}")


def test_parse_dates_platform_default_and_tiktok_stats(tmp_path):
    raw = creator("u1", [post("p", "x", created_at="2024-05-01T12:00:00Z",
                              stats={"likesCount": 1, "commentsCount": -1, "sharesCount": 2, "playsCount": 30,
                                     "collectsCount": 4})])
    del raw["platform"]
    parsed = parse_creator(raw, "line 1", default_platform="tiktok", base_dir=tmp_path)
    assert parsed.record.platform == "tiktok"
    (p,) = parsed.posts
    assert p.record.created_at == T0 and p.image_file == tmp_path / "img" / "x.jpg"
    assert p.record.stats == raw["posts"][0]["stats"]
    # the same line on Instagram keeps Instagram's stats only; a naive date reads as UTC
    raw["posts"][0]["created_at"] = "2024-05-01T12:00:00"
    parsed = parse_creator(raw, "line 1", default_platform="instagram")
    assert parsed.posts[0].record.stats == {"likesCount": 1, "commentsCount": -1}
    assert parsed.posts[0].record.created_at == T0
    # every count can be hidden (-1, as Modash reports it); below that is refused
    hidden = parse_creator({**raw, "posts": [{**raw["posts"][0], "stats": {"sharesCount": -1}}]}, "line 1", "tiktok")
    assert hidden.posts[0].record.stats == {"sharesCount": -1}
    with pytest.raises(InvalidParameter, match=r"line 1: posts\[0\].stats.sharesCount: must be an integer >= -1"):
        parse_creator({**raw, "posts": [{**raw["posts"][0], "stats": {"sharesCount": -2}}]}, "line 1", "tiktok")


def test_another_store_instance_sees_changes_like_another_process(store, model, images, tmp_path):
    vec = model.inner.embed_images([photo("chelsea"), photo("coffee")]).visual
    record = CreatorRecord("tiktok", "t1", "cat", None, None, 10, 0.1, None, None, None, None, (), None, False, ())
    store.upsert_creator(record, [(PostRecord("v1", "t1", None, None, T0, "video", {}), "h1", vec[0])], "l1",
                         "efficientnet-lite0")
    first = store.snapshot("tiktok")
    assert store.snapshot("tiktok") is first and len(first.posts) == 1

    other = CreatorStore(tmp_path / "data" / "creators.db")
    try:
        other.upsert_creator(record, [(PostRecord("v1", "t1", None, None, T0, "video", {}), "h1", None),
                                      (PostRecord("v2", "t1", None, None, T0 + 9, "image", {}), "h2", vec[1])],
                             "l2", "efficientnet-lite0")
        seen = store.snapshot("tiktok")
        assert seen.version > first.version and list(seen.posts.post_ids) == ["v2", "v1"]
        assert np.array_equal(seen.posts.vectors[1], first.posts.vectors[0])
        other.delete_creator("tiktok", "t1")
        gone = store.snapshot("tiktok")
        assert len(gone.creators) == 0 and len(gone.posts) == 0 and gone.model_id is None
        with pytest.raises(CreatorNotFound):
            other.delete_creator("tiktok", "t1")
    finally:
        other.close()


def test_store_refuses_other_models_missing_embeddings_and_foreign_posts(store, model):
    vec = model.inner.embed_images([photo("rocket")]).visual[0]
    a = CreatorRecord("instagram", "a", "a", None, None, 1, 0.0, None, None, None, None, (), None, False, ())
    b = CreatorRecord("instagram", "b", "b", None, None, 1, 0.0, None, None, None, None, (), None, False, ())
    p = PostRecord("p", "a", None, None, T0, "image", {})
    assert store.upsert_creator(a, [(p, "h", vec)], "x", "efficientnet-lite0").added == 1
    with pytest.raises(ModelMismatch):
        store.upsert_creator(a, [(p, "h2", vec)], "y", "efficientnet-lite2")
    with pytest.raises(ModelMismatch):
        store.upsert_creator(a, [(p, "h2", vec[:100])], "y", "efficientnet-lite0")
    with pytest.raises(InvalidParameter, match="embedding is required"):
        store.upsert_creator(a, [(p, "changed", None)], "y", "efficientnet-lite0")
    with pytest.raises(Conflict):
        store.upsert_creator(b, [(PostRecord("p", "b", None, None, T0, "image", {}), "h", vec)], "z",
                             "efficientnet-lite0")
    assert store.content_hash("instagram", "a") == "x" and store.count("instagram") == 1
    report = store.upsert_creator(a, [(p, "h", None)], "x2", "efficientnet-lite0")
    assert (report.added, report.updated, report.removed, report.kept) == (0, 0, 0, 1)
    assert store.upsert_creator(a, [], "x3", "efficientnet-lite0").removed == 1


def test_bulk_upsert_writes_all_creators_of_a_batch_or_none(store, model):
    vec = model.inner.embed_images([photo("rocket"), photo("coffee")]).visual
    rec = {u: CreatorRecord("instagram", u, u, None, None, 1, 0.0, None, None, None, None, (), None, False, ())
           for u in ("a", "b", "c")}
    batch = [(rec["a"], [(PostRecord("pa", "a", None, None, T0, "image", {}), "h", vec[0])], "x"),
             (rec["b"], [(PostRecord("pb", "b", None, None, T0, "image", {}), "h", vec[1])], "y")]
    version = store.version("instagram")
    reports = store.upsert_creators(batch, "efficientnet-lite0")
    assert [r.added for r in reports] == [1, 1] and store.count("instagram") == 2
    assert store.version("instagram") == version + 1  # one snapshot change for the batch
    snap = store.snapshot("instagram")
    assert np.array_equal(snap.posts.vectors[list(snap.posts.post_ids).index("pb")], vec[1])
    # the third creator's post belongs to "a": the whole batch is refused, "c" is not written
    bad = [(rec["c"], [(PostRecord("pc", "c", None, None, T0, "image", {}), "h", vec[0])], "z"),
           (rec["c"], [(PostRecord("pa", "c", None, None, T0, "image", {}), "h", vec[0])], "z")]
    with pytest.raises((Conflict, InvalidParameter)):
        store.upsert_creators(bad, "efficientnet-lite0")
    assert store.count("instagram") == 2 and store.content_hash("instagram", "c") is None


def test_cli_creators_import(images, model_cache, tmp_path):
    feed = images.parent
    tiktok = {"likesCount": 10, "commentsCount": 2, "sharesCount": 3, "playsCount": 400, "collectsCount": 5}
    lines = [
        {k: v for k, v in creator("t1", [post("a", "astronaut", stats=tiktok), post("b", "chelsea")]).items()
         if k != "platform"},
        {k: v for k, v in creator("t2", [post("c", "coffee", type="video")]).items() if k != "platform"},
        {"userId": "t3", "username": "x", "followersCount": "many", "posts": []},
    ]
    src = write(feed / "creators.jsonl", lines)
    env = {"LOOKALIKE_DATA_DIR": str(tmp_path / "cli-data"), "LOOKALIKE_MODEL_CACHE": str(model_cache)}
    runner = CliRunner()
    first = runner.invoke(app, ["creators", "import", str(src), "--platform", "tiktok"], env=env)
    assert first.exit_code == 0, first.output
    assert "imported 2, unchanged 0, failed 1 (posts: 3 added, 0 removed, 3 embedded)" in first.output
    assert "line 3: followersCount: must be an integer >= 0" in first.output
    again = runner.invoke(app, ["creators", "import", str(src), "--platform", "tiktok"], env=env)
    assert again.exit_code == 0 and "imported 0, unchanged 2, failed 1" in again.output

    store = CreatorStore(tmp_path / "cli-data" / "creators.db")
    try:
        assert store.count("tiktok") == 2 and store.count("instagram") == 0
        assert store.posts("tiktok", ["a"])["a"].stats == tiktok
        assert store.snapshot("tiktok").posts.is_video.tolist() == [False, False, True]
    finally:
        store.close()
    bad = runner.invoke(app, ["creators", "import", str(src), "--platform", "youtube"], env=env)
    assert bad.exit_code == 2 and "platform: must be one of instagram, tiktok" in bad.output
