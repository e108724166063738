"""A ``PostIndex`` wrapper for tests that observe the candidate stage (shared by test modules)."""

from __future__ import annotations


class Recording:
    """Observes a ``PostIndex``: (counted, limit, returned rows or None) per ``top_posts`` call."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def top_posts(self, snapshot, vector, counted, limit):
        found = self.inner.top_posts(snapshot, vector, counted, limit)
        self.calls.append((len(counted), limit, None if found is None else len(found[0])))
        return found

    def warm(self, snapshot):
        self.inner.warm(snapshot)
