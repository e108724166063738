"""Relevance evaluation on labelled photo sets (``images/`` + ``labels.csv``)."""
