"""Study, step 2: score every candidate from the raw outputs that ``study_dump.py`` kept.

Candidates, fixed before any run (at most three per knob):

- score of a task (2a): ``p`` = Σ softmax(true) over views and heads (the paper's eq. 4, float32
  softmax as the network gives it); ``logp`` = Σ log softmax(true) in float64; ``dir`` = a
  Dirichlet per (view, head) fitted on the training normals' softmax vectors (float64),
  Σ (α − 1)·log p (GEOM's score without its constant).
- fusion of the components (2b): ``mean`` = plain mean (the paper's eq. 3); ``z`` = each
  component standardised by the mean and standard deviation of the held-out normals, then the
  mean; ``rank`` = each component replaced by the share of held-out normals that score more
  normal, then the mean. ``ztrain`` = ``z`` with statistics of the training normals instead.
- jigsaw offsets at test (2d): centred (the paper's), or the mean over the centred and 4 random
  draws of the log probability (``avg``).
- a feature component (2e): cosine distance of the L2-normalised backbone features of the
  untransformed image to its nearest training normal (``knn1``), or the mean over the 5 nearest
  (``knn5``).

Every score is oriented as an anomaly score (higher = more anomalous). Output: one TSV line per
(job, candidate) with its AUROC, the floor's AUROC beside it, and label-free checks on held-out
normals (per-head accuracy, share of exact ties of the jigsaw sum at its maximum).

    python benchmarks/study_eval.py study/dumps --out study/eval.tsv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fgad.methods.deepgeo import fit_dirichlet_stats
from fgad.metrics import auroc

FLOOR = 1e-12


def log_softmax_heads(logits: np.ndarray, head_sizes) -> list[np.ndarray]:
    """Float64 log-softmax of each head's slice: a list of N×V×size arrays."""
    out, start = [], 0
    z = logits.astype(np.float64)
    for size in head_sizes:
        part = z[..., start : start + size]
        part = part - part.max(-1, keepdims=True)
        out.append(part - np.log(np.exp(part).sum(-1, keepdims=True)))
        start += size
    return out


def softmax32_heads(logits: np.ndarray, head_sizes) -> list[np.ndarray]:
    """Float32 softmax of each head, as the paper's score sees it (saturates at 1.0)."""
    import torch

    out, start = [], 0
    t = torch.from_numpy(logits.astype(np.float32))
    for size in head_sizes:
        out.append(torch.softmax(t[..., start : start + size], -1).numpy())
        start += size
    return out


def true_class(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """N×V×K values → N×V values at each view's true class ``labels`` (V)."""
    return np.take_along_axis(values, labels[None, :, None], -1)[..., 0]


class Job:
    def __init__(self, path: Path):
        self.path = path
        self.d = dict(np.load(path))
        self.tasks = [k[len("labels_"):] for k in self.d if k.startswith("labels_")]
        self.y = self.d["y_test"]

    def labels(self, task):
        return self.d[f"labels_{task}"], tuple(int(v) for v in self.d[f"head_sizes_{task}"])

    def task_score(self, task: str, split: str, kind: str, jig: str = "centred") -> np.ndarray:
        """Normality of each image for one task (higher = more normal)."""
        labels, sizes = self.labels(task)
        logits = self.d[f"{split}_logits_{task}"]
        if kind == "p":
            return sum(true_class(p, labels[:, h]).sum(1) for h, p in enumerate(softmax32_heads(logits, sizes)))
        if kind == "logp":
            lp = sum(true_class(p, labels[:, h]).sum(1) for h, p in enumerate(log_softmax_heads(logits, sizes)))
            if task == "jigsaw" and jig == "avg":
                draws = self.d[f"{split}_logits_jigsaw_random"]  # N×D×V×k
                rnd = [sum(true_class(p, labels[:, h]).sum(1) for h, p in
                           enumerate(log_softmax_heads(draws[:, i], sizes))) for i in range(draws.shape[1])]
                lp = (lp + sum(rnd)) / (1 + len(rnd))
            return lp
        if kind == "dir":
            train_lp = log_softmax_heads(self.d[f"train_logits_{task}"], sizes)
            lp = log_softmax_heads(logits, sizes)
            total = 0.0
            for tl, head_lp in zip(train_lp, lp):
                p = np.exp(tl)
                alpha = fit_dirichlet_stats(p.mean(0), np.maximum(tl, np.log(FLOOR)).mean(0))  # V×K
                total = total + ((alpha[None] - 1.0) * np.maximum(head_lp, np.log(FLOOR))).sum((1, 2))
            return total
        raise ValueError(kind)

    def knn(self, split: str, k: int) -> np.ndarray:
        """Normality from features: minus the mean cosine distance to the k nearest training normals."""
        bank = self.d["train_features"]
        bank = bank / np.linalg.norm(bank, axis=1, keepdims=True).clip(1e-12)
        f = self.d[f"{split}_features"]
        f = f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-12)
        dist = 1.0 - f @ bank.T
        if split == "train":  # leave the image itself out
            np.fill_diagonal(dist, np.inf)
        return -np.sort(dist, 1)[:, :k].mean(1)

    def checks(self) -> dict[str, float]:
        """Label-free: per-head accuracy on held-out normals; exact ties of the jigsaw sum."""
        out = {}
        for task in self.tasks:
            labels, sizes = self.labels(task)
            for h, lp in enumerate(log_softmax_heads(self.d[f"held_logits_{task}"], sizes)):
                out[f"acc_{task}_{h}"] = float((lp.argmax(-1) == labels[None, :, h]).mean())
        if "jigsaw" in self.tasks:
            s = self.task_score("jigsaw", "test", "p")
            out["jigsaw_ties_at_max"] = float((s == s.max()).mean())
        return out


def fuse(components: dict[str, dict[str, np.ndarray]], fusion: str) -> np.ndarray:
    """Anomaly score of the test images from normality components per split."""
    parts = []
    for c in components.values():
        test = c["test"]
        if fusion == "mean":
            parts.append(test)
        elif fusion in ("z", "ztrain"):
            ref = c["held"] if fusion == "z" else c["train"]
            parts.append((test - ref.mean()) / max(ref.std(), 1e-12))
        elif fusion == "rank":
            ref = np.sort(c["held"])
            parts.append(np.searchsorted(ref, test, side="right") / len(ref))
        else:
            raise ValueError(fusion)
    return -np.mean(parts, axis=0)


def candidates(job: Job):
    """(name, anomaly scores of the test images) of every candidate for one job."""
    splits = ("train", "held", "test")
    comp = {}
    for task in job.tasks:
        for kind in ("p", "logp", "dir"):
            comp[(task, kind)] = {s: job.task_score(task, s, kind) for s in splits}
        if task == "jigsaw":
            comp[(task, "logp-avg")] = {s: job.task_score(task, s, "logp", "avg") for s in splits}
    for k in (1, 5):
        comp[("feat", f"knn{k}")] = {s: job.knn(s, k) for s in splits}
    tasks = job.tasks
    for kind in ("p", "logp", "dir"):
        sel = {t: comp[(t, kind)] for t in tasks}
        for fusion in ("mean", "z", "ztrain", "rank"):
            yield f"{kind}|{fusion}", fuse(sel, fusion)
        if "jigsaw" in tasks and kind == "logp":
            sel2 = {**sel, "jigsaw": comp[("jigsaw", "logp-avg")]}
            for fusion in ("z", "rank"):
                yield f"logp-jigavg|{fusion}", fuse(sel2, fusion)
        for knn in ("knn1", "knn5"):
            if kind == "p":
                continue
            selk = {**sel, "feat": comp[("feat", knn)]}
            for fusion in ("z", "rank"):
                yield f"{kind}+{knn}|{fusion}", fuse(selk, fusion)
    for t in tasks:
        yield f"only-{t}-logp", -comp[(t, "logp")]["test"]
    for knn in ("knn1", "knn5"):
        yield f"only-{knn}", -comp[("feat", knn)]["test"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps")
    p.add_argument("--out", default="-")
    args = p.parse_args()
    rows = ["dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"]
    for path in sorted(Path(args.dumps).glob("*/*/class*_seed*.npz")):
        dataset, variant = path.parts[-3], path.parts[-2]
        cls, seed = path.stem.replace("class", "").split("_seed")
        job = Job(path)
        floor = auroc(job.y, job.d["floor_scores"])
        checks = ";".join(f"{k}={v:.4f}" for k, v in job.checks().items())
        for name, score in candidates(job):
            rows.append(
                f"{dataset}\t{variant}\t{cls}\t{seed}\t{name}\t{auroc(job.y, score):.5f}\t{floor:.5f}\t{checks}"
            )
    text = "\n".join(rows) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
