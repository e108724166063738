"""Issue 10: the ten findings of the attack and fuzzing session, each replayed through HTTP.

1. one request exhausting memory (``/dev/zero``, FIFOs, devices as image files);
2. open management routes (admin tokens now);
3. clients reading the server's files (import roots; identical refusals);
4. decode memory (one budget for decodes in flight: 503 BUSY beyond it; reduced decoding);
5. out-of-range integers (offset, followersCount, tags);
6. image ids with ``/``;
7. unclear errors (too many pixels, INVALID_JSON with a position, base64 variants, field paths);
8. far-future post dates;
9. CORS on /v2;
10. file modes of the data dir and its databases.
"""

from __future__ import annotations

import base64
import os
import stat
import struct
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.cli import app as cli_app
from lookalike.imaging import DECODE_BUDGET
from lookalike.runtime import Runtime

API = "/api/v1/operators/image-search"
CREATORS = "/api/v1/creators"


def _create(client, name: str = "lib") -> None:
    r = client.post(f"{API}/libraries", json={"library_name": name})
    assert r.status_code == 201, r.text


def _import(client, images, library: str = "lib", **kw):
    return client.post(f"{API}/libraries/{library}/images", json={"images": images}, **kw)


def _creator(uid: str, **post) -> dict:
    return {"userId": uid, "username": uid, "followersCount": 1000,
            "posts": [{"id": "p1", "created_at": time.time() - 86_400, **post}]}


@pytest.fixture
def rooted(settings, models, tmp_path):
    """A client (admin token sent) of a server whose import roots are ``tmp_path/root``, and that folder."""
    root = tmp_path / "root"
    root.mkdir()
    runtime = Runtime.open(replace(settings, import_roots=(root.resolve(),)), models=models)
    with TestClient(create_app(runtime), raise_server_exceptions=False, headers=admin_headers(runtime)) as c:
        _create(c)
        yield c, root


# --- 1. no request reads a device, a FIFO or an unbounded file ------------------------------------


def test_dev_zero_fails_fast_with_or_without_import_roots(client, settings, models, tmp_path):
    _create(client)
    started = time.monotonic()
    r = _import(client, [{"image_id": "dz", "image_uri": "/dev/zero"}])
    assert r.status_code == 400 and r.json()["message"].startswith("images[0].image_uri: ")
    # Even an operator who lists /dev (or a folder with a link to it) as a root gets no device read.
    runtime = Runtime.open(replace(settings, data_dir=tmp_path / "d2", import_roots=(Path("/dev"), tmp_path)),
                           models=models)
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    with TestClient(create_app(runtime), raise_server_exceptions=False, headers=admin_headers(runtime)) as c:
        _create(c)
        for uri in ("/dev/zero", str(tmp_path / "zero.jpg"), str(fifo), "/proc/self/environ"):
            r = _import(c, [{"image_id": "x", "image_uri": uri}])
            assert r.status_code == 400, (uri, r.text)
            assert "images[0].image_uri" in r.json()["message"]
    assert time.monotonic() - started < 60  # fails fast: no read of an endless device, no blocking open


def test_file_reads_stop_at_the_byte_cap_while_reading(rooted, settings):
    c, root = rooted
    big = root / "big.jpg"
    with open(big, "wb") as f:  # sparse: 64 MB of zeros that take no disk
        f.truncate(settings.max_import_bytes + 1)
    r = _import(c, [{"image_id": "big", "image_uri": str(big)}])
    assert r.status_code == 400
    assert r.json()["message"] == f"images[0].image_uri: file is larger than the limit of {settings.max_import_bytes} bytes"


def test_creator_import_reads_no_device(client):
    r = client.post(f"{CREATORS}/import", json={"platform": "instagram",
                                                 "creators": [_creator("dz", image_url="/dev/zero")]})
    assert r.status_code == 200, r.text
    failed = r.json()["data"]["failed"]
    assert [f["where"] for f in failed] == ["creators[0]"] and "reads no local files" in failed[0]["message"]


# --- 2. every write needs an admin token ------------------------------------------------------------


def test_writes_need_an_admin_token(client, anonymous, runtime):
    _create(client)
    assert _import(client, [{"image_id": "c", "image_base64": b64(encode(photo("coffee")))}]).status_code == 201
    _, modash_token = runtime.tokens.create(1000, "search only")
    writes = [
        ("POST", f"{API}/libraries", {"library_name": "x"}),
        ("DELETE", f"{API}/libraries/lib", None),
        ("POST", f"{API}/libraries/lib/images", {"images": [{"image_base64": b64(encode(photo("rocket")))}]}),
        ("PATCH", f"{API}/libraries/lib/images/c", {"tags": {"a": 1}}),
        ("DELETE", f"{API}/libraries/lib/images/c", None),
        ("POST", f"{CREATORS}/import", {"creators": [_creator("u")]}),
        ("DELETE", f"{CREATORS}/instagram/u", None),
    ]
    for headers in ({}, {"Authorization": f"Bearer {modash_token}"}, {"Authorization": "Bearer lka_wrong"},
                    {"Authorization": "Basic YWRtaW46YWRtaW4="}):
        for method, path, body in writes:
            r = anonymous.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["status"] == "UNAUTHORIZED" and "admin token" in r.json()["message"]
            assert r.json()["message"].startswith("Authorization: ")
    # nothing changed, and searches and reads stay open
    assert anonymous.get(f"{API}/libraries/lib").json()["data"]["image_count"] == 1
    r = anonymous.post(f"{API}/search/by-image", json={"library_name": "lib", "image_base64": b64(encode(photo("coffee")))})
    assert r.status_code == 200 and r.json()["data"]["results"][0]["image_id"] == "c"


def test_admin_token_cli_create_list_revoke(client, anonymous, settings):
    runner = CliRunner()
    env = {"LOOKALIKE_DATA_DIR": str(settings.data_dir)}
    created = runner.invoke(cli_app, ["admin-token", "create", "--label", "ops"], env=env)
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("lka_") and "\n" not in token  # only the token on stdout
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.post(f"{API}/libraries", json={"library_name": "a"}, headers=headers).status_code == 201
    listed = runner.invoke(cli_app, ["admin-token", "list"], env=env)
    assert "ops" in listed.stdout and token not in listed.stdout
    token_id = next(line.split()[1] for line in listed.stdout.splitlines() if "ops" in line)
    assert runner.invoke(cli_app, ["admin-token", "revoke", token_id], env=env).exit_code == 0
    r = anonymous.post(f"{API}/libraries", json={"library_name": "b"}, headers=headers)
    assert r.status_code == 401 and "not a live admin token" in r.json()["message"]
    assert runner.invoke(cli_app, ["admin-token", "revoke", "nope"], env=env).exit_code == 2


def test_a_search_key_closes_the_operator_reads(settings, models):
    runtime = Runtime.open(replace(settings, search_key="s3cret"), models=models)
    admin = admin_headers(runtime)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as c:
        assert c.post(f"{API}/libraries", json={"library_name": "lib"}, headers=admin).status_code == 201
        body = {"library_name": "lib", "query_text": "a cat"}
        for path, method, payload in ((f"{API}/search/by-text", "POST", body), (f"{API}/libraries", "GET", None)):
            assert c.request(method, path, json=payload).status_code == 401
            assert c.request(method, path, json=payload, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.request(method, path, json=payload, headers={"Authorization": "Bearer s3cret"}).status_code == 200
            assert c.request(method, path, json=payload, headers=admin).status_code == 200
        # the search key is not an admin token
        r = c.post(f"{API}/libraries", json={"library_name": "x"}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 401


# --- 3. clients never read the server's files outside the import roots ----------------------------


def test_without_import_roots_no_local_file_is_read_and_existence_does_not_show(client, tmp_path):
    _create(client)
    real = tmp_path / "coffee.jpg"
    real.write_bytes(encode(photo("coffee")))
    messages = set()
    for uri in (str(real), real.as_uri(), str(tmp_path / "missing.jpg"), "/etc/shadow", "/etc/passwd"):
        r = _import(client, [{"image_id": "x", "image_uri": uri}])
        assert r.status_code == 400
        messages.add(r.json()["message"].replace(uri, "<uri>"))
    assert len(messages) == 1 and "reads no local files" in messages.pop()
    assert client.get(f"{API}/libraries/lib").json()["data"]["image_count"] == 0


def test_import_roots_refuse_escapes_with_one_message(rooted, tmp_path):
    c, root = rooted
    (root / "in.jpg").write_bytes(encode(photo("coffee")))
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(encode(photo("rocket")))
    (root / "link.jpg").symlink_to(outside)
    assert _import(c, [{"image_id": "in", "image_uri": str(root / "in.jpg")}]).status_code == 201
    messages = set()
    for uri in (str(outside), str(root / ".." / "outside.jpg"), str(root / "link.jpg"), str(root / "missing.jpg"),
                str(tmp_path / "missing.jpg"), "/etc/passwd", "/etc/no-such-file"):
        r = _import(c, [{"image_id": "out", "image_uri": uri}])
        assert r.status_code == 400, uri
        messages.add(r.json()["message"].replace(f"'{uri}'", "<uri>"))
    assert messages == {"images[0].image_uri: <uri> is not a readable image file inside this server's import folders"}
    # the creator import's image_path follows the same rule
    r = c.post(f"{CREATORS}/import", json={"platform": "instagram",
                                           "creators": [_creator("u1", image_path=str(outside))]})
    assert "import folders" in r.json()["data"]["failed"][0]["message"]
    r = c.post(f"{CREATORS}/import", json={"platform": "instagram",
                                           "creators": [_creator("u2", image_path=str(root / "in.jpg"))]})
    assert r.json()["data"]["imported"] == ["u2"], r.text


# --- 4. decode memory is bounded: a budget, and 503 BUSY beyond it ---------------------------------


def test_queries_beyond_the_decode_budget_get_503_busy(settings, models):
    runtime = Runtime.open(replace(settings, decode_budget_pixels=1_000_000, decode_wait_s=0.2), models=models)
    with TestClient(create_app(runtime), raise_server_exceptions=False, headers=admin_headers(runtime)) as c:
        _create(c)
        query = {"library_name": "lib", "image_base64": b64(encode(photo("coffee"), "PNG"))}
        held = DECODE_BUDGET.acquire(1_000_000, None, "test")  # another request's decode in flight
        try:
            r = c.post(f"{API}/search/by-image", json=query)
        finally:
            DECODE_BUDGET.release(held)
        assert r.status_code == 503 and r.json()["status"] == "BUSY" and r.headers["Retry-After"] == "1"
        assert r.json()["message"].startswith("image_base64: ")
        assert c.post(f"{API}/search/by-image", json=query).status_code == 200
        assert DECODE_BUDGET.used == 0


def test_large_png_queries_decode_reduced_and_still_match(client):
    _create(client)
    cat = photo("chelsea")
    assert _import(client, [{"image_id": "cat", "image_base64": b64(encode(cat))},
                            {"image_id": "rocket", "image_base64": b64(encode(photo("rocket")))}]).status_code == 201
    big = cat.resize((cat.width * 8, cat.height * 8))  # 3604 x 2400 PNG
    r = client.post(f"{API}/search/by-image", json={"library_name": "lib", "image_base64": b64(encode(big, "PNG")),
                                                     "return_segments": True, "top_k": 1})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["results"][0]["image_id"] == "cat" and data["results"][0]["score"] > 0.9
    # boxes stay in the pixels of the image as sent, though it was decoded reduced
    box = data["segments"][0]["bbox"]
    assert box["x"] + box["width"] <= big.width and box["y"] + box["height"] <= big.height
    assert box["width"] > big.width // 8


# --- 5. out-of-range integers are 400s naming the field --------------------------------------------


def test_out_of_range_integers_name_their_field(client):
    _create(client)
    for offset in (9223372036854775808, 10**13, -1):
        r = client.get(f"{API}/libraries/lib/images", params={"offset": offset})
        assert r.status_code == 400 and r.json()["message"].startswith("offset: "), r.text
    # (integer tags of any size are fine: tags are stored as JSON, and filters compare them exactly)
    r = _import(client, [{"image_id": "big", "image_base64": b64(encode(photo("coffee"))), "tags": {"n": 10**30}}])
    assert r.status_code == 201
    r = client.get(f"{API}/libraries/lib/images", params={"offset": 0, "limit": 1000})
    assert r.status_code == 200 and r.json()["data"][0]["tags"] == {"n": 10**30}
    for followers in (10**30, 1e30):
        line = {**_creator("big"), "followersCount": followers}
        r = client.post(f"{CREATORS}/import", json={"platform": "instagram", "creators": [line]})
        assert r.status_code == 400 and r.json()["message"].startswith("creators[0].followersCount: must be an integer")
    r = client.post(f"{CREATORS}/import", json={"platform": "instagram", "creators": [
        {**_creator("s"), "posts": [{"id": "p", "created_at": 1, "image_base64": "AAAA", "stats": {"likesCount": 10**20}}]}]})
    assert r.status_code == 400 and "posts[0].stats.likesCount" in r.json()["message"]


# --- 6. image ids with '/' are reachable --------------------------------------------------------------


def test_image_ids_with_slashes_are_reachable(client):
    _create(client)
    ids = ["skimage/chelsea.png", "a/b/c", "100%/x y"]
    r = _import(client, [{"image_id": i, "image_base64": b64(encode(photo("chelsea")))} for i in ids])
    assert r.status_code == 201, r.text
    for image_id in ids:
        for path in (image_id.replace("%", "%25").replace(" ", "%20"), image_id.replace("%", "%25").replace("/", "%2F")):
            r = client.get(f"{API}/libraries/lib/images/{path}")
            assert r.status_code == 200 and r.json()["data"]["image_id"] == image_id, (path, r.text)
        r = client.patch(f"{API}/libraries/lib/images/{image_id.replace('%', '%25')}", json={"tags": {"k": 1}})
        assert r.status_code == 200 and r.json()["data"]["tags"] == {"k": 1}
        assert client.delete(f"{API}/libraries/lib/images/{image_id.replace('%', '%25')}").status_code == 200
    assert client.get(f"{API}/libraries/lib/images/skimage/chelsea.png").status_code == 404


# --- 7. clear errors ---------------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data needed to be refused)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_too_many_pixels_says_so(client):
    _create(client)
    for size in (30000, 8000):  # above Pillow's bomb limit, and above ours only
        r = client.post(f"{API}/search/by-image", json={"library_name": "lib", "image_base64": b64(_png_header(size, size))})
        assert r.status_code == 400 and r.json()["status"] == "INVALID_IMAGE"
        message = r.json()["message"]
        assert message.startswith("image_base64: too many pixels: image is ") and str(size * size) in message, message


def test_every_body_parse_failure_is_invalid_json_with_a_position(client):
    for body, where in ((b'{"library_name": "lib",\n  "query_text": }', "line 2, column 17"),
                        (b"[" * 100_000, None), (b'{"a": "\xff"}', "byte 7"), (b"", None)):
        r = client.post(f"{API}/search/by-text", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        if body:
            assert r.json()["status"] == "INVALID_JSON", r.text
            assert r.json()["message"].startswith("body: is not valid JSON")
        if where:
            assert where in r.json()["message"], r.text
    # the Constructor face's own JSON intake says the same
    r = client.post("/v2/image_search", params={"key": "k"}, content=b'{"image_base64": ',
                    headers={"content-type": "application/json"})
    assert r.status_code in (400, 401)


def test_base64_variants_are_accepted_and_bad_base64_is_explained(client):
    _create(client)
    data = encode(photo("coffee"))
    assert _import(client, [{"image_id": "c", "image_base64": b64(data)}]).status_code == 201
    standard = base64.b64encode(data).decode()
    mime = base64.encodebytes(data).decode()  # 76-character lines, as `base64` prints
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert "\n" in mime and ("-" in urlsafe or "_" in urlsafe)
    for text in (mime, urlsafe, standard.rstrip("="), mime.replace("\n", "\r\n"), "data:image/jpeg;base64," + mime):
        r = client.post(f"{API}/search/by-image", json={"library_name": "lib", "image_base64": text, "top_k": 1})
        assert r.status_code == 200 and r.json()["data"]["results"][0]["score"] > 0.99, r.text
    bad = {
        standard[:100] + "*" + standard[101:]: "character '*' at position 100 is not in the base64 alphabet",
        standard[:8] + "=" + standard[9:]: "padding '=' at position 8 is followed by more data",
        "QUJD" + "Q": "5 base64 characters (4n+1) cannot be decoded",
        "QUI===": "wrong padding: 3 characters take 1 '=', got 3",
        standard[:40] + "-" + standard[41:].replace("-", "A").replace("_", "A"): "mixes the standard",
    }
    for text, reason in bad.items():
        r = client.post(f"{API}/search/by-image", json={"library_name": "lib", "image_base64": text})
        assert r.status_code == 400 and r.json()["message"].startswith("image_base64: is not valid base64: ")
        assert reason in r.json()["message"], (reason, r.json()["message"])


def test_a_non_image_file_names_its_field(rooted):
    c, root = rooted
    (root / "notes.jpg").write_text("not an image")
    r = _import(c, [{"image_id": "n", "image_uri": str(root / "notes.jpg")}])
    assert r.status_code == 400 and r.json()["message"].startswith("images[0].image_uri: not a decodable image")
    r = _import(c, [{"image_id": "n", "image_base64": b64(b"not an image")}])
    assert r.json()["message"].startswith("images[0].image_base64: not a decodable image")


# --- 8. far-future post dates -------------------------------------------------------------------------


def test_far_future_post_dates_are_refused_small_skew_is_not(client):
    jpeg = b64(encode(photo("coffee")))
    for created in (1e20, time.time() + 3 * 86_400, "2999-01-01T00:00:00"):
        line = {**_creator("f"), "posts": [{"id": "p", "created_at": created, "image_base64": jpeg}]}
        r = client.post(f"{CREATORS}/import", json={"platform": "instagram", "creators": [line]})
        assert r.status_code == 400 and r.json()["message"].startswith("creators[0].posts[0].created_at: is in the future")
    line = {**_creator("ok"), "posts": [{"id": "p", "created_at": time.time() + 3600, "image_base64": jpeg}]}
    r = client.post(f"{CREATORS}/import", json={"platform": "instagram", "creators": [line]})
    assert r.status_code == 200 and r.json()["data"]["imported"] == ["ok"], r.text


# --- 9. CORS -------------------------------------------------------------------------------------------


def test_v2_answers_cors_preflight_and_other_faces_only_when_configured(client, settings, models, tmp_path):
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    r = client.options("/v2/image_search", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    r = client.post("/v2/image_search", params={"key": "nope"}, headers={"Origin": "https://shop.example"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in client.options(f"{API}/search/by-text", headers=preflight).headers
    configured = replace(settings, data_dir=tmp_path / "cors", cors_origins=("https://shop.example",),
                         cors_faces=("v2", "operator"))
    with TestClient(create_app(Runtime.open(configured, models=models)), raise_server_exceptions=False) as c:
        r = c.options(f"{API}/search/by-text", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://shop.example"
        r = c.options("/v2/image_search", headers={**preflight, "Origin": "https://evil.example"})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


# --- 10. the data dir and its databases are private -----------------------------------------------------


def test_data_dir_is_0700_and_databases_0600(client, runtime, settings):
    _create(client)
    assert _import(client, [{"image_base64": b64(encode(photo("coffee")))}]).status_code == 201
    runtime.keys.create({"Products": "lib"})
    client.post(f"{CREATORS}/import", json={"platform": "instagram", "creators": [_creator("u")]})
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    databases = sorted(p.name for p in settings.data_dir.glob("*.db*"))
    assert {"lookalike.db", "access.db"} <= set(databases)
    for name in databases:
        assert stat.S_IMODE((settings.data_dir / name).stat().st_mode) == 0o600, name


def test_an_existing_world_readable_data_dir_is_tightened(tmp_path, models):
    from lookalike.config import Settings

    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    (data / "lookalike.db").touch(mode=0o644)
    os.chmod(data / "lookalike.db", 0o644)
    runtime = Runtime.open(Settings(data_dir=data), models=models)
    runtime.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "lookalike.db").stat().st_mode) == 0o600


def test_an_oversized_body_is_413_in_each_faces_own_style(settings, models):
    runtime = Runtime.open(replace(settings, max_request_bytes=10_000), models=models)
    big = b"x" * 20_000
    with TestClient(create_app(runtime), raise_server_exceptions=False) as c:
        for path, keys in ((f"{API}/search/by-text", {"status", "message", "data"}),
                           ("/v1/ai/image-search", {"error", "code", "message"}), ("/v2/image_search", {"message"})):
            r = c.post(path, content=big, headers={"content-type": "application/json"})
            assert r.status_code == 413 and set(r.json()) == keys, (path, r.text)
