"""A bounded schemathesis run against the three OpenAPI documents, with valid credentials.

Every operation of the operator API (``/openapi.json``), the Modash-compatible face
(``/v1/openapi.json``) and the Constructor-compatible one (``/v2/openapi.json``) gets a few
generated requests (valid and invalid ones), sent through ASGI to a real runtime holding a
library, a creator-search token and an index key. It fails on any 5xx, on a status the
document does not declare, and on a body that breaks the declared schema.

Run more examples locally with ``LOOKALIKE_FUZZ_EXAMPLES=200 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import b64, encode, photo
from lookalike.api import create_app
from lookalike.config import Settings
from lookalike.runtime import Runtime
from lookalike.service.importer import ImportItem

EXAMPLES = int(os.environ.get("LOOKALIKE_FUZZ_EXAMPLES", "8"))
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def world(tmp_path_factory, models):
    """(settings, admin token, creator-search token, index key) of a data dir with one small library."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("fuzz") / "data")
    runtime = Runtime.open(settings, models=models)
    runtime.libraries.create("lib", "general_search")
    runtime.importer.import_items("lib", [ImportItem(image_id=f"sub/{n}", image_base64=b64(encode(photo(n))),
                                                     tags={"n": i, "name": n}) for i, n in enumerate(("coffee", "rocket"))])
    _, admin = runtime.admin.create("fuzz")
    _, token = runtime.tokens.create(10**9, "fuzz")
    key = runtime.keys.create({"Products": "lib"})
    runtime.close()
    return settings, admin, token, key


def _schema(world, models, path: str):
    # schemathesis runs the app's lifespan, which closes the runtime: one runtime per document
    return schemathesis.openapi.from_asgi(path, create_app(Runtime.open(world[0], models=models)))


#: Path parameters that name what the world holds, so generated requests also reach past the 404s.
KNOWN = {"library_name": "lib", "image_id": "sub/coffee", "platform": "instagram"}


def _fuzz(schema, prepare) -> list[str]:
    """Run every operation of ``schema`` on ``EXAMPLES`` generated cases (valid, invalid, and valid
    ones on the stored library and image), deletions last; the failures, one line each."""
    failures: list[str] = []
    operations = sorted((r.ok() for r in schema.get_all_operations()), key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        known = {k: v for k, v in KNOWN.items() if k in names}
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
            *([operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known)] if known else []),
        )

        @given(case=strategy)
        @SETTINGS
        def run(case) -> None:
            case.call_and_validate(checks=CHECKS, **prepare(case))

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collected so that one run reports every operation
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:2000]}")
    return failures


def test_operator_api_conforms(world, models):
    admin = world[1]
    schema = _schema(world, models, "/openapi.json")
    assert not _fuzz(schema, lambda case: {"headers": {"Authorization": f"Bearer {admin}"}})


def test_modash_api_conforms(world, models):
    token = world[2]
    schema = _schema(world, models, "/v1/openapi.json")
    assert not _fuzz(schema, lambda case: {"headers": {"Authorization": f"Bearer {token}"}})


def test_constructor_api_conforms(world, models):
    key = world[3]
    schema = _schema(world, models, "/v2/openapi.json")

    def prepare(case) -> dict:
        case.query = {**(case.query or {}), "key": key}
        return {}

    assert not _fuzz(schema, prepare)
