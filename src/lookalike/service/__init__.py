"""Use cases: library management, import and search. Depends on models and store, never on the API."""
