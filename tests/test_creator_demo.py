"""``lookalike creators demo``: deterministic demo creators over real labelled photos."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import photo, shared_set
from lookalike.errors import InvalidParameter
from lookalike.evaluation import creator_demo as demo
from lookalike.evaluation.creator_demo import (
    build_demo,
    read_niches,
    read_queries,
    sidecar_paths,
)
from lookalike.service.creators.dictionaries import Languages, Locations

CREATOR_KEYS = {"platform", "userId", "username", "fullName", "profilePicture", "followersCount", "engagementRate",
                "accountCategory", "accountType", "gender", "ageGroup", "locations", "language", "hasEmail",
                "brands", "posts"}  # fmt: skip
POST_KEYS = {"id", "url", "thumbnail", "created_at", "type", "stats", "image_path"}
STATS = {"instagram": {"likesCount", "commentsCount"},
         "tiktok": {"likesCount", "commentsCount", "sharesCount", "playsCount", "collectsCount"}}
AGE_GROUPS = {"13-17", "18-24", "25-34", "35-44", "45-64", "65+", None}


def _write_set(root: Path, crops: dict[str, tuple[str, int]]) -> Path:
    """A labelled set of real photos: ``label -> (scikit-image photo, number of distinct crops)``."""
    (root / "images").mkdir(parents=True)
    rows = []
    for label, (name, count) in crops.items():
        image = photo(name)
        w, h = image.size
        for k in range(count):  # distinct crops walking across the photo
            left, top = (k * 7) % (w // 3), (k * 5) % (h // 3)
            crop = image.crop((left, top, left + w // 2, top + h // 2)).resize((64, 64))
            rel = f"images/{label}_{k:02d}.jpg"
            crop.save(root / rel, quality=85)
            rows.append((rel, label, ""))
    with (root / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label", "split"), *rows])
    return root


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A folder holding two labelled sets and an unlabelled one; the demo is written beside them."""
    root = tmp_path_factory.mktemp("demo")
    photos = _write_set(root / "photos", {"cat": ("chelsea", 24), "coffee": ("coffee", 30),
                                          "rocket": ("rocket", 22), "astronaut": ("astronaut", 5)})
    more = _write_set(root / "more", {"cat": ("chelsea", 20)})  # same label name, another set
    unlabelled = _write_set(root / "unlabelled", {"": ("camera", 3)})
    return root, [photos, more, unlabelled]


def label_of(set_dirs: list[Path]) -> dict[Path, str]:
    """``path -> set/label`` read straight from labels.csv (independent of the generator)."""
    found = {}
    for d in set_dirs:
        with (d / "labels.csv").open() as fh:
            for row in csv.DictReader(fh):
                if row["label"]:
                    found[(d / row["path"]).resolve()] = f"{d.name}/{row['label']}"
    return found


def check_demo(out: Path, set_dirs: list[Path], reference: datetime = demo.REFERENCE_DATE) -> list[dict]:
    """Every constraint of the demo format; returns the creators."""
    labels = label_of(set_dirs)
    places, languages = Locations.load(), Languages.load()
    creators = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    niches = read_niches(out)
    queries = read_queries(out)
    held_out = {p.resolve() for p, _ in queries}
    assert all(labels[p.resolve()] == label for p, label in queries)
    used: set[Path] = set()
    post_ids = Counter()
    for c in creators:
        assert set(c) == CREATOR_KEYS
        assert c["platform"] in ("instagram", "tiktok")
        assert c["userId"].isdigit() and c["username"] and c["fullName"]
        assert c["profilePicture"].startswith("https://example.invalid/")
        assert isinstance(c["followersCount"], int) and 1000 <= c["followersCount"] <= 50_000_000
        assert 0 < c["engagementRate"] <= 0.5
        assert c["accountType"] in ("creator", "brand")
        assert c["gender"] in ("MALE", "FEMALE", None) and c["ageGroup"] in AGE_GROUPS
        assert all(places.get(i) is not None for i in c["locations"])
        assert c["language"] is None or languages.get(c["language"]) is not None
        assert isinstance(c["hasEmail"], bool) and len(set(c["brands"])) == len(c["brands"])
        creator_niches = niches[(c["platform"], c["userId"])]
        assert 1 <= len(creator_niches) <= 2
        posts = c["posts"]
        assert 6 <= len(posts) <= 40
        paths = [(out.parent / p["image_path"]).resolve() for p in posts]
        assert len(set(paths)) == len(paths) and all(p.is_file() for p in paths)
        in_niche = sum(labels[p] in creator_niches for p in paths)
        assert in_niche >= 0.8 * len(posts)
        used.update(paths)
        dates = [datetime.fromisoformat(p["created_at"]) for p in posts]
        assert all(p["created_at"].endswith("Z") for p in posts)
        assert all(reference - timedelta(days=demo.HISTORY_DAYS + 1) <= d <= reference for d in dates)
        assert dates == sorted(dates, reverse=True)
        for p in posts:
            assert set(p) == POST_KEYS and p["type"] in ("image", "video")
            assert set(p["stats"]) == STATS[c["platform"]]
            assert p["stats"]["commentsCount"] >= -1 and p["stats"]["likesCount"] >= 0
            post_ids[p["id"]] += 1
    assert not used & held_out, "a held-out query photo was used as a post"
    assert max(post_ids.values()) == 1
    assert len({c["userId"] for c in creators}) == len({c["username"] for c in creators}) == len(creators)
    return creators


def test_same_seed_same_bytes_other_seed_other_bytes(small_sets):
    root, sets = small_sets
    files = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = root / f"{name}.jsonl"
        build_demo(sets, out, creators=40, seed=seed)
        files[name] = [out.read_bytes(), *(p.read_bytes() for p in sidecar_paths(out))]
    assert files["a"] == files["b"]
    assert files["a"][0] != files["c"][0] and files["a"][1] != files["c"][1]


def test_a_smaller_demo_is_a_prefix_of_a_larger_one(small_sets):
    root, sets = small_sets
    build_demo(sets, root / "small.jsonl", creators=7, seed=11)
    build_demo(sets, root / "large.jsonl", creators=30, seed=11)
    small = (root / "small.jsonl").read_text().splitlines()
    assert small == (root / "large.jsonl").read_text().splitlines()[:7]


def test_constraints_on_a_small_labelled_folder(small_sets):
    root, sets = small_sets
    out = root / "demo.jsonl"
    report = build_demo(sets, out, creators=200, seed=3, holdout=0.1)
    creators = check_demo(out, sets)
    assert report.creators == len(creators) == 200 and report.posts == sum(len(c["posts"]) for c in creators)
    # labels under 20 photos and unlabelled sets are left out; same-named labels of two sets stay apart
    assert report.labels == ("more/cat", "photos/cat", "photos/coffee", "photos/rocket")
    assert report.sets == ("more", "photos") and report.skipped == ("unlabelled: unlabelled",)
    per_label = Counter(label for _, label in read_queries(out))
    assert per_label == {"more/cat": 2, "photos/cat": 2, "photos/coffee": 3, "photos/rocket": 2}  # round(10%)
    assert report.held_out == sum(per_label.values())
    # the set lies beside the output, so paths are relative to it
    assert all(not Path(p["image_path"]).is_absolute() for c in creators for p in c["posts"])
    platforms = Counter(c["platform"] for c in creators)
    assert 70 <= platforms["instagram"] <= 130 and platforms["instagram"] + platforms["tiktok"] == 200
    tiktok_posts = [p for c in creators if c["platform"] == "tiktok" for p in c["posts"]]
    assert sum(p["type"] == "video" for p in tiktok_posts) > 0.75 * len(tiktok_posts)
    assert any(p["stats"]["commentsCount"] == -1 for c in creators for p in c["posts"])
    assert Counter(len(niches) for niches in read_niches(out).values()).keys() == {1, 2}


def test_locations_are_mostly_cities_under_their_country(small_sets):
    root, sets = small_sets
    out = root / "places.jsonl"
    build_demo(sets, out, creators=200, seed=8)
    places = Locations.load()
    located = [c["locations"][0] for c in check_demo(out, sets) if c["locations"]]
    cities = [i for i in located if places.get(i).type == "city"]
    assert len(cities) > 0.7 * len(located)
    for city in cities:  # a filter on the city's country (expanded) matches the creator
        country = places.ancestors(city)[-1]
        assert places.get(country).type == "country" and city in places.expand([country])


def test_posts_parse_with_the_creator_importer(small_sets):
    from lookalike.service.creators.importer import parse_creator

    root, sets = small_sets
    out = root / "parse.jsonl"
    build_demo(sets, out, creators=25, seed=2)
    for n, line in enumerate(out.read_text().splitlines(), 1):
        parsed = parse_creator(json.loads(line), f"line {n}", base_dir=out.parent)
        assert 6 <= len(parsed.posts) <= 40


def test_reference_date_moves_the_post_dates(small_sets):
    root, sets = small_sets
    reference = datetime(2021, 3, 1, tzinfo=UTC)
    out = root / "dated.jsonl"
    build_demo(sets, out, creators=20, seed=4, reference_date=reference)
    check_demo(out, sets, reference)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"creators": 0}, r"^creators: must be an integer from 1 to"),
    ({"seed": -1}, r"^seed: must be a non-negative integer"),
    ({"holdout": 0.9}, r"^holdout: must be between 0 and 0.5"),
    ({"platform_mix": 1.5}, r"^platform_mix: must be between 0 and 1"),
    ({"reference_date": datetime(2025, 1, 1)}, r"^reference_date: must carry a timezone"),
])  # fmt: skip
def test_bad_arguments(small_sets, kwargs, message):
    root, sets = small_sets
    args = {"creators": 5, "seed": 1, **kwargs}
    with pytest.raises(InvalidParameter, match=message):
        build_demo(sets, root / "bad.jsonl", **args)
    assert not (root / "bad.jsonl").exists()


def test_folders_without_usable_labels(small_sets, tmp_path):
    _, sets = small_sets
    with pytest.raises(InvalidParameter, match=r"^images: .* has no labels\.csv"):
        build_demo([tmp_path], tmp_path / "x.jsonl", creators=5, seed=1)
    with pytest.raises(InvalidParameter, match=rf"^images: no labelled set with a label of at least "
                                               rf"{demo.MIN_IMAGES_PER_LABEL} images"):
        build_demo([sets[2]], tmp_path / "x.jsonl", creators=5, seed=1)
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_writes_the_same_bytes(small_sets, tmp_path):
    from lookalike.cli import app

    _, sets = small_sets
    out = tmp_path / "cli.jsonl"
    args = ["creators", "demo", "--out", str(out), "--creators", "12", "--seed", "9"]
    result = CliRunner().invoke(app, [*args, "--images", str(sets[0]), "--images", str(sets[1])])
    assert result.exit_code == 0, result.output
    assert "12 creators" in result.output
    build_demo(sets[:2], tmp_path / "api.jsonl", creators=12, seed=9)
    assert out.read_bytes() == (tmp_path / "api.jsonl").read_bytes()
    bad = CliRunner().invoke(app, [*args, "--images", str(sets[0]), "--reference-date", "2025-02-30"])
    assert bad.exit_code == 2 and "--reference-date" in bad.output


def test_on_corel1k(tmp_path):
    corel = shared_set("corel1k")
    out = tmp_path / "corel.jsonl"
    report = build_demo([corel], out, creators=60, seed=1)
    creators = check_demo(out, [corel])
    assert len(report.labels) == 10 and report.held_out == 100  # 10% of 100 photos per label
    # the set lives outside the output's folder: absolute paths
    assert all(Path(p["image_path"]).is_absolute() for c in creators for p in c["posts"])
    niches = Counter(n for ns in read_niches(out).values() for n in ns)
    assert len(niches) >= 8  # niches spread over the labels
