"""Caltech-UCSD Birds: CUB-200-2011 or the older CUB-200 (2010), detected from the files present.

CUB-200-2011 layout (``<root>`` defaults to ``$FGAD_DATA_DIR/cub200``)::

    <root>/
    ├── CUB_200_2011.tgz                (optional: extracted here on first use)
    └── CUB_200_2011/                   (or these files directly in <root>)
        ├── images.txt                  "<image id> <path under images/>"
        ├── image_class_labels.txt      "<image id> <class id, from 1>"
        ├── train_test_split.txt        "<image id> <1 = train, 0 = test>"
        ├── classes.txt                 "<class id> <name>", e.g. "1 001.Black_footed_Albatross"
        └── images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg ...

CUB-200 (2010) layout::

    <root>/
    ├── lists/
    │   ├── train.txt                   "<class folder>/<file>.jpg", one per line
    │   ├── test.txt
    │   └── classes.txt                 "001.Black_footed_Albatross", one per line
    └── images/<class folder>/<file>.jpg

Class names drop the numeric prefix (``Black_footed_Albatross``). Paths in the index files must
be relative and must not climb out with ``..``: anything else is refused. Images are read as RGB
and resized (without keeping the aspect ratio) to ``size``×``size``.

Options:
    size: output side in pixels (default 32).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Adapter, ImageDataset, dataset_dir, not_found, opt_size, read_files, safe_relpath

FILES_2011 = ["images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"]
FILES_2010 = ["lists/train.txt", "lists/test.txt", "lists/classes.txt"]
ARCHIVES = ["CUB_200_2011.tgz", "images.tgz", "lists.tgz"]


def _clean_name(name: str) -> str:
    return re.sub(r"^\d+\.", "", name.strip())


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of an index file with their 1-based line numbers."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _pairs(path: Path) -> dict[str, str]:
    out = {}
    for i, line in _lines(path):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise InputError(f"{path} line {i}: expected '<id> <value>', got {line!r}")
        out[parts[0]] = parts[1].strip()
    return out


def _detect(base: Path) -> tuple[str, Path] | None:
    for cand in (base, base / "CUB_200_2011", base / "cub200", base / "cub200" / "CUB_200_2011"):
        if all((cand / f).is_file() for f in FILES_2011):
            return "2011", cand
        if all((cand / f).is_file() for f in FILES_2010):
            return "2010", cand
    return None


def _index_2011(folder: Path):
    images = _pairs(folder / "images.txt")
    labels = _pairs(folder / "image_class_labels.txt")
    split = _pairs(folder / "train_test_split.txt")
    classes = _pairs(folder / "classes.txt")
    try:
        class_ids = sorted(classes, key=int)
    except ValueError:
        raise InputError(f"{folder / 'classes.txt'}: class ids must be integers") from None
    class_index = {cid: k for k, cid in enumerate(class_ids)}
    names = [_clean_name(classes[c]) for c in class_ids]
    rows = []
    for img_id, rel in images.items():
        where = f"{folder / 'images.txt'} (image {img_id})"
        relp = safe_relpath(rel, where)
        if img_id not in labels:
            raise InputError(f"{folder / 'image_class_labels.txt'}: no label for image {img_id}")
        if img_id not in split:
            raise InputError(f"{folder / 'train_test_split.txt'}: no split flag for image {img_id}")
        if labels[img_id] not in class_index:
            raise InputError(f"{folder / 'image_class_labels.txt'}: image {img_id} has unknown class {labels[img_id]}")
        if split[img_id] not in ("0", "1"):
            raise InputError(
                f"{folder / 'train_test_split.txt'}: image {img_id} has flag {split[img_id]!r}, expected 0 or 1"
            )
        rows.append((relp, class_index[labels[img_id]], split[img_id] == "1"))
    return rows, names


def _index_2010(folder: Path):
    class_dirs = [line for _, line in _lines(folder / "lists" / "classes.txt")]
    class_index = {c: k for k, c in enumerate(class_dirs)}
    rows = []
    for fname, is_train in (("train.txt", True), ("test.txt", False)):
        path = folder / "lists" / fname
        for i, line in _lines(path):
            relp = safe_relpath(line, f"{path} line {i}")
            if len(relp.parts) < 2 or relp.parts[0] not in class_index:
                raise InputError(
                    f"{path} line {i}: {line!r} is not '<class folder>/<file>' with a class from lists/classes.txt"
                )
            rows.append((relp, class_index[relp.parts[0]], is_train))
    return rows, [_clean_name(c) for c in class_dirs]


def load(root=None, *, download: bool = False, size: int = 32) -> ImageDataset:
    hw = opt_size(size)
    base = dataset_dir("cub200", root)
    found = _detect(base)
    extracted = []
    if found is None:
        from .download import fetch, safe_extract

        for folder in (base, base / "cub200"):
            for arch in ARCHIVES:
                if (folder / arch).is_file():
                    safe_extract(folder / arch, folder)
                    extracted.append(str(folder / arch))
        if not extracted and download:
            (arch,) = fetch("cub200", base)
            safe_extract(arch, base)
            extracted.append(str(arch))
        found = _detect(base)
    if found is None:
        raise not_found(
            "cub200",
            base,
            [f"CUB_200_2011/{f}" for f in FILES_2011] + ["CUB_200_2011/images/..."],
            download=True,
            extra=(
                f"(or put the archive CUB_200_2011.tgz there; for CUB-200 (2010) put "
                f"{', '.join(FILES_2010)} and images/ there)"
            ),
        )
    version, folder = found
    rows, names = _index_2011(folder) if version == "2011" else _index_2010(folder)
    if not rows:
        raise InputError(f"{folder}: the index files list no images")
    paths = [folder / "images" / Path(*r[0].parts) for r in rows]
    x, kept, _ = read_files(paths, size=hw, mode="RGB", desc="cub200")
    y = np.array([rows[i][1] for i in kept], dtype=np.int64)
    is_train = np.array([rows[i][2] for i in kept], dtype=bool)
    rel = [rows[i][0].as_posix() for i in kept]
    return ImageDataset(
        name="cub200",
        x_train=x[is_train],
        y_train=y[is_train],
        x_test=x[~is_train],
        y_test=y[~is_train],
        class_names=names,
        ids_test=[r for r, t in zip(rel, is_train) if not t],
        info={
            "source": "CUB-200-2011 (Wah et al. 2011)" if version == "2011" else "CUB-200 (Welinder et al. 2010)",
            "layout": version,
            "folder": str(folder),
            "size": hw[0],
            **({"extracted_from": extracted} if extracted else {}),
        },
    )


ADAPTER = Adapter(
    load=load,
    options={"size": 32},
    downloadable=True,
    summary="Caltech-UCSD Birds (CUB-200-2011 or CUB-200 2010), 200 species, resized RGB",
)
