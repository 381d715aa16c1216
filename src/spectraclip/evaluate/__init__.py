"""Benchmarks: zero-shot classification, multi-label and retrieval metrics, template sets, reports."""
