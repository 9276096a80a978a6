"""Searching: lexical fields, dense search, fusion, the hybrid retriever and its filters (never answering)."""
