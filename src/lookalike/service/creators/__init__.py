"""Creator search (Modash-compatible): everything about creators that is not storage or HTTP.

- ``platforms``: each platform's rules (endpoints, page sizes, prices, stats keys, filters);
- ``lines`` / ``importer``: the JSONL line format and the import pipeline;
- ``filters`` / ``search``: validated search filters and the ranking;
- ``access``: tokens, rate limits and credits; ``gateway``: the billed search use case;
- ``dictionaries`` / ``brands``: locations, languages and brands of the filters;
- ``admin``: the operator's creator routes (count, delete, import).

Storage lives in ``store/creator_store.py``, ``store/creator_types.py`` and ``store/token_store.py``.
"""
