"""Fixtures of the performance-feature tests (helpers in integration_helpers, which the tests import)."""

from __future__ import annotations

import pytest

from integration_helpers import write_npz


@pytest.fixture(scope="session")
def perf_npz(tmp_path_factory):
    """3 classes × 8 train + 8 test images of 16×16 (grey)."""
    return write_npz(tmp_path_factory.mktemp("perfdata") / "perf3.npz")
