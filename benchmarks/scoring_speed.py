#!/usr/bin/env python
"""End-to-end scoring speed of ``Detector.score``: the paper's method against the improved
default, one component at a time, on grey and colour images.

``benchmarks/throughput.py`` times the network's passes alone; this script times what a user
waits for: every component (task scores, the feature and pixel k-NN searches against the banks,
the test-time mirror's second pass) and the fusion, on uint8 images. Each detector is trained for
a few steps on random images (speed does not depend on what was learnt), then scores the same
test images; the best of ``--repeat`` passes counts.

Examples::

    python benchmarks/scoring_speed.py                       # quick network, 32×32, 1000 train / 256 test
    python benchmarks/scoring_speed.py --train 4096 --json scoring_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from fgad import Detector
from fgad.core.config import PAPER_SETTINGS
from fgad.io.fileio import atomic_write_text

#: (row name, overrides): the paper's method, then the improved default built up one knob at a
#: time, so that each row's cost over the one before is that knob's.
CONFIGS: list[tuple[str, dict]] = [
    ("paper's method (ours)", dict(PAPER_SETTINGS)),
    ("improved, no mirror, no pixel k-NN", {"test_mirror": "off", "pixel_knn": 0}),
    ("improved, + pixel k-NN", {"test_mirror": "off", "pixel_knn": 1}),
    ("improved default (+ mirror on colour)", {}),
]


def measure(name: str, overrides: dict, channels: int, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    shape = (args.side, args.side, channels) if channels == 3 else (args.side, args.side)
    train = rng.integers(0, 256, (args.train, *shape), dtype=np.uint8)
    test = rng.integers(0, 256, (args.test, *shape), dtype=np.uint8)
    det = Detector(preset=args.preset, steps=args.fit_steps, seed=0, **overrides)
    det.fit(train, progress=False)
    det.score(test[:8])  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        det.score(test)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"config": name, "channels": channels, "mirrors": det.mirrors, "components": det.component_names,
            "bank": 0 if det.feature_bank is None else len(det.feature_bank), "test_images": args.test,
            "seconds": best, "images_per_s": args.test / best}


def table(rows: list[dict]) -> str:
    out = ["| images | detector | components | mirrored | bank rows | images/s | ms per image | × paper's time |",
           "| --- | --- | --- | :---: | ---: | ---: | ---: | ---: |"]
    for channels in sorted({r["channels"] for r in rows}):
        group = [r for r in rows if r["channels"] == channels]
        base = group[0]["seconds"]
        for r in group:
            out.append(f"| {'colour' if channels == 3 else 'grey'} | {r['config']} | {', '.join(r['components'])} | "
                       f"{'yes' if r['mirrors'] else 'no'} | {r['bank']} | {r['images_per_s']:.1f} | "
                       f"{1000 * r['seconds'] / r['test_images']:.1f} | {r['seconds'] / base:.2f} |")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="quick", help="network preset (default quick)")
    p.add_argument("--side", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--train", type=int, default=1000, help="training normals (20%% are held out; default 1000)")
    p.add_argument("--test", type=int, default=256, help="images scored (default 256)")
    p.add_argument("--fit-steps", type=int, default=3, help="training steps per detector (default 3)")
    p.add_argument("--repeat", type=int, default=2, help="scoring passes; the best counts (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--channels", default="1,3", help="image channels to measure, comma-separated (default 1,3)")
    p.add_argument("--json", help="also write the rows as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(name, ov, int(c), args) for c in args.channels.split(",") for name, ov in CONFIGS]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(table(rows))
    print(f"\n{args.preset} network, {args.side}×{args.side}, {args.train} training normals, {args.test} images "
          f"scored, {args.threads} thread(s), torch {torch.__version__}, load average {load:.2f}")
    if args.json:  # whole or not at all: a crash leaves no half-written file
        atomic_write_text(args.json, json.dumps({"args": vars(args), "load_average": load, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
