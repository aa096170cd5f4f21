"""Reading image files into uint8 arrays, with one clear error per bad file.

Images are decoded with Pillow. A batch must share one size and channel count; the rule for
mixed folders is explicit (``on_mismatch``), never silent. Large batches are decoded by a pool of
threads: Pillow releases the GIL while it decodes, so threads use every core without the start-up
and copying costs of worker processes (``benchmarks/decoding.py`` measures it).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import ImageReadError, InputError

T = TypeVar("T")
PARALLEL_MIN_FILES = 64  # fewer files are decoded serially: not worth starting threads (not measured)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """All files under ``folder`` with an image extension, sorted by path."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    pattern = "**/*" if recursive else "*"
    files = [p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files)


def read_image(path: str | os.PathLike, mode: str | None = None) -> np.ndarray:
    """Decode one file to uint8 H×W (grey) or H×W×3 (colour).

    ``mode`` forces ``"L"`` (grey) or ``"RGB"``; by default grey files stay grey and everything
    else (palette, RGBA, CMYK...) becomes RGB.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if mode is None:
                mode = "L" if im.mode in ("L", "1", "I;16", "I", "F") else "RGB"
            if im.mode != mode:
                im = im.convert(mode)
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: no such file") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{path}: not an image file Pillow can read") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: unreadable or truncated image ({exc})") from exc


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR), dtype=np.uint8)


def read_images(
    paths: Sequence[str | os.PathLike],
    *,
    size: tuple[int, int] | None = None,
    mode: str | None = None,
    on_mismatch: str = "error",
    skip_unreadable: bool = False,
    workers: int | None = None,
) -> tuple[np.ndarray, list[Path], list[Path]]:
    """Read many files into one uint8 array N×H×W or N×H×W×3.

    Args:
        paths: image files.
        size: (H, W) to resize every image to; ``None`` keeps the files' own size.
        mode: ``"L"``, ``"RGB"`` or ``None`` (grey if every file is grey, else RGB).
        on_mismatch: when files differ in size and ``size`` is ``None``: ``"error"`` refuses,
            ``"resize"`` resizes every image to the size of the first one.
        skip_unreadable: skip files that cannot be decoded instead of raising.
        workers: decoding threads; ``None``: one per CPU (at most 8) from
            ``PARALLEL_MIN_FILES`` files on, else 1. The result does not depend on it.

    Returns:
        (images, paths read, paths skipped).
    """
    if on_mismatch not in ("error", "resize"):
        raise InputError(f"on_mismatch must be 'error' or 'resize', got {on_mismatch!r}")
    decoded: list[np.ndarray] = []
    kept: list[Path] = []
    skipped: list[Path] = []
    for p, img in zip(paths, _decode_all(paths, skip_unreadable, workers)):
        if img is None:
            skipped.append(Path(p))
        else:
            decoded.append(img)
            kept.append(Path(p))
    if not decoded:
        raise InputError("no readable images" + (f" ({len(skipped)} unreadable skipped)" if skipped else ""))
    if mode is None:
        mode = "L" if all(d.ndim == 2 for d in decoded) else "RGB"
    out = []
    target = size
    for img, p in zip(decoded, kept):
        img = _convert(img, mode)
        if target is None:
            target = img.shape[:2]
        if img.shape[:2] != tuple(target):
            if size is None and on_mismatch == "error":
                raise InputError(
                    f"{p}: image is {img.shape[1]}x{img.shape[0]} but {kept[0]} is "
                    f"{target[1]}x{target[0]}; pass a size or resize mismatched images"
                )
            img = _resize(img, tuple(target))
        out.append(img)
    return np.stack(out), kept, skipped


def map_files(fn: Callable[[Any], T], paths: Sequence[Any], workers: int | None = None) -> Iterator[T]:
    """``fn`` over ``paths``, results in order, by a thread pool for many files (``workers``:
    ``None`` = one thread per CPU, at most 8, from ``PARALLEL_MIN_FILES`` files on). The first
    exception in path order is raised, as a serial loop would raise it."""
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if len(paths) >= PARALLEL_MIN_FILES else 1
    if workers <= 1:
        yield from map(fn, paths)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fgad-decode") as pool:
        yield from pool.map(fn, paths)


def _decode_all(paths: Sequence[str | os.PathLike], skip_unreadable: bool,
                workers: int | None) -> list[np.ndarray | None]:
    """Decoded files in order, None for an unreadable one when skipping."""

    def one(p):
        try:
            return read_image(p)
        except ImageReadError:
            if not skip_unreadable:
                raise
            return None

    return list(map_files(one, paths, workers))


def _convert(img: np.ndarray, mode: str) -> np.ndarray:
    if mode == "L" and img.ndim == 3:
        # ITU-R 601-2 luma, the same rule as Pillow's convert("L").
        return (img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114 + 0.5).astype(np.uint8)
    if mode == "RGB" and img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=-1)
    return img


def iter_batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
