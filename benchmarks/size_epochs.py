"""Epochs of the paper preset that fit a time budget, from a measured throughput.

    python benchmarks/size_epochs.py THROUGHPUT_JSON DATA_NPZ SECONDS [--methods N] [--classes N]

Prints one number: the epochs (at most the paper's 15, at least 0.5) such that N self-supervised
methods, each trained on one normal class of DATA_NPZ and scoring its whole test split, fit in
SECONDS (60 s kept for start-up and margin, 15 s per job for process and CUDA start). Used by
``gpu_check.sh`` and ``gpu_session.sh``.
"""

import argparse
import json

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("throughput_json")
    p.add_argument("data_npz")
    p.add_argument("seconds", type=float)
    p.add_argument("--methods", type=int, default=2, help="self-supervised methods per class")
    p.add_argument("--classes", type=int, default=1, help="normal classes")
    args = p.parse_args()
    res = json.load(open(args.throughput_json))
    with np.load(args.data_npz, allow_pickle=False) as d:
        n_train = int(np.bincount(d["y_train"]).max())  # the largest class: a safe bound
        n_test = int(len(d["y_test"]))
    per_job = (args.seconds - 60) / (args.methods * args.classes)
    score_s = n_test / res["score_images_per_s"]
    train_s = max(10.0, per_job - score_s - 15)
    epochs = min(15.0, train_s * res["train_images_per_s"] / n_train)
    print(max(0.5, round(epochs, 1)))


if __name__ == "__main__":
    main()
