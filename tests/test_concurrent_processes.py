"""The server and the CLI share one data dir: writes by one are seen by the other."""

from __future__ import annotations

from conftest import b64, encode, photo
from lookalike.runtime import Runtime
from lookalike.service.importer import ImportItem


def test_writes_from_another_runtime_are_seen_without_restart(settings, models):
    server = Runtime.open(settings, models=models)
    cli = Runtime.open(settings, models=models)
    try:
        cli.libraries.create("lib")
        assert server.search.by_image("lib", b64(encode(photo("coffee")))) == []
        cli.importer.import_items("lib", [ImportItem(image_id=n, image_base64=b64(encode(photo(n))), tags={"n": n})
                                          for n in ("coffee", "rocket")])
        assert [r.image_id for r in server.search.by_image("lib", b64(encode(photo("coffee"))))] == ["coffee", "rocket"]
        cli.libraries.update_tags("lib", "rocket", {"n": "launch"})
        cli.libraries.delete_image("lib", "coffee")
        results = server.search.by_image("lib", b64(encode(photo("coffee"))))
        assert [(r.image_id, r.tags) for r in results] == [("rocket", {"n": "launch"})]
        cli.libraries.delete("lib")
        cli.libraries.create("lib")
        assert server.search.by_image("lib", b64(encode(photo("coffee")))) == []
    finally:
        cli.close()
        server.close()
