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
- a weight for the feature component (2e, pre-registered after the report suite's first
  measurement; chosen on the development suite only): ``logp+knn1|z-wW`` = the frozen candidate
  with the feature component weighted W ∈ {2, 3} against 1 per task in the z-score mean (W = 1 is
  the frozen ``logp+knn1|z``). Rule fixed before running it: a W replaces 1 only if the mean of
  the development datasets' means gains ≥ 0.5 points and no dataset loses more than 0.5.

Bounded evidence per component (2b, pre-registered after the report suite's first measurement;
chosen on the development suite only): with the z-score fusion, a component nearly constant on
the held-out normals (the jigsaw's, std 0.02–0.5 in log probability) gives anomalies z-scores of
−10 to −160 that drown the other components. Candidates, each the default
(``logp+knn1|z-w3``) with every component's z-score transformed before the weighted mean:
``zlog`` = sign(z)·ln(1 + |z|), ``zclip`` = z clipped to [−3, 3]. Rule, fixed before running
them (``--score-rule``): a candidate replaces the plain z-score only if the mean over the
development datasets of its paired difference gains ≥ 0.5 points and no dataset loses more than
0.5.

Training-side candidates (2c, 2d; ``study_dump.py``'s variants ``ours-vpi9``, ``ours-hflip``,
``ours-jigrand10``), fixed before any of them ran, each scored with the default score
(``logp+knn1|z-w3``) against the default's training (``ours``) on the same development jobs
(``--training-rule``). Rule: a candidate replaces the default's training only if the mean over
the development datasets of its paired mean difference gains ≥ 0.5 points, no dataset loses
more than 0.5, and its median training time is at most 1.2× the default's on the same jobs.
``ours-hflip`` trains exactly as ``ours`` on grey images (MNIST, fonts), so there it takes
``ours``' AUROCs. The geometric-only network (``mhrot``) under the same score was seen to lead
on the development suite (CUB 50–59, fonts 8–15, MNIST 5–7) before this rule was written: it is a
candidate only if the rule also holds on development classes not looked at then (CUB 60–69,
MNIST 8–9: ``--rule-classes cub:60-69,mnist:8-9``).

Task loss weights (2f; variants ``ours-jw05``, ``ours-jw2``: the jigsaw loss weighted ½ or 2),
fixed before either ran, under the same rule and score, against the improved default's training
(``ours-hflip``, which is ``ours`` on grey images) on the same development jobs
(``--weight-rule``). A loss weight changes no step's compute, so the time condition holds by
construction; the printed ratio compares machines wherever the reference ran on another one.

Test-time mirrors and pixel-space components (pre-registered after the report suite's measurement
of the third freeze, which missed its CUB and MNIST-digit-0 targets, before any of these ran;
chosen on the development suite only), each the default score (``logp+knn1|z-w3``) on the
improved default's training (``ours-hflip``) with one change:

- ``+mirror`` (colour images only; training flips them, so a mirror is as normal as the image):
  every component (each task's log probability, the feature kNN) is the mean of its value on the
  image and on its left-right mirror; ``+mirror-bank``: the same, with the training normals'
  mirrors in the kNN bank too. Each doubles the network's scoring passes.
- ``+pix-mean``: a further component of weight 1, minus the distance of the pixels to the mean
  training normal image (the floor's own score); ``+pix-knn``: minus the pixels' cosine distance
  to the nearest training normal. Both z-scored on the held-out normals, as every component.

Rule, fixed before running them (``--score-rule mirror``, ``--score-rule pixel``): the rule of the
bounded-evidence candidates, over the development datasets it applies to, seed 0 — for mirrors
the colour ones (CUB 50–59, CIFAR-10 5–9), for pixel components all four (those and fonts 8–15,
MNIST 5–9). Of two passing candidates of one knob, the larger mean gain; if both knobs have one,
their combination (``+mirror+pix-mean`` and the like, computed too) replaces the default only if
it passes the same rule against the default, else the single change with the larger mean gain.

The pixel component as a detector computes it (registered after the rules above passed, before
it ran): ``+pix-knn-input`` is ``+pix-knn`` on the network's input (images padded or resized to
its side, 32 in ``quick``: bounded memory, and the same input as the ONNX graph) instead of the
native pixels. Rule (``--score-rule shipped``): ``+mirror-bank+pix-knn-input`` must pass the same
rule against the default on all four development datasets, or the library keeps the native form.

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
import torch

from fgad.core import scoring as S
from fgad.metrics import auroc


class Job:
    def __init__(self, path: Path):
        self.path = path
        self.d = dict(np.load(path))
        self.tasks = [k[len("labels_"):] for k in self.d if k.startswith("labels_")]
        self.y = self.d["y_test"]

    def labels(self, task):
        return self.d[f"labels_{task}"], tuple(int(v) for v in self.d[f"head_sizes_{task}"])

    def task_score(self, task: str, split: str, kind: str, jig: str = "centred") -> np.ndarray:
        """Normality of each image for one task (higher = more normal), by the library's score math
        (:mod:`fgad.core.scoring`): the study measures what the package ships."""
        labels, sizes = self.labels(task)
        labels = torch.from_numpy(labels)
        logits = torch.from_numpy(self.d[f"{split}_logits_{task}"])
        alphas = None
        if kind == "dir":  # one Dirichlet per (view, head), fitted on the training normals
            n = self.d[f"train_logits_{task}"].shape[0]
            moments = S.softmax_moments(torch.from_numpy(self.d[f"train_logits_{task}"]), sizes)
            alphas = [torch.from_numpy(S.fit_dirichlet_stats((sp / n).numpy(), (slp / n).numpy()))
                      for sp, slp in moments]
        kind_name = {"p": "prob", "logp": "logprob", "dir": "dirichlet"}[kind]
        score = S.task_score(logits, labels, sizes, kind_name, alphas).double().numpy()
        if task == "jigsaw" and jig == "avg":  # mean over the centred views and the random draws
            draws = torch.from_numpy(self.d[f"{split}_logits_jigsaw_random"])  # N×D×V×k
            rnd = [S.task_score(draws[:, i], labels, sizes, kind_name, alphas).double().numpy()
                   for i in range(draws.shape[1])]
            score = (score + sum(rnd)) / (1 + len(rnd))
        return score

    @property
    def has_mirrors(self) -> bool:
        return "mirror_test_features" in self.d

    def knn(self, split: str, k: int, mirror_bank: bool = False) -> np.ndarray:
        """Normality from features: minus the mean cosine distance to the k nearest training normals
        (``mirror_bank``: and the training normals' mirrors)."""
        bank = torch.from_numpy(self.d["train_features"])
        if mirror_bank:
            bank = torch.cat([bank, torch.from_numpy(self.d["mirror_train_features"])])
        bank = S.l2_normalise(bank)
        queries = S.l2_normalise(torch.from_numpy(self.d[f"{split}_features"]))
        exclude = torch.arange(len(queries)) if split == "train" else None  # leave the image itself out
        return -S.knn_cosine_distance(queries, bank, k, exclude).numpy()

    def checks(self) -> dict[str, float]:
        """Label-free: per-head accuracy on held-out normals; exact ties of the jigsaw sum."""
        out = {}
        for task in self.tasks:
            labels, sizes = self.labels(task)
            logits, start = self.d[f"held_logits_{task}"], 0
            for h, size in enumerate(sizes):
                pred = logits[..., start : start + size].argmax(-1)
                out[f"acc_{task}_{h}"] = float((pred == labels[None, :, h]).mean())
                start += size
        if "jigsaw" in self.tasks:
            s = self.task_score("jigsaw", "test", "p")
            out["jigsaw_ties_at_max"] = float((s == s.max()).mean())
        return out


def fuse(components: dict[str, dict[str, np.ndarray]], fusion: str) -> np.ndarray:
    """Anomaly score of the test images from normality components per split, fused by the
    library's rule (:func:`fgad.core.scoring.standardise`): ``mean`` = the paper's plain mean,
    ``z``/``rank`` relative to the held-out normals, ``ztrain`` = ``z`` on the training normals."""
    if fusion == "mean":
        return -np.mean([c["test"] for c in components.values()], axis=0)
    source = "train" if fusion == "ztrain" else "held"
    ref = {name: np.sort(c[source]) for name, c in components.items()}
    stats = S.NormalStats(source, ref, {n: float(r.mean()) for n, r in ref.items()},
                          {n: float(r.std(ddof=1)) for n, r in ref.items()})
    kind = "rank" if fusion == "rank" else "zscore"
    return -np.mean([S.standardise(c["test"], stats, name, kind) for name, c in components.items()], axis=0)


#: The improved default's score since the second freeze: log probabilities and the feature kNN
#: (weight 3), z-scored on the held-out normals.
DEFAULT_SCORE = "logp+knn1|z-w3"

#: How each component's z-score is bounded before the weighted mean (the "bounded evidence" candidates).
SQUASHES = {"": lambda z: z, "log": lambda z: np.sign(z) * np.log1p(np.abs(z)), "clip": lambda z: np.clip(z, -3, 3)}


def fuse_weighted(components: dict[str, dict[str, np.ndarray]], weights: dict[str, float],
                  squash: str = "") -> np.ndarray:
    """``z`` fusion with a weight per component: −Σ w·f(z) / Σ w, f one of :data:`SQUASHES` (every
    weight 1 and no squash: :func:`fuse`'s ``z``)."""
    ref = {name: np.sort(c["held"]) for name, c in components.items()}
    stats = S.NormalStats("held", ref, {n: float(r.mean()) for n, r in ref.items()},
                          {n: float(r.std(ddof=1)) for n, r in ref.items()})
    total = sum(weights.get(n, 1.0) for n in components)
    f = SQUASHES[squash]
    return -sum(weights.get(n, 1.0) * f(S.standardise(c["test"], stats, n, "zscore"))
                for n, c in components.items()) / total


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
    selw = {**{t: comp[(t, "logp")] for t in tasks}, "feat": comp[("feat", "knn1")]}
    for w in (2, 3):
        yield f"logp+knn1|z-w{w}", fuse_weighted(selw, {"feat": float(w)})
    for squash in ("log", "clip"):
        yield f"logp+knn1|z{squash}-w3", fuse_weighted(selw, {"feat": 3.0}, squash)
    yield from mirror_and_pixel_candidates(job, selw)
    for t in tasks:
        yield f"only-{t}-logp", -comp[(t, "logp")]["test"]
    for knn in ("knn1", "knn5"):
        yield f"only-{knn}", -comp[("feat", knn)]["test"]


MIRROR_CANDIDATES = (DEFAULT_SCORE + "+mirror", DEFAULT_SCORE + "+mirror-bank")
PIXEL_CANDIDATES = (DEFAULT_SCORE + "+pix-mean", DEFAULT_SCORE + "+pix-knn")


def mirror_and_pixel_candidates(job: Job, default: dict[str, dict[str, np.ndarray]]):
    """(name, anomaly scores) of the test-time mirror and pixel-component candidates, and of their
    combinations, from the default score's components ``default`` (only where the job dumped what
    they need: mirrors of colour images, pixel scores of the held-out normals)."""
    weights = {"feat": 3.0}
    variants = {"": default}
    if job.has_mirrors:
        tasks = {t: {s: (c[s] + job.task_score(t, f"mirror_{s}", "logp")) / 2 for s in ("held", "test")}
                 for t, c in default.items() if t != "feat"}
        for bank in (False, True):
            feat = {s: (job.knn(s, 1, bank) + job.knn(f"mirror_{s}", 1, bank)) / 2 for s in ("held", "test")}
            variants["+mirror-bank" if bank else "+mirror"] = {**tasks, "feat": feat}
    pixels = {}
    if "held_floor_scores" in job.d:
        pixels = {"+pix-mean": {"held": -job.d["held_floor_scores"], "test": -job.d["floor_scores"]},
                  "+pix-knn": {"held": -job.d["held_pixknn"], "test": -job.d["test_pixknn"]}}
    if "held_pixknn_input" in job.d:
        pixels["+pix-knn-input"] = {"held": -job.d["held_pixknn_input"], "test": -job.d["test_pixknn_input"]}
    for mirror, comp in variants.items():
        if mirror:
            yield DEFAULT_SCORE + mirror, fuse_weighted(comp, weights)
        for pix, component in pixels.items():
            yield DEFAULT_SCORE + mirror + pix, fuse_weighted({**comp, "pix": component}, weights)


SUMMARY_CANDIDATES = ("p|mean", "logp|mean", "dir|mean", "p|rank", "logp|z", "logp|rank", "logp-jigavg|rank",
                      "logp+knn1|z", "logp+knn5|z", "logp+knn5|rank", "dir+knn5|rank", "only-knn1", "only-knn5")
REFERENCE = ("mhrot", "p|mean")  # MHRot with its own score: what every candidate must beat
ESCAPED_BAR = "\\|"


def read_tsv(path: Path) -> list[dict[str, str]]:
    """The rows of one of this study's TSVs, as dicts keyed by its header (the file closed again)."""
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def summary(tsv: Path) -> str:
    """Markdown: per dataset and variant, the mean AUROC of each candidate over the classes both
    variants ran, the floor, and the paired difference to MHRot (bootstrap 95% interval, wins)."""
    from collections import defaultdict

    from fgad.report.paired import paired_difference

    rows = read_tsv(tsv)
    auc: dict[tuple, float] = {}
    floor: dict[tuple, float] = {}
    for r in rows:
        auc[(r["dataset"], r["variant"], r["candidate"], r["class"], int(r["seed"]))] = float(r["auroc"])
        floor[(r["dataset"], r["class"], int(r["seed"]))] = float(r["floor"])
    lines = []
    for ds in sorted({k[0] for k in auc}):
        jobs = defaultdict(set)
        for (d, v, _c, cls, seed) in auc:
            if d == ds:
                jobs[v].add((cls, seed))
        common = set.intersection(*jobs.values())
        if not common:
            continue
        ref = {(REFERENCE[0], c, s): auc[(ds, *REFERENCE, c, s)] for c, s in common}
        lines += [f"**{ds}**, classes {', '.join(sorted({c for c, _ in common}, key=int))} (seed 0), "
                  f"floor {100 * np.mean([floor[(ds, c, s)] for c, s in common]):.1f}; "
                  "Δ = paired difference to MHRot's own score, 95% bootstrap interval over classes, wins/losses", "",
                  "| variant | candidate | mean AUROC | Δ vs MHRot | wins |", "|---|---|---:|---|---:|"]
        for v in sorted(jobs):
            for cand in SUMMARY_CANDIDATES:
                if all((ds, v, cand, c, s) in auc for c, s in common):
                    vals = {("x", c, s): auc[(ds, v, cand, c, s)] for c, s in common}
                    d = paired_difference({**vals, **ref}, "x", REFERENCE[0], n_boot=4000)
                    shown = cand.replace("|", ESCAPED_BAR)  # a bare | would end the Markdown cell
                    lines.append(f"| {v} | `{shown}` | {100 * np.mean(list(vals.values())):.1f} | "
                                 f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] | "
                                 f"{d.wins_a}/{d.wins_b} |")
        lines.append("")
    return "\n".join(lines)


def checks_table(tsv: Path, variants: list[str] | None = None) -> str:
    """Markdown: per dataset and variant, the label-free checks on held-out normals (2d): each
    head's accuracy and the share of exact ties at the jigsaw sum's maximum, as the mean over the
    jobs with the range beside it. A job's checks are the same on all its candidates' lines."""

    per_job: dict[tuple, dict[str, float]] = {}
    for r in read_tsv(tsv):
        if r["checks"] and (variants is None or r["variant"] in variants):
            per_job[(r["dataset"], r["variant"], r["class"], r["seed"])] = {
                k: float(v) for k, v in (item.split("=") for item in r["checks"].split(";"))}
    names = sorted({k for c in per_job.values() for k in c})
    lines = ["Label-free checks on held-out normals: mean over jobs [min, max], in %", "",
             "| dataset | variant | jobs | " + " | ".join(names) + " |",
             "|---|---|---:|" + "---:|" * len(names)]
    for ds, v in sorted({k[:2] for k in per_job}):
        jobs = [c for k, c in per_job.items() if k[:2] == (ds, v)]
        cells = []
        for name in names:
            vals = [100 * c[name] for c in jobs if name in c]
            cells.append(f"{np.mean(vals):.1f} [{min(vals):.1f}, {max(vals):.1f}]" if vals else "–")
        lines.append(f"| {ds} | {v} | {len(jobs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: The classes of each suite (shared/notes/evaluation-protocol.md): settings are chosen on the
#: development suite only; the report suite is measured once, after.
SUITES = {"dev": {"mnist": range(5, 10), "cub": range(50, 100), "fonts": range(8, 16), "cifar10": range(5, 10)},
          "report": {"mnist": range(0, 5), "cub": range(0, 10), "fonts": range(0, 8), "cifar10": range(0, 5)}}

#: The report suite's rows: (shown name, variant, candidate). The improved detector's candidate is
#: given on the command line (frozen on the development suite).
COMPARED = (("paper's method (ours, eqs. 2-4)", "ours", "p|mean"), ("MHRot", "mhrot", "p|mean"),
            ("MHRot with flips", "mhrot-hflip", "p|mean"),
            ("DeepGEO", "deepgeo", "own"), ("DeepGEO, softmax score", "deepgeo", "softmax"),
            ("DeepGEO, log score", "deepgeo", "logprob"), ("GOAD", "goad", "own"),
            ("DeepGEO at MHRot's training time", "deepgeo-eqtime", "own"),
            ("GOAD at MHRot's training time", "goad-eqtime", "own"))


def report(tsv: Path, improved: str) -> str:
    """Markdown: per dataset, the improved detector (``VARIANT:CANDIDATE``) and each method it is
    compared with: mean AUROC (over classes of each class's mean over its seeds), then the improved
    one's paired difference to each and to the floor, with a bootstrap 95% interval over classes
    (seeds of a class together).
    A flip variant (``ours-hflip``, ``mhrot-hflip``) takes its plain variant's rows on grey datasets,
    and a test-time mirror candidate its unmirrored score there (:func:`scored_as`)."""

    from fgad.report.paired import paired_difference

    variant, candidate = improved.split(":", 1)
    rows = read_tsv(tsv)
    lines = []
    for ds in sorted({r["dataset"] for r in rows}):
        methods = tuple((name, trains_as(v, ds), cand)
                        for name, v, cand in (("improved (calibrated)", variant, scored_as(candidate, ds)),
                                              *COMPARED))
        res: dict[tuple, float] = {}
        for r in rows:
            if r["dataset"] != ds:
                continue
            key = (r["class"], int(r["seed"]))
            for name, v, cand in methods:
                if r["variant"] == v and r["candidate"] == cand:
                    res[(name, *key)] = float(r["auroc"])
            res[("floor", *key)] = float(r["floor"])
        name0 = methods[0][0]
        classes = sorted({c for (m, c, _s) in res if m == name0}, key=int)
        if not classes:
            continue
        lines += [f"**{ds}**, classes {', '.join(classes)}", "",
                  "| method | mean AUROC | classes × seeds | improved − method, 95% interval | wins/losses |",
                  "|---|---:|---:|---|---:|"]
        for name in [m[0] for m in methods] + ["floor"]:
            per_class: dict[str, list[float]] = {}
            for (m, c, _s), v in res.items():
                if m == name and c in classes:
                    per_class.setdefault(c, []).append(v)
            if not per_class:
                lines.append(f"| {name} | not run | 0 | | |")
                continue
            # the mean over classes of each class's mean over its seeds, as the paired difference
            mean = np.mean([np.mean(v) for v in per_class.values()])
            n_seeds = sorted({len(v) for v in per_class.values()})
            seeds = f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}–{n_seeds[-1]}"
            cell = ""
            if name != name0:
                d = paired_difference(res, name0, name, n_boot=4000)
                if d is not None:
                    cell = f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] | {d.wins_a}/{d.wins_b}"
            lines.append(f"| {name} | {100 * mean:.1f} | {len(per_class)} × {seeds} | "
                         f"{cell or ' | '} |")
        lines.append("")
    return "\n".join(lines)


JOB_FIELDS = ("dataset", "variant", "class", "seed", "fit_s", "total_s", "machine")


def read_jobs(path: Path) -> dict[tuple[str, str, int, int], dict[str, str]]:
    """``study_dump.py``'s job lines, {(dataset, variant, class, seed): row}; a job run twice keeps
    its last line. Files from before the header and the machine column read too (machine "")."""
    out = {}
    with open(path) as f:
        for line in f:
            cells = line.rstrip("\n").split("\t")
            if cells[0] in ("", "dataset"):  # the header, or a blank line
                continue
            r = dict(zip(JOB_FIELDS, cells + [""] * (len(JOB_FIELDS) - len(cells))))
            out[(r["dataset"], r["variant"], int(r["class"]), int(r["seed"]))] = r
    return out


def machine_label(machine: str) -> str:
    """A job line's machine, short: ``study_dump.machine_id``'s last word (its boot hash; on lines
    written before boots were recorded, the host hash, which every machine here shares)."""
    return machine.split()[-1] if machine else "unrecorded"


def job_times(jobs_tsv: Path) -> str:
    """Markdown: per (dataset, job, machine) the number of jobs and the median training and
    whole-job wall times from ``study_dump.py``'s job lines (a job run twice counts once: its last
    line). Machines differ in speed, so medians are never pooled across them."""

    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for (ds, v, _c, _s), r in read_jobs(jobs_tsv).items():
        groups.setdefault((ds, v, machine_label(r["machine"])), []).append((float(r["fit_s"]), float(r["total_s"])))
    lines = ["| dataset | job | machine | jobs | training, median s | whole job, median s |",
             "|---|---|---|---:|---:|---:|"]
    for (ds, v, m), ts in sorted(groups.items()):
        fit, total = np.median(np.array(ts), axis=0)
        lines.append(f"| {ds} | {v} | {m} | {len(ts)} | {fit:.0f} | {total:.0f} |")
    return "\n".join(lines)


#: Table 2 (item 5): which tasks the network learns, each scored the paper's way and the improved way.
TABLE2_TASKS = (("geometric", "mhrot"), ("jigsaw", "jigsaw"), ("both", "ours"))


def table2(tsv: Path, improved: str) -> str:
    """Markdown: the paper's Table 2 retested, per dataset: geometric / jigsaw / both tasks, under
    the paper's score (``p|mean``) and the improved one (``CANDIDATE``), mean AUROC over classes ×
    seeds, and what adding the other task gives (both − one task, paired bootstrap 95% interval
    over the classes every row ran)."""

    from fgad.report.paired import paired_difference

    rows = read_tsv(tsv)
    lines = []
    for ds in sorted({r["dataset"] for r in rows}):
        for score_name, cand in (("paper's score", "p|mean"), ("improved score", improved)):
            res = {(v, r["class"], int(r["seed"])): float(r["auroc"]) for r in rows for _t, v in TABLE2_TASKS
                   if r["dataset"] == ds and r["variant"] == v and r["candidate"] == cand}
            floor = {(r["class"], int(r["seed"])): float(r["floor"]) for r in rows if r["dataset"] == ds}
            runs = [{(c, s) for (m, c, s) in res if m == v} for _t, v in TABLE2_TASKS]
            common = set.intersection(*runs)
            if not common:
                continue
            seeds = sorted({s for _c, s in common})
            classes = sorted({c for c, _s in common}, key=int)
            res = {k: v for k, v in res.items() if k[1:] in common}
            shown = cand.replace("|", ESCAPED_BAR)
            lines += [f"**{ds}**, {score_name} (`{shown}`), classes {', '.join(classes)}, seeds "
                      f"{', '.join(map(str, seeds))}; floor {100 * np.mean([floor[k] for k in common]):.1f}", "",
                      "| tasks | mean AUROC | both − this, 95% interval | wins/losses |", "|---|---:|---|---:|"]
            for name, v in TABLE2_TASKS:
                mean = 100 * np.mean([a for (m, _c, _s), a in res.items() if m == v])
                cell = " | "
                if v != "ours":
                    d = paired_difference(res, "ours", v, n_boot=4000)
                    cell = f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] | {d.wins_a}/{d.wins_b}"
                lines.append(f"| {name} | {mean:.1f} | {cell} |")
            lines.append("")
    return "\n".join(lines)


#: Flips change nothing on grey images: there a ``-hflip`` variant is its plain variant's training.
GREY_DATASETS = ("fonts", "mnist")
#: Training-side candidates: the development datasets on which each trains exactly as ``ours``.
TRAINING_CANDIDATES = {"ours-vpi9": (), "ours-hflip": GREY_DATASETS, "ours-jigrand10": (), "mhrot": ()}
#: Task loss weight candidates (2f), against the improved default's training (``ours-hflip``).
WEIGHT_CANDIDATES = {"ours-jw05": (), "ours-jw2": ()}


def scored_as(candidate: str, dataset: str) -> str:
    """The candidate whose rows stand for ``candidate`` on ``dataset``: the library mirrors at test
    time only where training flips (colour images), so on grey datasets a ``+mirror`` or
    ``+mirror-bank`` candidate is its score without them."""
    if dataset in GREY_DATASETS:
        return candidate.replace("+mirror-bank", "").replace("+mirror", "")
    return candidate


def trains_as(variant: str, dataset: str) -> str:
    """The variant whose dumps stand for ``variant`` on ``dataset`` (``ours-hflip`` on fonts → ``ours``)."""
    return variant.removesuffix("-hflip") if dataset in GREY_DATASETS else variant


RULE_GAIN, RULE_MAX_LOSS, RULE_MAX_TIME = 0.5, 0.5, 1.2


def parse_classes(text: str) -> dict[str, set[int]]:
    """``"cub:60-69,mnist:8-9"`` → {"cub": {60..69}, "mnist": {8, 9}}."""
    out: dict[str, set[int]] = {}
    for part in text.split(","):
        ds, _, rng = part.partition(":")
        lo, _, hi = rng.partition("-")
        out.setdefault(ds.strip(), set()).update(range(int(lo), int(hi or lo) + 1))
    return out


def paired_cell(cand: dict[tuple[int, int], float], ref: dict[tuple[int, int], float]) -> tuple[str, float | None]:
    """Table cell and mean difference in points of ``cand`` − ``ref`` ({(class, seed): AUROC}) over
    the jobs both ran, with its bootstrap 95% interval over classes; no difference (None) unless
    ``cand`` ran every job of ``ref``."""
    from fgad.report.paired import paired_difference

    jobs = sorted(set(cand) & set(ref))
    if not jobs:
        return "not run", None
    if len(jobs) < len(ref):  # a verdict needs every job the reference ran
        return f"partial ({len(jobs)} of {len(ref)})", None
    d = paired_difference({**{("c", *j): cand[j] for j in jobs}, **{("r", *j): ref[j] for j in jobs}}, "c", "r",
                          n_boot=4000)
    return f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] ({len(jobs)})", 100 * d.mean


def verdict(deltas: list[float | None], time_ok: bool = True) -> tuple[str, str]:
    """(mean Δ cell, verdict) of the pre-registered rule: mean gain ≥ RULE_GAIN over the datasets,
    no dataset below −RULE_MAX_LOSS (and, for a training candidate, its time within bounds)."""
    if not deltas or any(d is None for d in deltas):
        return "-", "not decided (not run on every job)"
    ok = np.mean(deltas) >= RULE_GAIN and min(deltas) >= -RULE_MAX_LOSS and time_ok
    return f"{np.mean(deltas):+.1f}", "passes" if ok else "fails"


def read_aurocs(tsv: Path, classes: dict[str, set[int]] | None = None) -> dict[tuple, float]:
    """{(dataset, variant, candidate, class, seed): AUROC} of an evaluation TSV (``classes``: only these)."""

    out = {}
    for r in read_tsv(tsv):
        key = (r["dataset"], r["variant"], r["candidate"], int(r["class"]), int(r["seed"]))
        if classes is None or key[3] in classes.get(key[0], ()):
            out[key] = float(r["auroc"])
    return out


def jobs_of(auc: dict[tuple, float], dataset: str, variant: str, candidate: str) -> dict[tuple[int, int], float]:
    return {k[3:]: v for k, v in auc.items() if k[:3] == (dataset, variant, candidate)}


def training_rule(tsv: Path, jobs_tsv: Path, classes: dict[str, set[int]] | None = None,
                  score: str = DEFAULT_SCORE, reference: str = "ours",
                  candidates: dict[str, tuple[str, ...]] | None = None) -> str:
    """Markdown: each training candidate (default: ``TRAINING_CANDIDATES``) against ``reference``'s
    training under ``score`` on the development jobs both ran (``classes``: only these), per dataset
    the paired mean difference (bootstrap 95% interval), the median training time ratio on the same
    jobs (those run on one machine where there are any), and the pre-registered verdict. A
    ``-hflip`` reference stands on grey datasets for its plain variant (``trains_as``)."""

    candidates = TRAINING_CANDIDATES if candidates is None else candidates
    auc = read_aurocs(tsv, classes)
    jobs = read_jobs(jobs_tsv)
    datasets = sorted({k[0] for k in auc if k[1:3] == (trains_as(reference, k[0]), score)})
    if not datasets:
        return f"no `{reference}` job scored `{score}` on these classes\n"
    lines = [f"Training candidates against `{reference}`, both scored `{score.replace('|', ESCAPED_BAR)}`; "
             f"Δ = candidate − {reference}, paired over classes, 95% bootstrap interval", "",
             "| candidate | " + " | ".join(f"{ds} Δ" for ds in datasets)
             + " | mean Δ | training time ratio | verdict |",
             "|---|" + "---|" * len(datasets) + "---:|---:|---|"]
    for cand, same_as_ref in candidates.items():
        cells, deltas, same, across, unknown = [], [], [], [], []
        for ds in datasets:
            if ds in same_as_ref:
                cells.append(f"= {reference}")
                deltas.append(0.0)
                continue
            base = trains_as(reference, ds)
            ref, mine = jobs_of(auc, ds, base, score), jobs_of(auc, ds, cand, score)
            cell, delta = paired_cell(mine, ref)
            cells.append(cell)
            deltas.append(delta)
            for j in set(mine) & set(ref):
                a, b = jobs.get((ds, cand, *j)), jobs.get((ds, base, *j))
                if a and b:
                    where = unknown if not (a["machine"] and b["machine"]) else (
                        same if a["machine"] == b["machine"] else across)
                    where.append(float(a["fit_s"]) / float(b["fit_s"]))
        # Pairs run on one machine decide; the others only where there are none (flagged).
        ratios = same or across + unknown
        ratio = float(np.median(ratios)) if ratios else float("nan")
        mean, decision = verdict(deltas if ratios else [None], ratio <= RULE_MAX_TIME)
        note = "" if same or not ratios else " (across machines)" if across else " (machines unrecorded)"
        lines.append(f"| {cand} | " + " | ".join(cells) + f" | {mean} | {ratio:.2f}{note} | {decision} |")
    return "\n".join(lines) + "\n"


#: The bounded-evidence candidates (2b, pre-registered): the default score with each z-score squashed.
SCORE_CANDIDATES = ("logp+knn1|zlog-w3", "logp+knn1|zclip-w3")


#: The score rules: candidates, the trainings they are scored on, and the datasets the rule spans
#: (None: every dataset the baseline ran).
SCORE_RULES = {"bounded": (SCORE_CANDIDATES, "ours", None),
               "mirror": (MIRROR_CANDIDATES, "ours-hflip", ("cifar10", "cub")),
               "pixel": (PIXEL_CANDIDATES, "ours-hflip", None),
               # both knobs passed: the combination of each one's larger gain, against the default
               "combined": ((DEFAULT_SCORE + "+mirror-bank+pix-knn",), "ours-hflip", None),
               # the pixel component on the network's input, as a detector computes it
               "shipped": ((DEFAULT_SCORE + "+mirror-bank+pix-knn-input",), "ours-hflip", None)}


def score_rule(tsv: Path, variant: str = "ours", baseline: str = DEFAULT_SCORE,
               candidates: tuple[str, ...] = SCORE_CANDIDATES, only: tuple[str, ...] | None = None) -> str:
    """Markdown: each score candidate against ``baseline`` on the same trainings of ``variant``,
    per dataset (``only``: these) the paired mean difference (bootstrap 95% interval) and the
    pre-registered verdict. A ``-hflip`` variant stands on grey datasets for its plain one, a
    mirror candidate for its unmirrored score (:func:`scored_as`)."""
    auc = read_aurocs(tsv)
    datasets = sorted({k[0] for k in auc if k[1:3] == (trains_as(variant, k[0]), baseline)
                       and (only is None or k[0] in only)})
    if not datasets:
        return f"no `{variant}` job scored `{baseline}`\n"
    lines = [f"Score candidates against `{baseline.replace('|', ESCAPED_BAR)}` on the same `{variant}` "
             "trainings; Δ = candidate − that, paired over classes, 95% bootstrap interval", "",
             "| candidate | " + " | ".join(f"{ds} Δ" for ds in datasets) + " | mean Δ | verdict |",
             "|---|" + "---|" * len(datasets) + "---:|---|"]
    for cand in candidates:
        cells = [paired_cell(jobs_of(auc, ds, trains_as(variant, ds), scored_as(cand, ds)),
                             jobs_of(auc, ds, trains_as(variant, ds), baseline)) for ds in datasets]
        mean, decision = verdict([d for _c, d in cells])
        lines.append(f"| `{cand.replace('|', ESCAPED_BAR)}` | " + " | ".join(c for c, _d in cells)
                     + f" | {mean} | {decision} |")
    return "\n".join(lines) + "\n"


def job_key(path: Path) -> tuple[str, str, str, str]:
    """(dataset, variant, class, seed) of a dump file ``DATASET/VARIANT/classC_seedS.npz``."""
    cls, seed = path.stem.replace("class", "").split("_seed")
    return path.parts[-3], path.parts[-2], cls, seed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps", help="folder of study_dump.py's files, or with --summary the TSV this script wrote")
    p.add_argument("--out", default="-")
    p.add_argument("--rescore", action="store_true",
                   help="with an existing --out: score again the jobs found in the dumps (a rerun with more "
                        "outputs), replacing their rows")
    p.add_argument("--summary", action="store_true", help="print the Markdown summary of a TSV written before")
    p.add_argument("--suite", choices=sorted(SUITES), help="only the jobs of this suite's classes")
    p.add_argument("--report", metavar="VARIANT:CANDIDATE",
                   help="print the report-suite table of a TSV: this frozen candidate against every method")
    p.add_argument("--table2", metavar="CANDIDATE",
                   help="print Table 2 (geometric / jigsaw / both) of a TSV, paper's score and this candidate")
    p.add_argument("--training-rule", metavar="JOBS_TSV",
                   help="print the training candidates' verdicts of a TSV; JOBS_TSV: the jobs' wall times")
    p.add_argument("--rule-classes", metavar="DS:LO-HI,...", help="with --training-rule: only these classes")
    p.add_argument("--weight-rule", metavar="JOBS_TSV",
                   help="print the task loss weight candidates' verdicts against ours-hflip; JOBS_TSV: wall times")
    p.add_argument("--times", action="store_true",
                   help="print the median wall times per dataset, job and machine of study_dump.py's jobs.tsv")
    p.add_argument("--checks", metavar="VARIANTS", nargs="?", const="",
                   help="print the label-free checks of a TSV per dataset and variant (comma-separated: only these)")
    p.add_argument("--score-rule", nargs="?", const="bounded", choices=sorted(SCORE_RULES),
                   help="print the verdicts of a TSV's score candidates: bounded evidence (default), "
                        "test-time mirrors, pixel components, the two combined, or combined as shipped")
    args = p.parse_args()
    if args.times:
        print(job_times(Path(args.dumps)))
        return 0
    if args.checks is not None:
        print(checks_table(Path(args.dumps), args.checks.split(",") if args.checks else None))
        return 0
    if args.score_rule:
        cands, variant, only = SCORE_RULES[args.score_rule]
        print(score_rule(Path(args.dumps), variant, candidates=cands, only=only))
        return 0
    if args.weight_rule:
        print(training_rule(Path(args.dumps), Path(args.weight_rule), reference="ours-hflip",
                            candidates=WEIGHT_CANDIDATES))
        return 0
    if args.training_rule:
        classes = parse_classes(args.rule_classes) if args.rule_classes else None
        print(training_rule(Path(args.dumps), Path(args.training_rule), classes))
        return 0
    if args.table2:
        print(table2(Path(args.dumps), args.table2))
        return 0
    if args.report:
        print(report(Path(args.dumps), args.report))
        return 0
    if args.summary:
        print(summary(Path(args.dumps)))
        return 0
    header = "dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"
    suite = SUITES[args.suite] if args.suite else None
    rows, done = [header], set()
    if args.out != "-" and Path(args.out).exists():  # a rerun adds the jobs finished since
        rows = Path(args.out).read_text().splitlines()
        done = {tuple(r.split("\t")[:4]) for r in rows[1:]}
    paths = sorted(Path(args.dumps).glob("*/*/class*_seed*.npz"))
    if args.rescore:
        found = {job_key(path) for path in paths}
        rows = rows[:1] + [r for r in rows[1:] if tuple(r.split("\t")[:4]) not in found]
        done -= found
    for path in paths:
        dataset, variant, cls, seed = job_key(path)
        if (dataset, variant, cls, seed) in done or (suite and int(cls) not in suite.get(dataset, ())):
            continue
        d = dict(np.load(path))
        floor = auroc(d["y_test"], d["floor_scores"])
        if "test_scores" in d:  # a baseline (study_dump.BASELINES): its own score, and DeepGEO's others (2a)
            for key in sorted(k for k in d if k.startswith("test_scores")):
                name = key[len("test_scores_"):] or "own"
                rows.append(f"{dataset}\t{variant}\t{cls}\t{seed}\t{name}\t{auroc(d['y_test'], d[key]):.5f}\t"
                            f"{floor:.5f}\t")
            continue
        job = Job(path)
        checks = ";".join(f"{k}={v:.4f}" for k, v in job.checks().items())
        for name, score in candidates(job):
            rows.append(
                f"{dataset}\t{variant}\t{cls}\t{seed}\t{name}\t{auroc(job.y, score):.5f}\t{floor:.5f}\t{checks}"
            )
    text = "\n".join(rows) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        from fgad.io.fileio import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
