"""The Milvus backend against a real Milvus server: answers equal the embedded store's for
hostile filter values and keys, a stopped server is a 503 then recovers, the CLI migrates
libraries both ways and lists the backend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import PHOTOS, admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.runtime import Runtime

API = "/api/v1/operators/image-search"

HOSTILE = [
    '" or pk >= 0 or tags["name"] == "',
    "\\",
    '\\"',
    "'",
    "line\nbreak",
    "nul\x00byte",
    "😀 émoji",
    "%_like*",
    "]",
]
# Tags per photo: translatable keys with hostile string values, keys Milvus cannot address
# (brackets, quotes, slashes, spaces), numbers around 2**53, mixed types under one key.
TAGS = {
    "astronaut": {"name": HOSTILE[0], "n": 1, 'we"ird': "x", "a/b": 1, "kind": "space"},
    "chelsea": {"name": HOSTILE[1], "n": 1.0, "x[1]": True, "kind": "earth"},
    "coffee": {"name": HOSTILE[2], "n": 2**53 + 1, "kind": "earth", "sale": True},
    "rocket": {"name": HOSTILE[4], "n": -3.5, "kind": 7, "sale": False},
    "hubble_deep_field": {"name": HOSTILE[5], "n": "1", "kind": "space", "with space": "y"},
    "retina": {"name": HOSTILE[6], "kind": "earth", "sale": 1},
}

FILTERS = [
    *({"field": "name", "op": "=", "value": v} for v in HOSTILE),
    *({"field": "name", "op": "!=", "value": v} for v in HOSTILE[:3]),
    {"field": "name", "op": "in", "value": HOSTILE},
    {"field": "name", "op": "not_in", "value": HOSTILE[:4]},
    {"field": "name", "op": ">", "value": "\\"},
    {"field": "name", "op": "<=", "value": "line\nbreak"},
    {"field": "name", "op": "contains", "value": "\\"},
    {"field": "name", "op": "not_contains", "value": "or pk"},
    {"field": "n", "op": "=", "value": 1},
    {"field": "n", "op": "=", "value": 2**53 + 1},
    {"field": "n", "op": ">", "value": 2**53},
    {"field": "n", "op": "<", "value": 0},
    {"field": "n", "op": "in", "value": [1, "1", True, -3.5]},
    {"field": "kind", "op": "not_in", "value": ["earth", 7]},
    {"field": "sale", "op": "=", "value": True},
    {"field": "sale", "op": "in", "value": [1, False]},
    {"field": 'we"ird', "op": "=", "value": "x"},
    {"field": "x[1]", "op": "=", "value": True},
    {"field": "a/b", "op": "!=", "value": 1},
    {"field": "with space", "op": "=", "value": "y"},
    {"field": "tags", "op": "=", "value": "x"},
    [{"field": "kind", "op": "=", "value": "earth"}, {"or": [{"field": "n", "op": ">=", "value": 1},
                                                             {"field": "name", "op": "contains", "value": "😀"}]}],
    {"or": [{"field": "x[1]", "op": "=", "value": True}, {"field": "kind", "op": "=", "value": 7}]},
]


def _library(client: TestClient, name: str, tags: dict[str, dict]) -> None:
    assert client.post(f"{API}/libraries", json={"library_name": name}).status_code == 201
    images = [{"image_id": n, "image_base64": b64(encode(photo(n).resize((96, 96)))), "tags": t} for n, t in tags.items()]
    r = client.post(f"{API}/libraries/{name}/images", json={"images": images})
    assert r.status_code == 201, r.text


def _ids(client: TestClient, library: str, flt) -> list[str]:
    body = {"library_name": library, "image_base64": b64(encode(photo("coffee").resize((96, 96)))), "top_k": 10,
            "tag_filter": flt}
    r = client.post(f"{API}/search/by-image", json=body)
    assert r.status_code == 200, r.text
    return [h["image_id"] for h in r.json()["data"]["results"]]


@pytest.fixture
def both(tmp_path, models, milvus_server):
    """HTTP clients on the embedded store and on Milvus, each with the same libraries."""
    uri = f"{milvus_server.uri}?prefix=test_&timeout=10"
    runtimes = [Runtime.open(Settings(data_dir=tmp_path / kind, store=store), models=models)
                for kind, store in (("embedded", "embedded"), ("milvus", uri))]
    clients = [TestClient(create_app(rt), raise_server_exceptions=False, headers=admin_headers(rt)) for rt in runtimes]
    for client in clients:
        _library(client, "hostile", TAGS)
        # A tag Milvus cannot compare exactly (an int past 2**63): the whole library is then
        # filtered outside Milvus.
        _library(client, "exotic", {**TAGS, "coffee": {"name": HOSTILE[2], "n": 2**70, "kind": "earth"}})
    yield clients
    runtimes[1].store.delete_library("hostile")
    runtimes[1].store.delete_library("exotic")
    for rt in runtimes:
        rt.close()


@pytest.mark.parametrize("library", ["hostile", "exotic"])
def test_filters_answer_exactly_as_the_embedded_store(both, library):
    embedded, milvus = both
    for flt in FILTERS:
        expected = _ids(embedded, library, flt)
        assert _ids(milvus, library, flt) == expected, flt
    # A value crafted to break out of a string literal matches only the image tagged with it.
    assert _ids(milvus, library, {"field": "name", "op": "=", "value": HOSTILE[0]}) == ["astronaut"]
    got = milvus.get(f"{API}/libraries/{library}/images/coffee").json()["data"]
    want = embedded.get(f"{API}/libraries/{library}/images/coffee").json()["data"]
    assert got["tags"] == want["tags"]


def test_milvus_down_is_a_503_within_the_timeout_and_recovers(tmp_path, models, milvus_server):
    from lookalike.service.backends import start_server, stop_server

    uri = f"{milvus_server.uri}?prefix=test_&timeout=3"
    rt = Runtime.open(Settings(data_dir=tmp_path / "data", store=uri), models=models)
    client = TestClient(create_app(rt), raise_server_exceptions=False, headers=admin_headers(rt))
    try:
        _library(client, "faults", {n: {"i": i} for i, n in enumerate(PHOTOS)})
        before = _ids(client, "faults", None)
        assert before[0] == "coffee"
        base = milvus_server.base_dir
        stop_server(Path(base), timeout=5)
        try:
            for method, path, body in (
                ("post", "/search/by-image", {"library_name": "faults", "image_base64": b64(encode(photo("rocket")))}),
                ("get", "/libraries", None),
                ("post", "/libraries", {"library_name": "another"}),
            ):
                start = time.monotonic()
                r = client.request(method.upper(), f"{API}{path}", json=body)
                took = time.monotonic() - start
                assert r.status_code == 503, r.text
                assert r.json()["status"] == "STORE_UNAVAILABLE" and "Milvus" in r.json()["message"]
                assert took < 3 * 4, took  # bounded by the URI's timeout (a few calls at most), never a hang
        finally:
            start_server(Path(base), milvus_server.port)
        deadline = time.monotonic() + 120
        while True:  # Milvus reloads its collections after a restart
            r = client.post(f"{API}/search/by-image", json={"library_name": "faults", "top_k": 10,
                                                           "image_base64": b64(encode(photo("coffee").resize((96, 96))))})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            assert r.status_code == 503, r.text
            time.sleep(1)
        assert r.status_code == 200, r.text
        assert [h["image_id"] for h in r.json()["data"]["results"]] == before
    finally:
        try:
            rt.store.delete_library("faults")
        finally:
            rt.close()


def test_cli_lists_the_backend_and_migrates_both_ways(tmp_path, model_cache, milvus_server):
    uri = f"{milvus_server.uri}?prefix=test_"
    # COLUMNS: wide enough that rich does not cut the backend column.
    env = {"LOOKALIKE_DATA_DIR": str(tmp_path / "data"), "LOOKALIKE_MODEL_CACHE": str(model_cache), "COLUMNS": "200"}
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS:
        (photos / f"{name}.jpg").write_bytes(encode(photo(name)))

    def run(*args, store="embedded"):
        result = CliRunner().invoke(app, list(args), env={**env, "LOOKALIKE_STORE": store}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    run("library", "create", "moved")
    run("import", "moved", str(photos))
    assert "embedded" in run("library", "list")
    query = str(photos / "rocket.jpg")
    want = run("search", "moved", "--image", query, "--top-k", "3")

    out = run("migrate", "moved", "--to", uri)
    assert f"copied {len(PHOTOS)}, already there 0" in out
    assert f"copied 0, already there {len(PHOTOS)}" in run("migrate", "moved", "--to", uri)  # resumable
    listing = run("library", "list", store=uri)
    assert "moved" in listing and milvus_server.uri in listing
    assert run("search", "moved", "--image", query, "--top-k", "3", store=uri) == want

    run("library", "delete", "moved", "--yes")  # from the embedded store, then back from Milvus
    out = run("migrate", "moved", "--to", "embedded", store=uri)
    assert f"copied {len(PHOTOS)}" in out
    assert run("search", "moved", "--image", query, "--top-k", "3") == want
    run("library", "delete", "moved", "--yes", store=uri)

    bad = CliRunner().invoke(app, ["library", "list"], env={**env, "LOOKALIKE_STORE": "redis://x"})
    assert bad.exit_code == 2 and "LOOKALIKE_STORE" in bad.output
