"""Decoding many image files with a pool of threads gives what a serial loop gives, errors included."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fgad.errors import ImageReadError
from fgad.io.imageio import PARALLEL_MIN_FILES, read_images


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(PARALLEL_MIN_FILES + 6):
        p = tmp_path / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    for i in (5, 40):  # two corrupt files
        paths[i].write_bytes(b"not an image")
    return paths


def test_threads_and_serial_decode_the_same_images_in_the_same_order(files):
    serial = read_images(files, skip_unreadable=True, workers=1)
    pooled = read_images(files, skip_unreadable=True, workers=3)
    auto = read_images(files, skip_unreadable=True)  # enough files for the pool
    for got in (pooled, auto):
        np.testing.assert_array_equal(got[0], serial[0])
        assert got[1] == serial[1] and got[2] == serial[2] == [files[5], files[40]]
    assert serial[0].shape == (len(files) - 2, 12, 10, 3)
    # Pixel for pixel the files' contents, in the order of the paths.
    np.testing.assert_array_equal(serial[0][0], np.asarray(Image.open(files[0])))


def test_threads_raise_for_the_first_bad_file_in_order(files):
    for workers in (1, 3):
        with pytest.raises(ImageReadError, match="img005.png"):
            read_images(files, workers=workers)
