"""The pixel limit on image files: decompression bombs are refused before they are decoded.

A small file can claim a huge image (a 0.9 MB PNG of 30000×30000 pixels decodes to 900 MB).
Pillow guards against this with one process-wide setting, ``Image.MAX_IMAGE_PIXELS``: a warning
past it and an error past twice it, raised from inside ``Image.open``. fgad checks instead, per
call, against the limit it is given (``max_pixels``; by default Pillow's setting, about 89.5 M
pixels), and anything over it is an :class:`~fgad.errors.ImageReadError` naming the file, so
``--skip-unreadable`` skips and counts it like any other unreadable file.

Pillow's own check runs inside ``Image.open``; it is switched off only while one file's header is
parsed, under a lock, and restored at once, so the process's setting is never changed for longer
than that and the limit of one call never leaks into another.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from ..errors import ImageReadError

# Pillow's default ``Image.MAX_IMAGE_PIXELS`` (a quarter GiB of 3-byte pixels): 89,478,485.
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3

_OPEN_LOCK = threading.Lock()


def check_max_pixels(max_pixels: Any) -> int | None:
    """``max_pixels`` as an int >= 1 (or None: Pillow's setting); anything else is refused."""
    from ..errors import InputError

    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputError(f"max_pixels must be a whole number of pixels >= 1, got {max_pixels!r}")
    return max_pixels


@contextlib.contextmanager
def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Iterator[Any]:
    """``PIL.Image.open(path)``, refused when the image has more than ``max_pixels`` pixels.

    Yields the opened (not yet decoded) image; the caller decodes it inside the ``with``. An
    image over the limit raises :class:`ImageReadError` before any pixel is decoded.
    ``max_pixels=None`` uses the process's ``Image.MAX_IMAGE_PIXELS`` (Pillow's default unless
    changed; ``None`` there means no limit). Other errors (missing file, not an image) propagate
    from Pillow as they are.
    """
    from PIL import Image

    path = Path(path)
    max_pixels = check_max_pixels(max_pixels)
    with _OPEN_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        limit = saved if max_pixels is None else max_pixels
        Image.MAX_IMAGE_PIXELS = None  # the header only; the check is ours, below
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with im:
        width, height = im.size
        if limit is not None and width * height > limit:
            raise ImageReadError(f"{path}: {width}x{height} = {width * height} pixels, more than the limit of "
                                 f"{limit} (a possible decompression bomb); raise it with --max-pixels "
                                 f"(max_pixels) if the image is genuine")
        try:
            yield im
        except Image.DecompressionBombError as exc:  # a frame or tile past Pillow's own setting
            raise ImageReadError(f"{path}: over Pillow's pixel limit while decoding ({exc})") from exc
