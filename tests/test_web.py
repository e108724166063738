"""The web page at ``/`` in a real browser: Debian's ``chromium`` driven by Playwright for Python,
against a real uvicorn server on a free loopback port, over a small library of real photos.

Skips (with the reason) where no Chromium or no Playwright is installed; ``.ci/run`` installs
Chromium, so CI runs them. On a failure the page's screenshot is written to
``$LOOKALIKE_WEB_ARTIFACTS`` (else a temporary folder) and its path printed. With
``LOOKALIKE_WEB_SCREENSHOTS=docs/screenshots`` the tests also write the README's screenshots.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageOps

from conftest import admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.config import Settings
from lookalike.demo import demo_photos
from lookalike.errors import ModelUnavailable
from lookalike.models.detector import u2netp_path
from lookalike.runtime import Runtime
from lookalike.service.creators.access import AccessService

API = "/api/v1/operators/image-search"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# The library: real photos that installed packages ship, tagged; ids hold "/" as folder imports make them.
KINDS = {
    "chelsea.png": "animal", "horse.png": "animal", "butterfly.jpg": "animal", "astronaut.png": "person",
    "coffee.png": "object", "rocket.jpg": "object", "motorcycle_left.png": "object", "church.jpg": "place",
    "castle.png": "place", "eiffel-1.png": "place", "eiffel-2.png": "place", "flowers1.png": "flower",
    "flowers2.png": "flower", "flowers4.png": "flower", "brick.png": "texture", "grass.png": "texture",
    "hubble_deep_field.jpg": "space", "moon.png": "space",
}
TIMEOUT_MS = 30_000


def _chromium() -> str:
    for name in (os.environ.get("LOOKALIKE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    reason = ("browser tests need Chromium: apt-get install -y chromium (.ci/run installs it), "
              "or set LOOKALIKE_CHROMIUM to a Chromium binary")
    if os.environ.get("CI"):  # CI installs it: a skip there would hide the page's tests
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real uvicorn server over ``runtime`` on a free loopback port, in a background thread."""

    def __init__(self, runtime: Runtime) -> None:
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=self.port,
                                                     log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


# -- the world --------------------------------------------------------------------------------------


def _augmented_cats() -> list[bytes]:
    """Copies of chelsea (a cat) a creator might post: crops, a flip, a small rotation."""
    cat = photo("chelsea")
    w, h = cat.size
    return [encode(x, quality=90) for x in (
        cat.crop((20, 10, w - 30, h - 20)), ImageOps.mirror(cat), cat.rotate(4, expand=False, fillcolor=(128, 128, 128)),
        cat.crop((0, 0, int(w * 0.85), int(h * 0.9))), cat.resize((w // 2, h // 2)),
    )]


PARIS, BERLIN = 2988507, 2950159  # GeoNames ids of the shipped locations dictionary


def _creator(uid: str, followers: int, images: list[bytes], now: float, locations: tuple[int, ...] = ()) -> dict:
    return {
        "locations": list(locations),
        "userId": uid, "username": uid, "fullName": f"Creator {uid}", "followersCount": followers,
        "engagementRate": 0.031, "accountCategory": "Pets", "gender": "FEMALE" if followers % 2 else "MALE",
        "posts": [{"id": f"{uid}-{i}", "url": f"https://example.invalid/p/{uid}-{i}", "created_at": now - 86400 * (i + 1),
                   "stats": {"likesCount": 100 + i, "commentsCount": 3}, "image_base64": b64(data)}
                  for i, data in enumerate(images)],
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory, models) -> Iterator[dict]:
    """A server with a general_search library ``photos``, an item_search library ``shop`` and
    Instagram / TikTok creators; the creators' rate limit is off (credits still count)."""
    runtime = Runtime.open(Settings(data_dir=tmp_path_factory.mktemp("web")), models=models)
    runtime.access = AccessService(runtime.tokens, interval_s=0.0)
    paths = {p.name: (p, tags) for p, tags in demo_photos()}
    missing = set(KINDS) - set(paths)
    assert not missing, f"photos missing from the installed packages: {missing}"
    items = []
    for name, kind in KINDS.items():
        path, tags = paths[name]
        with Image.open(path) as picture:
            width = picture.width
        items.append({"image_id": f"{tags['source']}/{name}", "image_base64": b64(path.read_bytes()),
                      "tags": {"kind": kind, "source": tags["source"], "width": width}})
    now = time.time()
    cats, others = _augmented_cats(), [encode(photo(n)) for n in ("astronaut", "coffee", "rocket")]
    instagram = [_creator(f"cat_lover_{i}", f, cats[i:i + 2] + others[:1], now, (PARIS,) if i < 2 else (BERLIN,))
                 for i, f in enumerate((5_000, 20_000, 80_000, 150_000, 600_000))]
    instagram += [_creator(f"space_fan_{i}", 90_000 + i, others, now) for i in range(3)]
    tiktok = [_creator(f"tt_cat_{i}", 10_000 * (i + 1), cats[i:i + 1], now) for i in range(5)]
    server = Server(runtime)
    with httpx.Client(base_url=server.url, timeout=120, headers=admin_headers(runtime)) as client:
        assert client.post(f"{API}/libraries", json={"library_name": "photos"}).status_code == 201
        r = client.post(f"{API}/libraries/photos/images", json={"images": items})
        assert r.status_code == 201, r.text
        for platform, lines in (("instagram", instagram), ("tiktok", tiktok)):
            r = client.post("/api/v1/creators/import", json={"platform": platform, "creators": lines})
            assert r.status_code == 200 and not r.json()["data"]["failed"], r.text
        try:
            u2netp_path()
            detector = True
            assert client.post(f"{API}/libraries", json={"library_name": "shop", "mode": "item_search"}).status_code == 201
            r = client.post(f"{API}/libraries/shop/images", json={"images": items[:3]})
            assert r.status_code == 201, r.text
        except ModelUnavailable:
            detector = False
    _, secret = runtime.tokens.create(1000 * 1000, "web test")
    yield {"url": server.url, "token": secret, "detector": detector}
    server.stop()
    runtime.close()


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright: pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        out = Path(os.environ.get("LOOKALIKE_WEB_ARTIFACTS") or tempfile.mkdtemp(prefix="lookalike-web-"))
        out.mkdir(parents=True, exist_ok=True)
        shot = out / f"{request.node.name}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot of the failed page: {shot}\njavascript errors: {errors}")
    context.close()
    assert not errors, f"javascript errors on the page: {errors}"


def _doc_shot(page, name: str, clip_selector: str | None = None) -> None:
    """Write a README screenshot when ``LOOKALIKE_WEB_SCREENSHOTS`` names a folder (PNG, palette
    colours so each stays well under 150 KB)."""
    folder = os.environ.get("LOOKALIKE_WEB_SCREENSHOTS")
    if not folder:
        return
    page.wait_for_timeout(300)
    data = page.locator(clip_selector).screenshot() if clip_selector else page.screenshot()
    picture = Image.open(io.BytesIO(data)).convert("RGB")
    picture.thumbnail((1000, 1000))
    Path(folder).mkdir(parents=True, exist_ok=True)
    picture.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(Path(folder) / f"{name}.png", optimize=True)


def _open(page, world, library: str = "photos") -> None:
    page.goto(world["url"] + "/")
    page.wait_for_selector(f"#library option[value='{library}']", state="attached")
    page.select_option("#library", library)
    page.wait_for_function("document.querySelector('#library-info').textContent.includes('images')")


def _cards(page) -> list[dict]:
    page.wait_for_selector("#results .card")
    return page.eval_on_selector_all("#results .card", """cards => cards.map(c => ({
        id: c.dataset.id, score: Number(c.querySelector('.score').textContent),
        tags: [...c.querySelectorAll('.tag')].map(t => t.textContent)}))""")


def _wait_for_search(page) -> None:
    page.wait_for_function("!document.querySelector('#go').disabled && !document.querySelector('#results[aria-busy]')")


def _file(name: str, data: bytes, mime: str) -> dict:
    return {"name": name, "mimeType": mime, "buffer": data}


# -- the tests ------------------------------------------------------------------------------------


def test_text_search_shows_a_thumbnail_grid_with_scores_and_tags(page, world):
    _open(page, world)
    assert "general_search" in page.text_content("#library-info") and "18 images" in page.text_content("#library-info")
    assert page.is_enabled("#text") and page.is_hidden("#text-note")
    page.fill("#text", "a cat")
    page.click("#go")
    _wait_for_search(page)
    cards = _cards(page)
    assert cards[0]["id"] == "skimage/chelsea.png", cards
    assert len(cards) == 12  # the default top_k
    assert [c["score"] for c in cards] == sorted((c["score"] for c in cards), reverse=True)
    assert "kind: animal" in cards[0]["tags"]
    # thumbnails, not originals: every image comes from the thumbnail route and has loaded
    page.wait_for_function(
        "[...document.querySelectorAll('#results img')].slice(0, 6).every(i => i.complete && i.naturalWidth > 0)")
    src = page.get_attribute("#results .card img", "src")
    assert "/thumbnail?size=320" in src and "skimage%2Fchelsea.png" in src
    assert page.evaluate("document.querySelector('#results img').naturalWidth") <= 320
    _doc_shot(page, "text-search")


def test_image_upload_is_downscaled_in_the_browser_and_finds_the_photo(page, world):
    _open(page, world)
    big = photo("coffee").resize((3000, 2000))  # a phone-sized photo: 6 Mpx, several MB as PNG
    data = encode(big, "PNG")
    assert len(data) > 2_000_000
    sent: list[int] = []
    page.on("request", lambda r: sent.append(len(r.post_data_buffer or b"")) if r.url.endswith("/search/by-image") else None)
    page.set_input_files("#image", files=[_file("big.png", data, "image/png")])
    page.wait_for_selector("#preview:not([hidden])")
    assert "downscaled in the browser from 3000×2000" in page.text_content("#preview-info")
    assert "1600×1067" in page.text_content("#preview-info")
    page.fill("#top-k", "5")
    page.click("#go")
    _wait_for_search(page)
    cards = _cards(page)
    assert len(cards) == 5 and cards[0]["id"] == "skimage/coffee.png" and cards[0]["score"] > 0.9
    assert "same item" in page.text_content("#results .card figcaption")
    assert sent and sent[0] < 1_000_000, sent  # the JPEG the canvas made, not the 2+ MB original


def test_drag_and_drop_and_paste_set_the_query_image(page, world):
    _open(page, world)
    for event in ("drop", "paste"):
        page.click("#clear-image") if page.is_visible("#clear-image") else None
        query = photo("rocket") if event == "drop" else photo("astronaut")
        handle = page.evaluate_handle("""async (b64) => {
            const blob = await (await fetch(`data:image/jpeg;base64,${b64}`)).blob();
            const dt = new DataTransfer();
            dt.items.add(new File([blob], 'q.jpg', {type: 'image/jpeg'}));
            return dt;
        }""", b64(encode(query)))
        if event == "drop":
            page.dispatch_event("#drop", "drop", {"dataTransfer": handle})
        else:
            page.evaluate("dt => document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt}))", handle)
        page.wait_for_selector("#preview:not([hidden])")
        page.click("#go")
        _wait_for_search(page)
        page.wait_for_function("t => document.querySelector('#results .card')?.dataset.id === t",
                               arg="skimage/rocket.jpg" if event == "drop" else "skimage/astronaut.png")


def test_filter_builder_and_validated_json_box(page, world):
    _open(page, world)
    page.click("#filter-box summary")
    page.click("#add-condition")
    row = page.locator("#conditions .condition").first
    row.locator("[name=field]").fill("kind")
    row.locator("[name=value]").fill("place")
    page.click("#add-condition")
    row2 = page.locator("#conditions .condition").nth(1)
    row2.locator("[name=field]").fill("width")
    row2.locator("[name=op]").select_option(">=")
    row2.locator("[name=value]").fill("600")
    row2.locator("[name=type]").select_option("number")
    written = json.loads(page.input_value("#tag-filter"))
    assert written == [{"field": "kind", "op": "=", "value": "place"}, {"field": "width", "op": ">=", "value": 600}]
    page.fill("#text", "a building")
    page.click("#go")
    _wait_for_search(page)
    cards = _cards(page)
    assert cards and all("kind: place" in c["tags"] for c in cards)
    widths = [int(t.split(": ")[1]) for c in cards for t in c["tags"] if t.startswith("width: ")]
    assert len(widths) == len(cards) and min(widths) >= 600
    _doc_shot(page, "filter")
    # A hand-edited box: invalid JSON is caught in the page, a bad operator by the server (400, its message shown)
    page.fill("#tag-filter", '[{"field": "kind", "op": "="')
    assert "not valid JSON" in page.text_content("#filter-error")
    page.click("#go")
    assert "tag_filter: not valid JSON" in page.text_content("#results .notice")
    page.fill("#tag-filter", '[{"field": "kind", "op": "==", "value": "place"}]')
    page.click("#go")
    page.wait_for_function("document.querySelector('#results .notice')?.textContent.startsWith('400')")
    message = page.text_content("#results .notice")
    assert message.startswith("400: tag_filter[0].op: unknown operator '=='"), message
    # the examples fill the box with a filter that works on this library
    page.select_option("#filter-examples", index=1)
    assert json.loads(page.input_value("#tag-filter"))[0]["field"] in {"kind", "source"}


def test_result_opens_with_more_like_this(page, world):
    _open(page, world)
    page.fill("#text", "a tower")
    page.click("#go")
    _wait_for_search(page)
    page.click("#results .card[data-id='mvtb/eiffel-1.png']")
    page.wait_for_selector("#detail[open]")
    assert page.text_content("#detail-title") == "mvtb/eiffel-1.png"
    assert "/thumbnail?size=768" in page.get_attribute("#detail-img", "src")
    assert "place" in page.text_content("#detail-tags")
    page.click("#more-like-this")
    page.wait_for_selector("#detail:not([open])", state="attached")
    page.wait_for_function("document.querySelector('#results-title').textContent.includes('like mvtb/eiffel-1.png')")
    cards = _cards(page)
    ids = [c["id"] for c in cards]
    assert "mvtb/eiffel-1.png" not in ids and ids[0] == "mvtb/eiffel-2.png", ids
    assert "more like mvtb/eiffel-1.png" in page.text_content("#preview-info")


def test_segments_are_drawn_and_chosen(page, world):
    if not world["detector"]:
        pytest.skip("needs the U²-Netp item detector weights (scripts/setup.sh installs them)")
    _open(page, world)
    scene = photo("brick").resize((800, 600))
    scene.paste(photo("coffee").resize((300, 200)), (40, 80))
    scene.paste(photo("chelsea").resize((300, 228)), (460, 330))
    page.set_input_files("#image", files=[_file("scene.jpg", encode(scene), "image/jpeg")])
    page.check("#segments")
    page.fill("#top-k", "4")
    page.click("#go")
    _wait_for_search(page)
    page.wait_for_selector("#boxes rect")
    boxes = page.eval_on_selector_all("#boxes rect", "rs => rs.map(r => ['x','y','width','height'].map(k => +r.getAttribute(k)))")
    assert 2 <= len(boxes) <= 5, boxes
    tabs = page.locator("#segment-tabs button")
    assert tabs.count() == len(boxes) + 1 and "All items" in tabs.first.text_content()
    # the boxes lie over the pasted items (pixels of the image as sent: 800 x 600)
    centres = [(x + w / 2, y + h / 2) for x, y, w, h in boxes]
    assert any(40 <= cx <= 340 and 80 <= cy <= 280 for cx, cy in centres), boxes
    assert any(460 <= cx <= 760 and 330 <= cy <= 558 for cx, cy in centres), boxes
    # choosing an item: its tab, its box highlighted, its own results
    coffee = next(i for i, (cx, cy) in enumerate(centres) if 40 <= cx <= 340 and 80 <= cy <= 280)
    page.click(f"#segment-tabs button[data-segment='{coffee}']")
    assert page.get_attribute(f"#boxes rect[data-segment='{coffee}']", "class") == "chosen"
    assert f"for item {coffee + 1}" in page.text_content("#results-title")
    assert _cards(page)[0]["id"] == "skimage/coffee.png"
    _doc_shot(page, "segments")
    # clicking a box chooses it too
    cat = next(i for i, (cx, cy) in enumerate(centres) if 460 <= cx <= 760 and 330 <= cy <= 558)
    page.click(f"#boxes rect[data-segment='{cat}']", force=True)
    page.wait_for_function(f"document.querySelector('#results-title').textContent.includes('for item {cat + 1}')")
    assert _cards(page)[0]["id"] == "skimage/chelsea.png"


def test_item_search_library_offers_no_text_search(page, world):
    if not world["detector"]:
        pytest.skip("needs the U²-Netp item detector weights (scripts/setup.sh installs them)")
    _open(page, world, "shop")
    assert "item_search" in page.text_content("#library-info")
    assert page.is_disabled("#text") and page.is_visible("#text-note")
    page.click("#go")
    assert "Add a query image" in page.text_content("#results")


def test_creators_search_with_filter_and_paging(page, world):
    page.goto(world["url"] + "/")
    page.click("#tab-creators")
    assert page.is_visible("#panel-creators") and page.is_hidden("#panel-images")
    query = encode(photo("chelsea").rotate(3, fillcolor=(128, 128, 128)))
    page.set_input_files("#c-image", files=[_file("cat.jpg", query, "image/jpeg")])
    page.click("#c-go")
    assert "API token is needed" in page.text_content("#c-error")
    page.fill("#token", "not-a-token")
    page.click("#c-go")
    page.wait_for_selector("#c-error:not([hidden])")
    page.wait_for_function("document.querySelector('#c-error').textContent.startsWith('401')")
    page.fill("#token", world["token"])
    page.click("#c-go")
    page.wait_for_selector("#creators .creator")
    users = page.eval_on_selector_all("#creators .creator", "cs => cs.map(c => c.dataset.user)")
    assert sorted(users) == [f"cat_lover_{i}" for i in range(5)]  # the space fans have no matching post
    assert page.text_content("#c-title").startswith("5 instagram creators")
    assert page.locator("#creators .creator").first.locator(".post").count() >= 1
    assert "charged 0.15 credits" in page.text_content("#c-status")
    # a filter: followers >= 50,000
    page.fill("#f-followers-min", "50000")
    page.click("#c-go")
    page.wait_for_function("document.querySelector('#c-title').textContent.startsWith('3 ')")
    users = page.eval_on_selector_all("#creators .creator", "cs => cs.map(c => c.dataset.user)")
    assert sorted(users) == ["cat_lover_2", "cat_lover_3", "cat_lover_4"]
    _doc_shot(page, "creators")
    # a bad filter is the server's 400, named
    page.fill("#f-extra", '{"gender": "robot"}')
    page.click("#c-go")
    page.wait_for_function("document.querySelector('#c-error').textContent.startsWith('400: filters.gender')")
    page.fill("#f-extra", "")
    page.fill("#f-followers-min", "")
    # locations: found by name through /v1/instagram/locations, sent as ids; a city matches its country
    page.fill("#f-location", "France")
    page.wait_for_selector("#location-options option", state="attached")
    country = page.get_attribute("#location-options option", "value")
    assert country == "France", country
    page.fill("#f-location", country)  # what picking the suggestion does
    page.wait_for_selector("#f-locations .chip")
    assert page.get_attribute("#f-locations .chip", "data-id") == "3017382"
    page.click("#c-go")
    page.wait_for_function("document.querySelector('#c-title').textContent.startsWith('2 ')")
    users = page.eval_on_selector_all("#creators .creator", "cs => cs.map(c => c.dataset.user)")
    assert sorted(users) == ["cat_lover_0", "cat_lover_1"]  # in Paris; the others are in Berlin
    page.click("#f-locations .chip button")
    # TikTok, 2 creators a page: three pages, each creator once
    page.select_option("#platform", "tiktok")
    page.fill("#page-size", "2")
    page.click("#c-go")
    page.wait_for_function("document.querySelector('#c-page').textContent === 'page 1 of 3'")
    seen = []
    for number in (1, 2, 3):
        page.wait_for_function(f"document.querySelector('#c-page').textContent === 'page {number} of 3'")
        page.wait_for_function("!document.querySelector('#creators[aria-busy]')")
        seen += page.eval_on_selector_all("#creators .creator", "cs => cs.map(c => c.dataset.user)")
        if number < 3:
            page.click("#c-next")
    assert sorted(seen) == [f"tt_cat_{i}" for i in range(5)]
    assert page.is_disabled("#c-next") and page.is_enabled("#c-prev")


def test_empty_data_dir_says_create_a_library_then_server_down(page, tmp_path, models):
    runtime = Runtime.open(Settings(data_dir=tmp_path / "empty"), models=models)
    server = Server(runtime)
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#notice:not([hidden])")
        text = page.text_content("#notice")
        assert "create a library first" in text and "lookalike library create photos" in text
        assert page.is_disabled("#go")
        # a library, still empty: the page says how to fill it
        with httpx.Client(base_url=server.url, headers=admin_headers(runtime)) as client:
            assert client.post(f"{API}/libraries", json={"library_name": "fresh"}).status_code == 201
        page.click("#notice button")
        page.wait_for_function("document.querySelector('#notice').textContent.includes('has no images yet')")
        assert "lookalike import fresh" in page.text_content("#notice") and page.is_enabled("#go")
    finally:
        server.stop()
        runtime.close()
    page.click("#notice button")  # reload, with the server gone
    page.wait_for_function("document.querySelector('#notice').textContent.includes('Server down')")
    assert "Cannot reach the Lookalike server" in page.text_content("#notice")
    assert page.get_attribute("#notice", "class") == "notice down"


def test_docs_render_offline_and_link_the_other_faces(page, world):
    # As offline: every request that leaves the server fails here, and is recorded.
    outside: list[str] = []

    def offline(route):
        outside.append(route.request.url)
        route.abort("internetdisconnected")

    page.route(lambda url: not url.startswith((world["url"], "data:", "blob:")), offline)
    page.goto(world["url"] + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Lookalike" in page.text_content(".swagger-ui .info .title")
    links = page.eval_on_selector_all(".swagger-ui .info a", "as => as.map(a => a.getAttribute('href'))")
    assert "/v1/docs" in links and "/v2/docs" in links
    for path in ("/v1/docs", "/v2/docs"):
        page.goto(world["url"] + path)
        page.wait_for_selector(".swagger-ui .opblock")
    page.goto(world["url"] + "/redoc")
    page.wait_for_selector("h1")
    assert "Lookalike" in page.text_content("h1")
    assert not outside, outside
