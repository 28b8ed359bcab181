"""Micro-benchmarks of model components (timings only, no assertions)."""
