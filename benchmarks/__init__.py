"""Measurements behind benchmarks/RESULTS.md, each run as `python -m benchmarks.NAME` from the repository root."""
