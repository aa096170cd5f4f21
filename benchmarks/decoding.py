#!/usr/bin/env python
"""Image-file decoding speed: one thread against the thread pool of ``fgad.io.imageio``.

Writes N JPEG files (random pixels, or the images of an ``.npz`` given with ``--npz``) to a
temporary folder, then reads them back twice each way (the best time counts):

- ``read_images``: the whole folder at its own size (what ``fgad train FOLDER`` does);
- ``read_files(size=...)``: decode and resize each file (what the dataset adapters do).

Examples::

    python benchmarks/decoding.py                    # 2000 files of 256×256
    python benchmarks/decoding.py --files 5000 --side 128 --json decoding.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fgad.data.base import read_files
from fgad.io.imageio import read_images


def write_files(folder: Path, n: int, side: int, npz: str | None) -> list[Path]:
    rng = np.random.default_rng(0)
    source = None
    if npz:
        with np.load(npz, allow_pickle=False) as d:
            source = d["x_train"] if "x_train" in d.files else d[d.files[0]]
    paths = []
    for i in range(n):
        if source is not None:
            img = Image.fromarray(source[i % len(source)]).resize((side, side), Image.BILINEAR)
        else:
            img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        p = folder / f"{i:06d}.jpg"
        img.convert("RGB").save(p, quality=90)
        paths.append(p)
    return paths


def best_of(fn, repeat: int = 2) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--side", type=int, default=256, help="side of the written images (default 256)")
    p.add_argument("--size", type=int, default=32, help="side the adapters resize to (default 32)")
    p.add_argument("--npz", help="take the pixels from this .npz (x_train) instead of random ones")
    p.add_argument("--workers", type=int, help="threads of the pool (default: fgad's choice)")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    if args.files < 1 or args.side < 1 or args.size < 1:
        print("decoding.py: error: --files, --side and --size must be >= 1", file=sys.stderr)
        return 2
    pool = args.workers or min(os.cpu_count() or 1, 8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.files, args.side, args.npz)
        for name, fn in (("read_images (own size)", lambda w: read_images(paths, workers=w)),
                         (f"read_files (resize to {args.size})",
                          lambda w: read_files(paths, size=(args.size, args.size), workers=w))):
            serial = best_of(lambda: fn(1))
            pooled = best_of(lambda: fn(pool))
            rows.append({"reader": name, "files": args.files, "side": args.side, "threads": pool,
                         "serial_files_per_s": args.files / serial, "pool_files_per_s": args.files / pooled,
                         "speed_up": serial / pooled})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.files} JPEG files of {args.side}×{args.side}, {os.cpu_count()} CPUs (load average {load:.2f})")
    print(f"| reader | 1 thread (files/s) | {pool} threads (files/s) | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['reader']} | {r['serial_files_per_s']:.0f} | {r['pool_files_per_s']:.0f} | {r['speed_up']:.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_average": load, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
