"""Face anti-spoofing in the spirit of SiW-M: live faces are normal, each attack type an anomaly.

SiW-M and similar sets may not be redistributed, so there is no download: point ``root`` at
your own copy, arranged as (any depth below each folder; frames or face crops)::

    <root>/                             (defaults to $FGAD_DATA_DIR/antispoof)
    ├── live/**/*.png|jpg               class 0, "live"
    └── attack/
        ├── Makeup/**/*.png             one class per attack type, sorted by name
        ├── Mask/...
        └── Print/...

or, with a fixed split, the same two folders under ``train/`` and ``test/``::

    <root>/train/live/...  <root>/train/attack/<type>/...
    <root>/test/live/...   <root>/test/attack/<type>/...

Classes are ``["live", *attack types]``; ``groups_test`` holds each test image's class name
(``"live"`` or its attack type) and ``ids_test`` its path relative to ``<root>``. Without
``train/`` and ``test/`` the live images are split by ``test_fraction`` (seeded); attack images
all go to test by default (one-class training never uses them), or are split the same way with
``attacks="split"``. :func:`leave_one_attack_out` gives the per-attack-type evaluation sets.

Options:
    size: side of the square RGB images (default 32).
    test_fraction: fraction of live (and with ``attacks="split"``, attack) images held out (0.3).
    split_seed: seed of that split (default 0).
    attacks: ``"test"`` (default) or ``"split"``, see above; ignored with ``train/`` + ``test/``.
    skip_unreadable: skip files that cannot be decoded, counted in ``info`` (default False).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.imageio import list_images
from .base import (
    Adapter,
    ImageDataset,
    dataset_dir,
    not_found,
    opt_bool,
    opt_choice,
    opt_fraction,
    opt_int,
    opt_size,
    read_files,
    split_indices,
)

LIVE = "live"


def _scan(folder: Path) -> dict[str, list[Path]]:
    """{"live": files, <attack type>: files} for one split folder."""
    out: dict[str, list[Path]] = {}
    if (folder / LIVE).is_dir():
        out[LIVE] = list_images(folder / LIVE)
    attack = folder / "attack"
    if attack.is_dir():
        for sub in sorted(p for p in attack.iterdir() if p.is_dir()):
            if sub.name == LIVE:
                raise InputError(f"{sub}: an attack type may not be called '{LIVE}'")
            files = list_images(sub)
            if files:
                out[sub.name] = files
    return out


def load(
    root=None,
    *,
    download: bool = False,
    size: int = 32,
    test_fraction: float = 0.3,
    split_seed: int = 0,
    attacks: str = "test",
    skip_unreadable: bool = False,
) -> ImageDataset:
    hw = opt_size(size)
    test_fraction = opt_fraction(test_fraction)
    split_seed = opt_int(split_seed, "split_seed")
    attacks = opt_choice(attacks, "attacks", ("test", "split"))
    skip_unreadable = opt_bool(skip_unreadable, "skip_unreadable")
    base = dataset_dir("antispoof", root)
    folder = None
    for cand in (base, base / "antispoof"):
        if ((cand / "train").is_dir() and (cand / "test").is_dir()) or (cand / LIVE).is_dir():
            folder = cand
            break
    if folder is None:
        raise not_found(
            "antispoof",
            base,
            ["live/<images>", "attack/<attack type>/<images>"],
            extra=f"(or the same under {base / 'train'} and {base / 'test'}); "
            "anti-spoofing sets cannot be downloaded, use your own copy",
        )

    # (path, class name, is_test)
    items: list[tuple[Path, str, bool]] = []
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        split_mode = "folders"
        for split in ("train", "test"):
            found = _scan(folder / split)
            if LIVE not in found or not found[LIVE]:
                raise not_found(
                    "antispoof", folder / split, ["live/<images>"], extra="(both train/ and test/ need live images)"
                )
            for cls, files in found.items():
                items += [(p, cls, split == "test") for p in files]
    else:
        split_mode = "test_fraction"
        found = _scan(folder)
        if not found.get(LIVE):
            raise not_found("antispoof", folder, ["live/<images>"], extra="(no live images found)")
        for k, (cls, files) in enumerate(found.items()):
            if cls != LIVE and attacks == "test":
                items += [(p, cls, True) for p in files]
                continue
            rng = np.random.default_rng([split_seed, k])
            _, te = split_indices(len(files), test_fraction, rng)
            is_test = np.zeros(len(files), dtype=bool)
            is_test[te] = True
            items += [(p, cls, bool(t)) for p, t in zip(files, is_test)]

    attack_types = sorted({c for _, c, _ in items if c != LIVE})
    class_names = [LIVE, *attack_types]
    index = {c: k for k, c in enumerate(class_names)}
    x, kept, skipped = read_files(
        [p for p, _, _ in items], size=hw, mode="RGB", skip_unreadable=skip_unreadable, desc="antispoof"
    )
    items = [items[i] for i in kept]
    y = np.array([index[c] for _, c, _ in items], dtype=np.int64)
    is_test = np.array([t for _, _, t in items], dtype=bool)
    test_items = [it for it in items if it[2]]
    if is_test.all() or not is_test.any():
        raise InputError(f"{folder}: the split left {'no training' if is_test.all() else 'no test'} images")
    return ImageDataset(
        name="antispoof",
        x_train=x[~is_test],
        y_train=y[~is_test],
        x_test=x[is_test],
        y_test=y[is_test],
        class_names=class_names,
        groups_test=np.array([c for _, c, _ in test_items], dtype=str),
        ids_test=[p.relative_to(folder).as_posix() for p, _, _ in test_items],
        info={
            "source": "anti-spoofing folders (live / attack/<type>)",
            "folder": str(folder),
            "split": split_mode,
            "size": hw[0],
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "attacks": attacks,
            "skipped_unreadable": len(skipped),
            "skipped_files": [str(p) for p in skipped],
        },
    )


def leave_one_attack_out(ds: ImageDataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per attack type, the test set of live test images plus that type's test images only.

    Returns ``{attack type: (x_test, y_test_anomaly)}`` with 1 = attack, 0 = live, in the order of
    ``ds.class_names``. Attack types with no test images are left out.
    """
    groups = ds.groups_test if ds.groups_test is not None else np.array(ds.class_names)[ds.y_test]
    if LIVE not in ds.class_names:
        raise InputError(f"{ds.name}: no '{LIVE}' class; leave-one-attack-out needs live images")
    live = groups == LIVE
    if not live.any():
        raise InputError(f"{ds.name}: no live images in the test split")
    out = {}
    for attack in ds.class_names:
        if attack == LIVE:
            continue
        sel = live | (groups == attack)
        if not (groups == attack).any():
            continue
        out[attack] = (ds.x_test[sel], (groups[sel] != LIVE).astype(np.int64))
    return out


ADAPTER = Adapter(
    load=load,
    options={"size": 32, "test_fraction": 0.3, "split_seed": 0, "attacks": "test", "skip_unreadable": False},
    downloadable=False,
    summary="face anti-spoofing folders (SiW-M style): live = normal, one class per attack type",
)
