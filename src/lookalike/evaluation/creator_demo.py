"""``lookalike creators demo``: a deterministic set of demo creators whose posts are real labelled photos.

Each creator gets one or two *niches* (labels of a labelled photo set, ``images/`` + ``labels.csv``)
and 6 to 40 posts, at least 80% of them photos of its niches and the rest photos of other labels,
plus audience facts drawn from seeded distributions (the constants below say which). The output is
one creator per line in the import schema of ``lookalike creators import``.

Sets and labels: a label counts only with at least ``MIN_IMAGES_PER_LABEL`` (20) images, so a
niche has enough photos for 6-40 posts; sets without such a label are skipped and reported
(``sop_subset``: product ids of 1-10 photos; ``fashion``: unlabelled). Labels are namespaced by
the set folder's name (``corel1k/beaches``) so two sets cannot merge a niche by accident.

Held-out queries: ``holdout`` of each label's images (at least one) are never used as a post.
They go to ``<out stem>.queries.csv`` (``path,label``) for an evaluation to query with, and each
creator's niches to ``<out stem>.niches.csv`` (``platform,userId,niches``; niches joined by ``|``).
Image paths in all three files are relative to the output's folder where the image lies inside it,
else absolute.

Determinism: the same arguments give byte-identical files. Images are taken in sorted path order;
the hold-out draw uses ``numpy.random.default_rng(seed)`` and creator i uses
``default_rng([seed, i])``, so the first N creators of a larger demo are the same as a demo of N.
Dates are relative to ``reference_date`` (default ``REFERENCE_DATE``, a fixed day, not today), not
to the clock.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from ..errors import InvalidParameter
from ..service.creators.dictionaries import Locations, fold
from ..service.creators.platforms import INSTAGRAM, TIKTOK
from .datasets import datasets_root, load_labels

MIN_IMAGES_PER_LABEL = 20
MAX_CREATORS = 100_000
#: Day the post dates count back from (00:00 UTC): fixed so a demo never depends on the clock.
REFERENCE_DATE = datetime(2025, 6, 30, tzinfo=UTC)
HISTORY_DAYS = 548  # posts spread over the last 18 months
POSTS_RANGE = (6, 40)  # inclusive
OFF_NICHE_SHARE = (0.10, 0.20)  # uniform per creator; capped so niches keep >= 80% of posts
ONE_NICHE_P = 0.6
FAKE_HOST = "https://example.invalid"  # RFC 2606: never resolves

#: Followers: log-normal, median 25k, clipped to [1k, 50M] (creator-platform catalogues skew to
#: micro-influencers). Engagement rate: Beta(2, b) scaled by (followers / 25k) ** -0.1, so bigger
#: accounts engage a little less; b gives a mean of about 3.5% on Instagram and 7% on TikTok.
FOLLOWERS_MEDIAN, FOLLOWERS_SIGMA, FOLLOWERS_CLIP = 25_000, 1.4, (1_000, 50_000_000)
ENGAGEMENT_BETA = {INSTAGRAM: (2.0, 55.0), TIKTOK: (2.0, 26.0)}
VIDEO_SHARE = {INSTAGRAM: 0.25, TIKTOK: 0.9}
HIDDEN_COMMENTS_P = 0.05
BRAND_ACCOUNT_P = 0.08
HAS_EMAIL_P = 0.45
GENDERS = (("MALE", 0.45), ("FEMALE", 0.45), (None, 0.10))
AGE_GROUPS = (("13-17", 0.05), ("18-24", 0.30), ("25-34", 0.33), ("35-44", 0.15), ("45-64", 0.07),
              ("65+", 0.02), (None, 0.08))  # fmt: skip
#: Creator markets: (ISO 3166-1 code, weight, main language). A creator lives in a city of its
#: market (80%), or only its country is known (10%), or nothing (10%); it speaks the market's
#: language (80%), English (12%), or its language is unknown.
MARKETS = (("US", 30, "en"), ("BR", 10, "pt"), ("IN", 9, "hi"), ("GB", 8, "en"), ("DE", 6, "de"),
           ("CA", 5, "en"), ("AU", 4, "en"), ("FR", 5, "fr"), ("ES", 4, "es"), ("IT", 4, "it"),
           ("MX", 5, "es"), ("ID", 4, "id"), ("JP", 3, "ja"), ("TR", 3, "tr"))  # fmt: skip
#: Fictional brands (names of companies from fiction, so no real brand is implied).
BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Soylent", "Cyberdyne", "Tyrell", "Vandelay",
          "Wonka", "Stark Industries", "Wayne Enterprises", "Oscorp", "Pied Piper", "Gringotts", "Monarch")
FIRST_NAMES = {
    "MALE": ("Liam", "Noah", "Mateo", "Arjun", "Lucas", "Kenji", "Omar", "Felix", "Diego", "Ethan", "Luca", "Rafael"),
    "FEMALE": ("Emma", "Olivia", "Sofia", "Priya", "Mia", "Yuki", "Amara", "Lena", "Camila", "Chloe", "Giulia", "Ana"),
}
LAST_NAMES = ("Smith", "Silva", "Sharma", "Müller", "Martin", "García", "Rossi", "Tanaka", "Yilmaz", "Brown",
              "Santos", "Wilson", "Kumar", "Schmidt", "Lopez", "Dubois", "Nguyen", "Walker", "Costa", "Fischer")


@dataclass(frozen=True)
class DemoReport:
    """What ``build_demo`` wrote.

    Attributes:
        out, queries, niches: the JSONL file and its two sidecars (see the module docstring).
        creators, instagram, tiktok: creator counts. posts: posts written.
        post_images: distinct images used as posts. held_out: query photos never used as posts.
        labels: niche labels used (``set/label``). sets: the sets used. skipped: ``"set: reason"``.
    """

    out: Path
    queries: Path
    niches: Path
    creators: int
    instagram: int
    tiktok: int
    posts: int
    post_images: int
    held_out: int
    labels: tuple[str, ...]
    sets: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class _Pool:
    """Post images per label (sorted) and held-out query images per label (sorted)."""

    posts: dict[str, list[Path]]
    queries: dict[str, list[Path]]
    sets: tuple[str, ...]
    skipped: tuple[str, ...]


def sidecar_paths(out: Path) -> tuple[Path, Path]:
    """``(queries.csv, niches.csv)`` beside ``out``: ``demo.jsonl`` -> ``demo.queries.csv``, ``demo.niches.csv``."""
    return out.with_name(out.stem + ".queries.csv"), out.with_name(out.stem + ".niches.csv")


def default_image_dirs() -> list[Path]:
    """Labelled sets (folders with ``labels.csv``) in ``datasets.datasets_root()``
    (``$LOOKALIKE_DATASETS``, else ``shared/datasets`` beside the repository or the cwd)."""
    root = datasets_root()
    return sorted(p for p in root.iterdir() if (p / "labels.csv").is_file()) if root is not None else []


def packaged_photo_set(folder: Path) -> Path:
    """Write ``folder/labels.csv`` listing the photos installed packages ship (``lookalike.demo``),
    each labelled by its source and folder (``mvtb/campus``, ``skimage``), and return ``folder``.

    The labelled set of last resort, so ``creators demo`` runs on a fresh clone without
    ``../shared``: paths are absolute (``load_labels`` joins them unchanged), and only labels with
    ``MIN_IMAGES_PER_LABEL`` photos become niches, so the demo is small (two niches with today's
    packages) and its evaluation figures mean little. Raises ``OSError`` if ``folder`` is not writable.
    """
    from ..demo import demo_photos

    rows = [(str(path), "/".join(str(tags[k]) for k in ("source", "folder") if k in tags), "")
            for path, tags in demo_photos()]
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / "labels.csv", _csv(("path", "label", "split"), rows))
    return folder


def build_demo(
    image_dirs: Sequence[Path],
    out: Path,
    creators: int,
    seed: int,
    holdout: float = 0.1,
    platform_mix: float = 0.5,
    reference_date: datetime = REFERENCE_DATE,
) -> DemoReport:
    """Write ``creators`` demo creators to ``out`` (JSONL) and the two sidecars, atomically.

    Args:
        image_dirs: labelled sets (``images/`` + ``labels.csv``, header ``path,label,split``).
        creators: 1 to ``MAX_CREATORS``. seed: a non-negative integer.
        holdout: share of each label's images held out as queries, 0 to 0.5.
        platform_mix: probability that a creator is on Instagram (else TikTok), 0 to 1.
        reference_date: post dates fall in the 18 months before it (timezone-aware).

    Raises:
        InvalidParameter: an argument out of range (the message names it), a folder without
            ``labels.csv``, or no set with a label of at least ``MIN_IMAGES_PER_LABEL`` images.
    """
    _check_args(creators, seed, holdout, platform_mix, reference_date)
    out = Path(out).resolve()
    pool = _pool(image_dirs, holdout, np.random.default_rng(seed))
    locations = Locations.load()
    labels = sorted(pool.posts)
    records, niche_rows, user_ids = [], [], set()
    for i in range(creators):
        creator, niches = _creator(i, np.random.default_rng([seed, i]), labels, pool.posts, locations, user_ids,
                                   platform_mix, reference_date, out.parent)
        records.append(creator)
        niche_rows.append((creator["platform"], creator["userId"], "|".join(niches)))
    queries_path, niches_path = sidecar_paths(out)
    query_rows = [(_portable(p, out.parent), label) for label in labels for p in pool.queries[label]]
    _write_atomic(out, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in records))
    _write_atomic(queries_path, _csv(("path", "label"), query_rows))
    _write_atomic(niches_path, _csv(("platform", "userId", "niches"), niche_rows))
    posts = [post for c in records for post in c["posts"]]
    instagram = sum(c["platform"] == INSTAGRAM for c in records)
    return DemoReport(
        out=out, queries=queries_path, niches=niches_path, creators=creators, instagram=instagram,
        tiktok=creators - instagram, posts=len(posts), post_images=len({p["image_path"] for p in posts}),
        held_out=len(query_rows), labels=tuple(labels), sets=pool.sets, skipped=pool.skipped,
    )  # fmt: skip


def read_queries(out: Path) -> list[tuple[Path, str]]:
    """The held-out query photos of the demo written to ``out``: (absolute path, ``set/label``), file order."""
    queries, _ = sidecar_paths(Path(out).resolve())
    with queries.open(newline="", encoding="utf-8") as fh:
        return [(queries.parent / row["path"], row["label"]) for row in csv.DictReader(fh)]


def read_niches(out: Path) -> dict[tuple[str, str], tuple[str, ...]]:
    """Each demo creator's niches: ``(platform, userId) -> ("corel1k/beaches", ...)``."""
    _, niches = sidecar_paths(Path(out).resolve())
    with niches.open(newline="", encoding="utf-8") as fh:
        return {(row["platform"], row["userId"]): tuple(row["niches"].split("|")) for row in csv.DictReader(fh)}


def _check_args(creators: int, seed: int, holdout: float, platform_mix: float, reference_date: datetime) -> None:
    if isinstance(creators, bool) or not isinstance(creators, int) or not 1 <= creators <= MAX_CREATORS:
        raise InvalidParameter(f"creators: must be an integer from 1 to {MAX_CREATORS}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidParameter("seed: must be a non-negative integer")
    if not 0 <= holdout <= 0.5:
        raise InvalidParameter("holdout: must be between 0 and 0.5")
    if not 0 <= platform_mix <= 1:
        raise InvalidParameter("platform_mix: must be between 0 and 1")
    if reference_date.tzinfo is None:
        raise InvalidParameter("reference_date: must carry a timezone (e.g. UTC)")


def _pool(image_dirs: Sequence[Path], holdout: float, rng: np.random.Generator) -> _Pool:
    by_label: dict[str, list[Path]] = {}
    sets, skipped = [], []
    for folder in sorted({Path(d).resolve() for d in image_dirs}):
        if not (folder / "labels.csv").is_file():
            raise InvalidParameter(f"images: {folder} has no labels.csv (expected images/ and labels.csv "
                                   "with header path,label,split)")
        groups: dict[str, list[Path]] = {}
        for row in load_labels(folder):
            if row.label:
                groups.setdefault(f"{folder.name}/{row.label}", []).append(row.path.resolve())
        kept = {label: sorted(paths) for label, paths in groups.items() if len(paths) >= MIN_IMAGES_PER_LABEL}
        if not kept:
            why = "unlabelled" if not groups else f"no label with at least {MIN_IMAGES_PER_LABEL} images"
            skipped.append(f"{folder.name}: {why}")
            continue
        if any(label in by_label for label in kept):
            raise InvalidParameter(f"images: two sets are named '{folder.name}'")
        by_label.update(kept)
        sets.append(folder.name)
    if not by_label:
        raise InvalidParameter(f"images: no labelled set with a label of at least {MIN_IMAGES_PER_LABEL} images "
                               f"among {[str(d) for d in image_dirs]}")
    posts, queries = {}, {}
    for label in sorted(by_label):
        paths = by_label[label]
        order = rng.permutation(len(paths))
        k = max(1, round(holdout * len(paths))) if holdout > 0 else 0
        queries[label] = sorted(paths[j] for j in order[:k])
        posts[label] = sorted(paths[j] for j in order[k:])
    return _Pool(posts=posts, queries=queries, sets=tuple(sets), skipped=tuple(skipped))


def _pick(rng: np.random.Generator, options: Sequence[tuple[object, float]]) -> object:
    weights = np.array([w for _, w in options], dtype=float)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


def _creator(
    i: int, rng: np.random.Generator, labels: list[str], posts: dict[str, list[Path]], locations: Locations,
    user_ids: set[str], platform_mix: float, reference_date: datetime, base: Path,
) -> tuple[dict, tuple[str, ...]]:  # fmt: skip
    platform = INSTAGRAM if rng.random() < platform_mix else TIKTOK
    n_niches = 1 if len(labels) == 1 or rng.random() < ONE_NICHE_P else 2
    niches = tuple(labels[j] for j in sorted(rng.choice(len(labels), size=n_niches, replace=False)))
    user_id = _user_id(rng, user_ids)
    account_type = "brand" if rng.random() < BRAND_ACCOUNT_P else "creator"
    gender = _pick(rng, GENDERS) if account_type == "creator" else None  # a brand has no gender or age
    age_group = _pick(rng, AGE_GROUPS) if account_type == "creator" else None
    names = FIRST_NAMES[gender or ("MALE", "FEMALE")[int(rng.integers(2))]]
    first = names[int(rng.integers(len(names)))]
    last = LAST_NAMES[int(rng.integers(len(LAST_NAMES)))]
    niche_word = niches[0].split("/", 1)[1].replace("_", " ")
    full_name = f"{last} {niche_word.title()}" if account_type == "brand" else f"{first} {last}"
    username = f"{_slug(full_name)}{i}"
    followers = int(np.clip(round(FOLLOWERS_MEDIAN * math.exp(rng.normal(0, FOLLOWERS_SIGMA))), *FOLLOWERS_CLIP))
    a, b = ENGAGEMENT_BETA[platform]
    engagement = float(np.clip(rng.beta(a, b) * (followers / FOLLOWERS_MEDIAN) ** -0.1, 0.001, 0.5))
    location_ids, language = _audience(rng, locations)
    brands = [BRANDS[j] for j in rng.choice(len(BRANDS), size=int(rng.choice([0, 0, 1, 1, 2, 3])), replace=False)]
    creator = {
        "platform": platform, "userId": user_id, "username": username, "fullName": full_name,
        "profilePicture": f"{FAKE_HOST}/{platform}/{user_id}/avatar.jpg", "followersCount": followers,
        "engagementRate": round(engagement, 5), "accountCategory": niche_word[:1].upper() + niche_word[1:],
        "accountType": account_type, "gender": gender, "ageGroup": age_group,
        "locations": location_ids, "language": language, "hasEmail": bool(rng.random() < HAS_EMAIL_P),
        "brands": brands,
    }  # fmt: skip
    images = _post_images(rng, niches, labels, posts)
    creator["posts"] = _posts(rng, creator, images, reference_date, base)
    return creator, niches


def _user_id(rng: np.random.Generator, taken: set[str]) -> str:
    while True:  # numeric ids like the platforms'; a repeat (odds ~1e-6 per creator) draws again
        user_id = str(int(rng.integers(10**9, 10**10)))
        if user_id not in taken:
            taken.add(user_id)
            return user_id


def _slug(text: str) -> str:
    return fold(text).replace(" ", ".")


def _audience(rng: np.random.Generator, locations: Locations) -> tuple[list[int], str | None]:
    code, _, market_language = MARKETS[int(_pick(rng, [(j, m[1]) for j, m in enumerate(MARKETS)]))]
    country = locations.by_code(code)
    cities = sorted(i for i in locations.expand([country.id]) if locations.get(i).type == "city")
    where = rng.random()
    if where < 0.8 and cities:
        location_ids = [cities[int(rng.integers(len(cities)))]]
    elif where < 0.9:
        location_ids = [country.id]
    else:
        location_ids = []
    language = _pick(rng, ((market_language, 0.80), ("en", 0.12), (None, 0.08)))
    return location_ids, language


def _post_images(rng: np.random.Generator, niches: tuple[str, ...], labels: list[str],
                 posts: dict[str, list[Path]]) -> list[Path]:
    """6..40 distinct images, >= 80% from the niches, in drawing order."""
    n_posts = int(rng.integers(POSTS_RANGE[0], POSTS_RANGE[1] + 1))
    n_off = round(n_posts * rng.uniform(*OFF_NICHE_SHARE))
    in_pool = [p for label in niches for p in posts[label]]
    off_pool = [p for label in labels if label not in niches for p in posts[label]]
    n_in = min(n_posts - n_off, len(in_pool))
    n_off = min(n_off, n_in // 4, len(off_pool))
    picked = [in_pool[j] for j in rng.choice(len(in_pool), size=n_in, replace=False)]
    picked += [off_pool[j] for j in rng.choice(len(off_pool), size=n_off, replace=False)] if n_off else []
    return picked


def _posts(rng: np.random.Generator, creator: dict, images: list[Path], reference_date: datetime,
           base: Path) -> list[dict]:
    platform, user_id = creator["platform"], creator["userId"]
    # the newest post is days to months old (some creators went quiet); the rest spread back to 18 months
    newest = min(rng.exponential(30.0), 365.0)
    ages = np.concatenate([[newest], rng.uniform(newest, HISTORY_DAYS, size=len(images) - 1)])
    rows = []
    for k, (image, age) in enumerate(zip(images, ages)):
        post_id = str(int(user_id) * 1000 + k)
        when = (reference_date - timedelta(days=float(age))).astimezone(UTC).replace(microsecond=0)
        video = bool(rng.random() < VIDEO_SHARE[platform])
        url = (f"{FAKE_HOST}/{INSTAGRAM}/p/{post_id}/" if platform == INSTAGRAM
               else f"{FAKE_HOST}/{TIKTOK}/@{creator['username']}/video/{post_id}")
        rows.append({
            "id": post_id, "url": url, "thumbnail": f"{FAKE_HOST}/{platform}/thumbs/{post_id}.jpg",
            "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "type": "video" if video else "image",
            "stats": _stats(rng, platform, creator["followersCount"], creator["engagementRate"]),
            "image_path": _portable(image, base),
        })  # fmt: skip
    rows.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)  # newest first, like the platforms
    return rows


def _stats(rng: np.random.Generator, platform: str, followers: int, engagement: float) -> dict[str, int]:
    likes = round(followers * engagement * rng.lognormal(0.0, 0.6))
    hidden = rng.random() < HIDDEN_COMMENTS_P
    stats = {"likesCount": likes, "commentsCount": -1 if hidden else round(likes * rng.uniform(0.01, 0.06))}
    if platform == TIKTOK:
        stats["sharesCount"] = round(likes * rng.uniform(0.005, 0.05))
        stats["playsCount"] = round(likes * rng.uniform(6.0, 25.0))
        stats["collectsCount"] = round(likes * rng.uniform(0.01, 0.08))
    return stats


def _portable(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (POSIX form) when it lies inside it, else absolute."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _csv(header: tuple[str, ...], rows: list[tuple]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
