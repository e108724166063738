"""The OpenAPI docs of every face work without internet: their pages load only assets the app
itself serves (Swagger UI and ReDoc from the pinned ``fastapi-offline`` package)."""

from __future__ import annotations

import re

import pytest

DOC_PAGES = ["/docs", "/redoc", "/v1/docs", "/v1/redoc", "/v2/docs", "/v2/redoc"]
_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
_SCRIPT_URL = re.compile(r"""\burl:\s*['"]([^'"]+)['"]|spec-url=["']([^"']+)["']""")


@pytest.mark.parametrize("page", DOC_PAGES)
def test_doc_page_loads_only_local_assets_that_answer(client, page):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "cdn." not in html and "fonts.googleapis" not in html
    assets = _ASSET.findall(html)
    kinds = {a.rsplit(".", 1)[-1] for a in assets}
    assert "js" in kinds, assets  # Swagger UI or ReDoc itself
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), f"{page} references a non-local asset {url}"
        prefix = page.rsplit("/", 1)[0]
        assert url.startswith(f"{prefix}/static-offline-docs/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url  # the real bundle, not an error page
    # The OpenAPI document the page renders is the face's own, also local.
    spec_urls = [a or b for a, b in _SCRIPT_URL.findall(html)]
    assert spec_urls, html
    for url in spec_urls:
        assert url.startswith("/") and client.get(url).json()["openapi"].startswith("3.")


def test_swagger_ui_never_calls_the_online_validator(client):
    assert '"validatorUrl": null' in client.get("/docs").text


@pytest.mark.parametrize("page", ["/redoc", "/v1/redoc", "/v2/redoc"])
def test_redoc_may_load_nothing_from_elsewhere(client, page):
    # its sidebar logo points at cdn.redoc.ly; the policy keeps every request on this server
    policy = client.get(page).headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' data:" in policy


def test_operator_docs_link_to_the_other_faces(client):
    description = client.get("/openapi.json").json()["info"]["description"]
    assert "](/v1/docs)" in description and "](/v2/docs)" in description
    assert client.get("/v1/openapi.json").status_code == 200
    assert client.get("/v2/openapi.json").status_code == 200
