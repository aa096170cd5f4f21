"""Property-based tests: random shapes, dtypes and values fed to the public API either work or
raise the documented error (InputError), never anything else."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fgad import Detector, InputError, metrics

DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_, np.uint16])


@pytest.fixture(scope="module")
def grey_detector():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    det = Detector(preset="tiny", steps=1, image_size=16)
    return det.fit(rng.integers(0, 256, (6, 12, 12), dtype=np.uint8), progress=False)


@st.composite
def image_like(draw):
    dtype = draw(DTYPES)
    shape = draw(array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=13))
    if int(np.prod(shape)) > 4000:
        shape = shape[:2]
    if np.dtype(dtype).kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=32)
    elif np.dtype(dtype).kind == "b":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -300), min(info.max, 300))
    return draw(arrays(dtype, shape, elements=elements))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=image_like())
def test_score_works_or_raises_input_error(grey_detector, x):
    try:
        s = grey_detector.score(x)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # It worked: then the input was a valid image batch of the training size.
    assert x.ndim in (3, 4) and x.shape[1:3] == (12, 12)
    assert s.shape == (x.shape[0],) and np.isfinite(s).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=image_like())
def test_fit_works_or_raises_input_error(x):
    det = Detector(preset="tiny", steps=1, image_size=16)
    try:
        det.fit(x, progress=False)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert x.ndim in (3, 4) and x.shape[0] >= 2


@settings(max_examples=80, deadline=None)
@given(labels=arrays(np.int64, st.integers(0, 12), elements=st.integers(-1, 2)),
       scores=arrays(np.float64, st.integers(0, 12), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_metrics_work_or_raise_input_error(labels, scores):
    try:
        out = metrics.evaluate(labels, scores)
    except InputError:
        return
    assert set(np.unique(labels)) == {0, 1} and len(labels) == len(scores)
    assert 0.0 <= out["auroc"] <= 1.0
