"""Does the jigsaw heat map find synthetic local anomalies? Hit rate vs chance (a measurement, not a test).

Trains a quick detector on one class of an ``.npz`` (x_train/y_train/x_test/y_test), pastes one
patch into each of ``--n`` held-out test images of that class (from another image of the set, or
noise; at a random or a cell-centred location), and counts how often the argmax cell of the
jigsaw occlusion heat map (:func:`fgad.tools.explain.heatmap`) overlaps the patch. Chance = the hit
rate of a uniformly random cell.

    python benchmarks/localisation.py --npz shared/data/mnist.npz --class 3 --steps 300 --n 200
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", required=True, help=".npz with x_train, y_train, x_test, y_test")
    p.add_argument("--class", dest="cls", type=int, required=True, help="normal class index")
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    p.add_argument("--n", type=int, default=200, help="test images with a pasted patch (default 200)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--tasks", default="geometric,jigsaw")
    p.add_argument("--size", type=int, help="patch side in pixels (default a quarter of the shorter side)")
    p.add_argument("--sources", default="image,noise", help="patch sources (default image,noise)")
    p.add_argument("--locations", default="random,cell", help="patch locations (default random,cell)")
    p.add_argument("--fill", default="mean", choices=["mean", "zero"], help="occlusion fill")
    p.add_argument("--max-train", type=int, help="at most this many training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--model", help="a saved detector trained on this class: skips training")
    args = p.parse_args(argv)

    import torch

    import fgad
    from fgad.tools.explain import localisation_hit_rate

    if args.threads:
        torch.set_num_threads(args.threads)
    with np.load(args.npz, allow_pickle=False) as d:
        x_train = d["x_train"][d["y_train"] == args.cls]
        x_test = d["x_test"][d["y_test"] == args.cls]
    if args.max_train:
        x_train = x_train[: args.max_train]
    rng = np.random.default_rng(args.seed)
    x_eval = x_test[np.sort(rng.choice(len(x_test), min(args.n, len(x_test)), replace=False))]
    if args.model:
        det = fgad.Detector.load(args.model, device=args.device)
        print(f"{args.npz} class {args.cls}: model {args.model} (tasks {', '.join(det.tasks)}, "
              f"{det.info.get('n_train')} training images); {len(x_eval)} test images")
    else:
        det = fgad.Detector(args.preset, tasks=tuple(args.tasks.split(",")), steps=args.steps, seed=args.seed,
                            device=args.device)
        t0 = time.perf_counter()
        det.fit(x_train, progress=sys.stderr.isatty())
        fit_s = time.perf_counter() - t0
        print(f"{args.npz} class {args.cls}: trained on {len(x_train)} images, {args.steps} steps "
              f"({args.preset}, {args.tasks}) in {fit_s:.0f} s; {len(x_eval)} test images")
    print()
    print("| source | location | n | hit rate | chance | hit / chance | s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for source in args.sources.split(","):
        for location in args.locations.split(","):
            t0 = time.perf_counter()
            res = localisation_hit_rate(det, x_eval, np.random.default_rng(args.seed + 1), size=args.size,
                                        source=source, location=location, fill=args.fill)
            ratio = res["hit_rate"] / res["chance"] if res["chance"] else float("nan")
            se = (res["hit_rate"] * (1 - res["hit_rate"]) / res["n"]) ** 0.5
            print(f"| {source} | {location} | {res['n']} | {res['hit_rate']:.3f} ± {se:.3f} | {res['chance']:.3f} "
                  f"| {ratio:.2f} | {time.perf_counter() - t0:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
