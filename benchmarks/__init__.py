"""Benchmarks: scripts that print a table and write JSON; run from the repository root as
``python -m benchmarks.<name>`` (their last figures are in BENCHMARKS.md)."""
