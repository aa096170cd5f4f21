"""Reading image files into uint8 arrays, with one clear error per bad file.

Images are decoded with Pillow by one rule (:func:`read_image`: EXIF orientation, 16-bit
scaled by value, alpha on black). :func:`read_images` stacks files of one size (the datasets'
reader: the rule for mixed sizes is explicit, ``on_mismatch``, never silent); the command line
brings images of any size to a model's by :mod:`fgad.io.conform` instead (:mod:`fgad.io.inputs`).
Large batches are decoded by a pool of threads: Pillow releases the GIL while it decodes, so
threads use every core without the start-up and copying costs of worker processes
(``benchmarks/decoding.py`` measures it).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from ..errors import ImageReadError, InputError
from .conform import bilinear, to_channels
from .pixellimit import open_image

T = TypeVar("T")
PARALLEL_MIN_FILES = 64  # fewer files are decoded serially: not worth starting threads (not measured)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


#: ``fgad explain`` writes its pictures beside the image explained: outputs, never inputs.
EXPLANATION_SUFFIX = ".explain.png"


def list_images(folder: str | os.PathLike, recursive: bool = True, *,
                left_out: list[Path] | None = None) -> list[Path]:
    """All files under ``folder`` with an image extension, sorted by path, except the pictures
    ``fgad explain`` wrote there (``*.explain.png``): explaining an image of a folder must not add
    an image to the folder's next training or scoring. Those are appended to ``left_out`` when given."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    explanations = {p for p in files if p.name.lower().endswith(EXPLANATION_SUFFIX)}
    if left_out is not None:
        left_out.extend(p for p in files if p in explanations)
    return [p for p in files if p not in explanations]


def read_image(path: str | os.PathLike, mode: str | None = None, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode one file to uint8 H×W (grey) or H×W×3 (colour), upright.

    fgad's one decoding rule, whatever the file's mode:

    - the EXIF orientation is applied (``PIL.ImageOps.exif_transpose``);
    - grey modes stay grey: 1-bit → 0 / 255; 16-bit (``I;16``) and 32-bit integer (``I``)
      values are scaled by value, v · 255 / 65535 rounded (``I`` clipped to 0..65535 first), so
      a 16-bit image keeps its contrast instead of being clipped at 255; float (``F``) is
      clipped to 0..255 and rounded (NaN → 0);
    - every other mode (palette, RGB, CMYK, YCbCr...) becomes RGB;
    - transparency (an alpha channel, or a palette / tRNS transparent colour) is composited on
      black: each channel becomes c · a / 255, rounded.

    ``mode`` then forces ``"L"`` (ITU-R 601-2 luma) or ``"RGB"`` (the grey value repeated), as
    :func:`fgad.io.conform.to_channels`. An image of more than ``max_pixels`` pixels
    (default: Pillow's limit, about 89.5 M) is unreadable: see :mod:`fgad.io.pixellimit`.
    """
    img = _with_image(path, max_pixels, _pixels)
    return img if mode is None else _as_mode(img, mode)


def image_header(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[int, int, int]:
    """(H, W, C) that :func:`read_image` will return for the file, from its header (no decoding):
    the size after the EXIF orientation, C = 1 for grey modes, 3 for the others."""
    return _with_image(path, max_pixels, _header)


GREY_MODES = ("1", "L", "LA", "La", "I", "F")  # and every I;16 variant


def _is_grey(mode: str) -> bool:
    return mode in GREY_MODES or mode.startswith("I;16")


def _header(im: Any) -> tuple[int, int, int]:
    width, height = im.size
    # PNG's getexif() decodes the whole image when the EXIF block follows the pixels; read the
    # orientation only where the header holds it (JPEG, TIFF, WebP, and PNG's usual eXIf).
    orientation = 1 if (im.format == "PNG" and "exif" not in im.info) else im.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):  # a quarter turn: width and height swap
        width, height = height, width
    return height, width, 1 if _is_grey(im.mode) else 3


def _pixels(im: Any) -> np.ndarray:
    from PIL import ImageOps

    im.load()
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode == "I" or mode.startswith("I;16"):
        v = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        return ((v * 255 + 32767) // 65535).astype(np.uint8)  # v·255/65535 rounded (no ties)
    if mode == "F":
        v = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        return np.rint(np.clip(v, 0.0, 255.0)).astype(np.uint8)
    transparent = "transparency" in im.info
    if mode in ("LA", "La") or (mode == "L" and transparent):
        return _on_black(np.asarray(im.convert("LA")))[..., 0]
    if _is_grey(mode):
        return np.array(im.convert("L") if mode != "L" else im, dtype=np.uint8)
    if mode in ("RGBA", "RGBa", "PA") or transparent:
        return _on_black(np.asarray(im.convert("RGBA")))
    return np.array(im.convert("RGB") if mode != "RGB" else im, dtype=np.uint8)


def _on_black(pixels: np.ndarray) -> np.ndarray:
    """H×W×(C+1) pixels with alpha last → H×W×C composited on black, c·a/255 rounded."""
    colour, alpha = pixels[..., :-1].astype(np.uint32), pixels[..., -1:].astype(np.uint32)
    return ((colour * alpha + 127) // 255).astype(np.uint8)  # rounded: c·a/255 is never a tie


def _with_image(path: str | os.PathLike, max_pixels: int | None, fn: Callable[[Any], T]) -> T:
    """``fn(opened image)``, every failure to read the file one :class:`ImageReadError`."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    try:
        with open_image(path, max_pixels) as im:
            return fn(im)
    except ImageReadError:
        raise  # over the pixel limit: the message says so already
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: no such file") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{path}: not an image file Pillow can read") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: unreadable or truncated image ({exc})") from exc


def _as_mode(img: np.ndarray, mode: str) -> np.ndarray:
    """A decoded image as H×W (``"L"``) or H×W×3 (``"RGB"``), by :func:`fgad.io.conform.to_channels`."""
    if mode not in ("L", "RGB"):
        raise InputError(f"mode must be 'L' or 'RGB', got {mode!r}")
    out = to_channels(img, 1 if mode == "L" else 3)
    return out[..., 0] if mode == "L" else out


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = bilinear(img[..., None] if img.ndim == 2 else img, *size)
    return out[..., 0] if img.ndim == 2 else out


def read_images(
    paths: Sequence[str | os.PathLike],
    *,
    size: tuple[int, int] | None = None,
    mode: str | None = None,
    on_mismatch: str = "error",
    skip_unreadable: bool = False,
    workers: int | None = None,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, list[Path], list[Path]]:
    """Read many files into one uint8 array N×H×W or N×H×W×3.

    Args:
        paths: image files.
        size: (H, W) to resize every image to; ``None`` keeps the files' own size.
        mode: ``"L"``, ``"RGB"`` or ``None`` (grey if every file is grey, else RGB).
        on_mismatch: when files differ in size and ``size`` is ``None``: ``"error"`` refuses,
            ``"resize"`` resizes every image to the size of the first one.
        skip_unreadable: skip files that cannot be decoded (or have more than ``max_pixels``
            pixels) instead of raising.
        workers: decoding threads; ``None``: one per CPU (at most 8) from
            ``PARALLEL_MIN_FILES`` files on, else 1. The result does not depend on it.
        max_pixels: the largest image accepted, in pixels (default: Pillow's limit).

    Returns:
        (images, paths read, paths skipped).
    """
    if on_mismatch not in ("error", "resize"):
        raise InputError(f"on_mismatch must be 'error' or 'resize', got {on_mismatch!r}")
    decoded: list[np.ndarray] = []
    kept: list[Path] = []
    skipped: list[Path] = []
    for p, img in zip(paths, _decode_all(paths, skip_unreadable, workers, max_pixels)):
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
        img = _as_mode(img, mode)
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
                workers: int | None, max_pixels: int | None = None) -> list[np.ndarray | None]:
    """Decoded files in order, None for an unreadable one when skipping."""

    def one(p):
        try:
            return read_image(p, max_pixels=max_pixels)
        except ImageReadError:
            if not skip_unreadable:
                raise
            return None

    return list(map_files(one, paths, workers))


def iter_batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
