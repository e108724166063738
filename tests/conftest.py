"""Shared fixtures: real photos from installed packages, the real default model, an HTTP client."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import Settings
from lookalike.runtime import Runtime

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def photo(name: str) -> Image.Image:
    """A real RGB photo bundled with scikit-image (astronaut, chelsea, coffee, rocket, ...)."""
    import skimage.data

    return Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """ONNX export cache shared by every test in the session (export once)."""
    env = os.environ.get("LOOKALIKE_TEST_MODEL_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def models(model_cache):
    from lookalike.models import load_model

    return lambda model_id: load_model(model_id, model_cache)


def pytest_generate_tests(metafunc):
    # A module opts in to running on both backends with STORE_BACKENDS = ("embedded", "milvus").
    backends = getattr(metafunc.module, "STORE_BACKENDS", None)
    if backends and "store_backend" in metafunc.fixturenames:
        metafunc.parametrize("store_backend", backends, indirect=True)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """One Milvus standalone server for the session, on a free loopback port under a temp dir."""
    try:
        import milvus  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        pytest.skip("needs the 'milvus' extra (pip install -e '.[milvus]'; scripts/setup.sh installs it)")
    from lookalike.service.backends import free_port, start_server, stop_server

    base = tmp_path_factory.mktemp("milvus")
    info = start_server(base, free_port())
    yield info
    stop_server(base, timeout=5)


@pytest.fixture
def store_backend(request) -> str:
    """``embedded`` (the default) or ``milvus`` where the module sets ``STORE_BACKENDS``."""
    return getattr(request, "param", "embedded")


@pytest.fixture
def settings(tmp_path, store_backend, request):
    if store_backend == "embedded":
        yield Settings(data_dir=tmp_path / "data")
        return
    # Tests share the server and its collections (creating one costs seconds); each test
    # starts with no libraries and deletes what it made.
    info = request.getfixturevalue("milvus_server")
    uri = f"{info.uri}?prefix=test_&timeout=10"
    yield Settings(data_dir=tmp_path / "data", store=uri)
    from lookalike.service.backends import open_target

    store = open_target(Settings(data_dir=tmp_path / "data"), uri)
    try:
        for library in store.list_libraries():
            store.delete_library(library.name)
    finally:
        store.close()


@pytest.fixture
def runtime(settings, models):
    rt = Runtime.open(settings, models=models)
    yield rt
    rt.close()


def admin_headers(runtime: Runtime) -> dict[str, str]:
    """An ``Authorization`` header with a fresh admin token of ``runtime``: what every HTTP write needs."""
    return {"Authorization": f"Bearer {runtime.admin.create('tests')[1]}"}


@pytest.fixture
def client(runtime):
    """A client of the whole app that sends an admin token with every request (writes need one)."""
    from fastapi.testclient import TestClient

    from lookalike.api import create_app

    with TestClient(create_app(runtime), raise_server_exceptions=False, headers=admin_headers(runtime)) as c:
        yield c


@pytest.fixture
def anonymous(client):
    """The same app as ``client``, with no credential."""
    from fastapi.testclient import TestClient

    # not entered: the app's lifespan (which closes the runtime) belongs to ``client``
    return TestClient(client.app, raise_server_exceptions=False)


def shared_set(name: str) -> Path:
    """A labelled photo set from ../shared/datasets, or skip the test with the reason."""
    path = SHARED_DATASETS / name
    if not (path / "labels.csv").exists():
        pytest.skip(f"needs ../shared/datasets/{name} (real labelled photos; present in CI, absent on a fresh clone)")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``), so fixtures can act on a
    failure (the browser tests screenshot the page)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
