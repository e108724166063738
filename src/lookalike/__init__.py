"""Lookalike: a self-hosted visual search engine.

Layers, data flowing one way::

    api (FastAPI) / cli (typer)  ->  service  ->  models (ONNX Runtime embedders)
                                              ->  store (durable rows + vector index)
"""

__version__ = "0.1.0"
