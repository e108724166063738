"""Operability (issue 11): request ids, one JSON access line per request on every face,
``GET /metrics`` in the Prometheus format, ``GET /healthz`` documented."""

from __future__ import annotations

import json
import logging
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import b64, encode, photo
from lookalike.config import DEFAULT_MODEL

OPS = "/api/v1/operators/image-search"


def _small(name: str) -> str:
    image = photo(name)
    image.thumbnail((256, 256))
    return b64(encode(image))


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def library(client):
    assert client.post(f"{OPS}/libraries", json={"library_name": "obs"}).status_code == 201
    images = [{"image_id": n, "image_base64": _small(n)} for n in ("chelsea", "coffee", "rocket")]
    assert client.post(f"{OPS}/libraries/obs/images", json={"images": images}).status_code == 201
    return client


def test_request_ids_are_made_or_echoed(client):
    made = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    assert client.get("/healthz").headers["X-Request-ID"] != made.headers["X-Request-ID"]
    given = client.get(f"{OPS}/libraries", headers={"X-Request-ID": "job-42:step.1"})
    assert given.headers["X-Request-ID"] == "job-42:step.1"
    # not sane (a space, too long, a newline smuggled as latin-1): replaced, never echoed
    for bad in ("two words", "x" * 129, "a\u00e9"):
        r = client.get("/healthz", headers={"X-Request-ID": bad.encode("latin-1")})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"]), bad
    # errors of every face carry it too
    for method, path in (("GET", f"{OPS}/libraries/missing"), ("POST", "/v1/ai/image-search"),
                         ("POST", "/v2/image_search"), ("GET", "/no/such/page")):
        r = client.request(method, path, headers={"X-Request-ID": "err-1"})
        assert r.status_code >= 400 and r.headers["X-Request-ID"] == "err-1", path


def test_one_json_access_line_per_request_on_every_face(library, caplog):
    client = library
    calls = [
        ("POST", f"{OPS}/search/by-text", {"json": {"library_name": "obs", "query_text": "a cat"}}, "operator", 200,
         f"{OPS}/search/by-text"),
        ("GET", f"{OPS}/libraries/obs", {}, "operator", 200, f"{OPS}/libraries/{{library_name}}"),
        ("GET", "/api/v1/creators/instagram", {}, "creators-admin", 200, "/api/v1/creators/{platform}"),
        ("POST", "/v1/ai/image-search", {"json": {}}, "modash", 400, "/v1/ai/image-search"),
        ("GET", "/v1/instagram/locations", {}, "modash", 401, "/v1/instagram/locations"),
        ("POST", "/v2/image_search?key=key_secretsecretsecre", {"content": b"x"}, "constructor", 401,
         "/v2/image_search"),
        ("GET", "/healthz", {}, "web", 200, "/healthz"),
    ]
    for method, path, kwargs, face, status, route in calls:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lookalike.access"):
            r = client.request(method, path, headers={"X-Request-ID": f"t-{face}"}, **kwargs)
        assert r.status_code == status, (path, r.text)
        lines = [rec for rec in caplog.records if rec.name == "lookalike.access"]
        assert len(lines) == 1, path
        entry = json.loads(lines[0].getMessage())
        assert entry["request_id"] == f"t-{face}" and entry["face"] == face and entry["status"] == status
        assert entry["method"] == method and entry["route"] == route and entry["latency_ms"] >= 0
        assert entry["path"] == path.split("?")[0]  # never the query string (it carries /v2's key)
        assert "key_secretsecretsecre" not in lines[0].getMessage() or face == "constructor"
    # the Constructor face adds its own fields to the same line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lookalike.access"):
        client.post("/v2/image_search?key=key_unknownunknown00", content=b"x")
    entry = json.loads(next(r for r in caplog.records if r.name == "lookalike.access").getMessage())
    assert entry["constructor"]["status"] == 401 and entry["constructor"]["key"] == "key_unknownunknown00"


def test_metrics_in_the_prometheus_format(library):
    client = library
    before = _samples(client.get("/metrics").text)
    image = _small("coffee")
    for _ in range(2):
        r = client.post(f"{OPS}/search/by-image", json={"library_name": "obs", "image_base64": image})
        assert r.status_code == 200
    assert client.get(f"{OPS}/libraries/nope").status_code == 404
    dup = client.post(f"{OPS}/libraries/obs/images", json={"images": [{"image_id": "extra", "image_base64": image}]})
    assert dup.status_code == 201
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)

    def grew(name: str, by: float, **labels: str) -> None:
        assert _value(after, name, **labels) - _value(before, name, **labels) == by, (name, labels)

    search = {"method": "POST", "route": f"{OPS}/search/by-image", "status": "200"}
    grew("lookalike_http_requests_total", 2, **search)
    grew("lookalike_http_request_duration_seconds_count", 2, **search)
    grew("lookalike_http_requests_total", 1, method="GET", route=f"{OPS}/libraries/{{library_name}}", status="404")
    grew("lookalike_search_duration_seconds_count", 2, library="obs", query="image")
    assert _value(after, "lookalike_search_duration_seconds_sum", library="obs", query="image") > 0
    grew("lookalike_imported_images_total", 1, library="obs", outcome="added")
    model = DEFAULT_MODEL  # the library was created without a model
    assert _value(after, "lookalike_model_inference_seconds_count", model=model, task="image") >= 3
    assert _value(after, "lookalike_library_images", library="obs") == 4
    # histogram buckets are cumulative and end at +Inf = count
    inf = _value(after, "lookalike_http_request_duration_seconds_bucket", le="+Inf", **search)
    assert inf == _value(after, "lookalike_http_request_duration_seconds_count", **search)


def test_healthz_and_metrics_are_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/healthz"]["get"]["summary"].startswith("Liveness")
    assert "text/plain" in str(paths["/metrics"]["get"]["responses"]["200"]["content"])
    assert client.get("/healthz").json()["status"] == "ok"


def test_serve_logging_prints_one_line_per_request(client, capsys):
    """``lookalike serve``'s logging: the access line alone, the Constructor face's fields inside it."""
    from lookalike.api.observability import configure_logging

    configure_logging()
    configure_logging()  # idempotent: one handler
    try:
        for path in ("/healthz", "/v2/image_search?key=key_unknownunknown00"):
            capsys.readouterr()
            client.request("GET" if path == "/healthz" else "POST", path)
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1, lines
            entry = json.loads(lines[0])
            assert entry["path"] == path.split("?")[0]
        assert entry["constructor"]["status"] == 401
    finally:
        logger = logging.getLogger("lookalike")
        for handler in [h for h in logger.handlers if getattr(h, "_lookalike", False)]:
            logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
