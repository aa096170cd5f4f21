"""Fixtures for the benchmark tests (defined in bench_helpers, which the tests also import)."""

from bench_helpers import npz_path, ref  # noqa: F401
