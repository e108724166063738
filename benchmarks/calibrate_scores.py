"""Recompute the cosine -> score calibration knots of a model from generic photos.

Uses only photos bundled with installed packages (scikit-image's ``skimage/data`` and
``mvtb-data``), never the evaluation sets, so the knots are not tuned to any benchmark.

Image knots (score meaning: > 0.9 near-duplicate / same item, 0.7-0.9 similar, below
unrelated):
    cos 0                                       -> 0.0
    median cos of unrelated photo pairs         -> 0.3
    99th percentile of unrelated pairs          -> 0.7   (the most similar unrelated pairs)
    5th percentile of (photo, augmented copy)   -> 0.9   (augmented: up to 10 % crop,
                                                          resize 50-100 %, colour jitter
                                                          +-10 %, re-JPEG at quality 40)
    cos 1                                       -> 1.0
Text knots (a hand-written caption such as "a cat" for each photo; query text vs the
photo's ``semantic`` embedding, or ``visual`` for shared-space models):
    cos 0                                       -> 0.0
    median of non-matching (photo, caption)     -> 0.3
    95th percentile of non-matching             -> 0.5
    99th percentile of non-matching             -> 0.7   (above: more similar than 99 % of
                                                          unrelated captions, a likely match)
    90th percentile of matching                 -> 0.9   (a confident match)
    cos 1                                       -> 1.0
The lower knots come from the non-matching (null) distribution only, because with ConSE
the matching cosines overlap it widely (captions outside the ImageNet vocabulary score
like unrelated ones), so a matching median would not be a stable anchor.
Related-but-different photo pairs (other frames of a sequence, another view of the same
building) are scored with the fitted map as a sanity check; they should mostly land in
the "similar" band.

Usage:
    python benchmarks/calibrate_scores.py [--model efficientnet-lite0-multilingual] [--cache-dir DIR] [--languages fr,de,es,zh,ru]
Prints the percentiles and a ScoreCalibration literal to paste into the model module.
"""

from __future__ import annotations

import argparse
import io
import itertools
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

# One photo per scene: pairs among these count as unrelated. Values are captions for the
# text calibration (None: no caption, the photo has no searchable subject).
SKIMAGE_PHOTOS = {
    "astronaut.png": "an astronaut",
    "chelsea.png": "a cat",
    "coffee.png": "a cup of coffee",
    "rocket.jpg": "a rocket on a launch pad",
    "motorcycle_left.png": "a motorcycle",
    "retina.jpg": None,
    "hubble_deep_field.jpg": "stars in space",
}
MVTB_PHOTOS = {
    "58060.png": "a basket of grain",
    "building2-1.png": "an apartment building",
    "butterfly.jpg": "a butterfly",
    "castle.png": "a tourist information sign",
    "church.png": "a church",
    "eiffel-1.png": "the Eiffel Tower",
    "flowers1.png": "tulips",
    "greenscreen.png": None,
    "image3.jpg": "a street with people and a cart",
    "lab-scene.png": "a robot arm in a lab",
    "lena.png": "a woman wearing a hat",
    "monalisa.png": "a painting of a woman",
    "notre-dame.png": "a cathedral",
    "parks.png": "a path in a park",
    "penguins.png": None,
    "road.png": "an empty road",
    "rocks2-l.png": "rocks",
    "roof.png": None,
    "street.png": "a city street",
    "tomato_124.png": "tomatoes",
    "walls-l.png": "a brick house",
    "campus/P1070491.png": None,
    "mosaic/aerial2-001.png": "an aerial photo of a city",
    "seq/im.001.png": None,
    "calibration/left01.jpg": None,
}
# The captions in other languages (the author's translations), for ``--language``: the text
# knots of queries that are not English (they take another route through the text space).
TRANSLATED_CAPTIONS = {
    "fr": ["un astronaute", "un chat", "une tasse de café", "une fusée sur un pas de tir", "une moto",
           "des étoiles dans l'espace", "un panier de céréales", "un immeuble d'habitation", "un papillon",
           "un panneau d'information touristique", "une église", "la tour Eiffel", "des tulipes",
           "une rue avec des gens et une charrette", "un bras robotique dans un laboratoire",
           "une femme portant un chapeau", "un tableau d'une femme", "une cathédrale", "un chemin dans un parc",
           "une route vide", "des rochers", "une rue de ville", "des tomates", "une maison en briques",
           "une photo aérienne d'une ville"],
    "de": ["ein Astronaut", "eine Katze", "eine Tasse Kaffee", "eine Rakete auf der Startrampe", "ein Motorrad",
           "Sterne im Weltall", "ein Korb mit Getreide", "ein Wohnhaus", "ein Schmetterling",
           "ein Schild mit Touristeninformationen", "eine Kirche", "der Eiffelturm", "Tulpen",
           "eine Straße mit Menschen und einem Karren", "ein Roboterarm in einem Labor",
           "eine Frau mit Hut", "ein Gemälde einer Frau", "eine Kathedrale", "ein Weg in einem Park",
           "eine leere Straße", "Felsen", "eine Stadtstraße", "Tomaten", "ein Backsteinhaus",
           "ein Luftbild einer Stadt"],
    "zh": ["宇航员", "一只猫", "一杯咖啡", "发射台上的火箭", "一辆摩托车", "太空中的星星", "一篮谷物", "一栋公寓楼",
           "一只蝴蝶", "旅游信息标志", "一座教堂", "埃菲尔铁塔", "郁金香", "有行人和手推车的街道",
           "实验室里的机械臂", "戴帽子的女人", "一幅女人的画", "一座大教堂", "公园里的小路", "空荡荡的道路",
           "岩石", "城市街道", "西红柿", "砖房", "城市航拍照片"],
    "ru": ["космонавт", "кошка", "чашка кофе", "ракета на стартовой площадке", "мотоцикл", "звёзды в космосе",
           "корзина с зерном", "жилой дом", "бабочка", "туристический информационный знак", "церковь",
           "Эйфелева башня", "тюльпаны", "улица с людьми и тележкой", "роботизированная рука в лаборатории",
           "женщина в шляпе", "картина с женщиной", "собор", "дорожка в парке", "пустая дорога", "скалы",
           "городская улица", "помидоры", "кирпичный дом", "аэрофотоснимок города"],
    "es": ["un astronauta", "un gato", "una taza de café", "un cohete en la plataforma de lanzamiento", "una moto",
           "estrellas en el espacio", "una cesta de grano", "un edificio de apartamentos", "una mariposa",
           "un cartel de información turística", "una iglesia", "la torre Eiffel", "tulipanes",
           "una calle con gente y un carro", "un brazo robótico en un laboratorio", "una mujer con sombrero",
           "un cuadro de una mujer", "una catedral", "un camino en un parque", "una carretera vacía", "rocas",
           "una calle de la ciudad", "tomates", "una casa de ladrillo", "una foto aérea de una ciudad"],
}

# Groups of different photos of one scene or subject (mvtb-data): the sanity check.
MVTB_RELATED = [
    ["building2-1.png", "building2-2.png", "building2-3.png"],
    ["castle.png", "castle2.png"],
    ["eiffel-1.png", "eiffel-2.png"],
    [f"flowers{i}.png" for i in range(1, 10)],
    ["tomato_124.png", "tomato_14.png", "tomato_35.png", "tomato_54.png"],
    ["campus/P1070491.png", "campus/P1070493.png", "campus/P1070496.png", "campus/P1070500.png"],
    ["seq/im.001.png", "seq/im.004.png", "seq/im.008.png"],
    ["mosaic/aerial2-001.png", "mosaic/aerial2-004.png", "mosaic/aerial2-008.png"],
]


def photo_dirs() -> tuple[Path, Path]:
    import mvtbdata
    import skimage

    return Path(skimage.__file__).parent / "data", Path(mvtbdata.__file__).parent / "images"


def load(path: Path) -> Image.Image:
    im = Image.open(path)
    im.load()
    return im.convert("RGB")


def augment(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A near-duplicate: crop away up to 10 % per axis, rescale, jitter colour, JPEG q=40."""
    w, h = im.size
    cx, cy = rng.uniform(0, 0.10) * w, rng.uniform(0, 0.10) * h
    left, top = rng.uniform(0, cx), rng.uniform(0, cy)
    im = im.crop((round(left), round(top), round(w - (cx - left)), round(h - (cy - top))))
    scale = rng.uniform(0.5, 1.0)
    im = im.resize((max(32, round(im.width * scale)), max(32, round(im.height * scale))))
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhancer(im).enhance(rng.uniform(0.9, 1.1))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=40)
    return load(buf)


def pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q))


def describe(name: str, x: np.ndarray) -> None:
    qs = (0, 5, 25, 50, 75, 95, 99, 100)
    print(f"{name:32s} n={len(x):4d}  " + "  ".join(f"p{q}={pct(x, q):.3f}" for q in qs))


def knots(points: list[tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(cosine, score) points in increasing score order -> knots rounded to 2 decimals.

    Where two distributions overlap a later cosine can fall at or below an earlier one;
    it is then nudged just above it so cosines stay strictly increasing.
    """
    cos, sc = [round(points[0][0], 2)], [points[0][1]]
    for c, s in points[1:]:
        c = min(round(c, 2), 1.0)
        if c <= cos[-1]:
            print(f"warning: knot cos={c} (score {s}) is not above {cos[-1]}; nudged")
            c = round(cos[-1] + 0.02, 2)
        cos.append(c)
        sc.append(s)
    return tuple(cos), tuple(sc)


def score(x: np.ndarray, cal: tuple[tuple[float, ...], tuple[float, ...]]) -> np.ndarray:
    return np.interp(x, cal[0], cal[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet-lite0-multilingual")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--augments", type=int, default=5, help="augmented copies per photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--languages", default="", help="also fit text knots on the captions in these languages, "
                    f"pooled (of {', '.join(TRANSLATED_CAPTIONS)})")
    args = ap.parse_args()

    from lookalike.config import Settings
    from lookalike.models import load_model

    model = load_model(args.model, args.cache_dir or Settings.from_env().model_cache_dir)
    sk, mv = photo_dirs()
    photos = {sk / k: v for k, v in SKIMAGE_PHOTOS.items()} | {mv / k: v for k, v in MVTB_PHOTOS.items()}
    images = [load(p) for p in photos]
    base = model.embed_images(images)
    vis = base.visual

    rng = np.random.default_rng(args.seed)
    aug = [augment(im, rng) for im in images for _ in range(args.augments)]
    aug_vis = model.embed_images(aug).visual
    dup = np.einsum("nd,nd->n", np.repeat(vis, args.augments, axis=0), aug_vis)
    i, j = np.triu_indices(len(images), k=1)
    unrelated = (vis @ vis.T)[i, j]

    related = []
    for group in MVTB_RELATED:
        v = model.embed_images([load(mv / f) for f in group]).visual
        related += [float(v[a] @ v[b]) for a, b in itertools.combinations(range(len(group)), 2)]
    related = np.asarray(related)

    print(f"model {model.info.model_id}; {len(images)} photos, {len(aug)} augmented copies")
    describe("near-duplicate (photo, aug)", dup)
    describe("unrelated photo pairs", unrelated)
    describe("related photo pairs (check)", related)
    image_cal = knots(
        [(0.0, 0.0), (pct(unrelated, 50), 0.3), (pct(unrelated, 99), 0.7),
         (pct(dup, 5), 0.9), (1.0, 1.0)]
    )
    print(f"\nimage calibration: ScoreCalibration(cosines={image_cal[0]}, scores={image_cal[1]})")
    for name, x in (("near-dup", dup), ("unrelated", unrelated), ("related", related)):
        s = score(x, image_cal)
        print(f"  {name:10s} scores: >0.9 {np.mean(s > 0.9):5.1%}  0.7-0.9 "
              f"{np.mean((s >= 0.7) & (s <= 0.9)):5.1%}  <0.7 {np.mean(s < 0.7):5.1%}")

    if model.info.text_dim is None:
        return
    captioned = [(n, c) for n, c in enumerate(photos.values()) if c]
    img = base.visual if model.info.shared_space else base.semantic
    text_knots(model, img, captioned, "English")
    languages = [x for x in args.languages.split(",") if x]
    if languages:
        english = [c for _, c in captioned]
        assert all(len(TRANSLATED_CAPTIONS[lang]) == len(english) for lang in languages)
        pooled = [(n, TRANSLATED_CAPTIONS[lang][k]) for lang in languages for k, (n, _) in enumerate(captioned)]
        text_knots(model, img, pooled, "+".join(languages), per_language=len(english))


def text_knots(model, img: np.ndarray, captioned: list, name: str, per_language: int | None = None) -> None:
    """Fit and print the text knots for (photo index, caption) pairs; ``per_language``: the
    pairs come in blocks of that many, one per language, and only a block's own captions count
    as the non-matching ones of its photos."""
    per_language = per_language or len(captioned)
    matches, nonmatches, firsts = [], [], []
    for start in range(0, len(captioned), per_language):
        block = captioned[start : start + per_language]
        idx = np.asarray([n for n, _ in block])
        t = model.embed_texts([c for _, c in block])
        sims = img[idx] @ t.T  # rows photos, columns captions
        matches.append(np.diag(sims))
        nonmatches.append(sims[~np.eye(len(idx), dtype=bool)])
        firsts.append((sims > np.diag(sims)[None, :]).sum(axis=0) == 0)
    match, nonmatch = np.concatenate(matches), np.concatenate(nonmatches)
    print(f"\ncaptions: {name}")
    describe("text: matching caption", match)
    describe("text: other photos' captions", nonmatch)
    print(f"text: caption finds its photo first for {np.mean(np.concatenate(firsts)):.0%} of captions")
    text_cal = knots(
        [(0.0, 0.0), (pct(nonmatch, 50), 0.3), (pct(nonmatch, 95), 0.5),
         (pct(nonmatch, 99), 0.7), (pct(match, 90), 0.9), (1.0, 1.0)]
    )
    print(f"text calibration: ScoreCalibration(cosines={text_cal[0]}, scores={text_cal[1]})")
    for name, x in (("matching", match), ("non-match", nonmatch)):
        s = score(x, text_cal)
        print(f"  {name:10s} scores: >0.9 {np.mean(s > 0.9):5.1%}  0.7-0.9 "
              f"{np.mean((s >= 0.7) & (s <= 0.9)):5.1%}  0.5-0.7 "
              f"{np.mean((s >= 0.5) & (s < 0.7)):5.1%}  <0.5 {np.mean(s < 0.5):5.1%}")


if __name__ == "__main__":
    sys.exit(main())
