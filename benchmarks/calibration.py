"""Does a threshold set on held-out normal images give the false-positive rate it promises?

Trains a detector on part of one class's training images, calibrates the decision threshold on
the held-out rest at a target false-positive rate, then measures the false-positive rate on the
normal images of the test split (and the detection rate on a sample of its anomalies).

    python benchmarks/calibration.py --npz mnist.npz --classes 0,1 --target-fpr 0.05 --preset quick
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fgad import Detector
from fgad.io.fileio import atomic_write_text


def run(npz: str, normal_class: int, target_fpr: float, preset: str, holdout: float, n_anomalies: int,
        seed: int, overrides: dict) -> dict:
    d = np.load(npz)
    x_tr, y_tr, x_te, y_te = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    rng = np.random.default_rng(seed)
    normal = x_tr[y_tr == normal_class]
    order = rng.permutation(len(normal))
    n_hold = int(round(holdout * len(normal)))
    fit_x, hold_x = normal[order[n_hold:]], normal[order[:n_hold]]
    anomalies = x_te[y_te != normal_class]
    anomalies = anomalies[rng.choice(len(anomalies), min(n_anomalies, len(anomalies)), replace=False)]
    t0 = time.perf_counter()
    det = Detector(preset=preset, seed=seed, **overrides).fit(fit_x, progress=False)
    decision = det.calibrate(hold_x, target_fpr=target_fpr)
    fp = det.predict(x_te[y_te == normal_class]).mean()
    tp = det.predict(anomalies).mean()
    return {"class": normal_class, "n_fit": len(fit_x), "n_calibration": len(hold_x),
            "n_test_normal": int((y_te == normal_class).sum()), "n_test_anomalies": len(anomalies),
            "target_fpr": target_fpr, "calibration_fpr": decision["bpcer"], "test_fpr": float(fp),
            "test_detection_rate": float(tp), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", required=True)
    ap.add_argument("--classes", default="0")
    ap.add_argument("--target-fpr", type=float, default=0.05)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--holdout", type=float, default=0.2, help="fraction of the class's train images held out")
    ap.add_argument("--n-anomalies", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json")
    args = ap.parse_args()
    from fgad.cli.common import parse_overrides

    rows = [run(args.npz, int(c), args.target_fpr, args.preset, args.holdout, args.n_anomalies, args.seed,
                parse_overrides(args.set)) for c in args.classes.split(",")]
    print("| class | fit | calibration | target FPR | FPR on calibration set | FPR on test normals | "
          "detection rate | s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['class']} | {r['n_fit']} | {r['n_calibration']} | {r['target_fpr']:.3f} | "
              f"{r['calibration_fpr']:.3f} | {r['test_fpr']:.3f} ({r['n_test_normal']}) | "
              f"{r['test_detection_rate']:.3f} ({r['n_test_anomalies']}) | {r['seconds']} |")
    if args.json:  # whole or not at all: a crash leaves no half-written file
        atomic_write_text(args.json, json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
