"""Benchmarks of the built-in analyses against the physical limit and against peer libraries (`python -m benchmarks`)."""
