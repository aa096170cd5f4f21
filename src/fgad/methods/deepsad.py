"""Deep SAD (Ruff et al., ICLR 2020) and Deep SVDD, its unsupervised case.

An encoder φ without biases maps images near a centre c; the anomaly score is the squared
distance ``d(x) = ‖φ(x) − c‖²`` (higher = more anomalous). Training follows the official PyTorch
code (lukasruff/Deep-SAD-PyTorch):

1. autoencoder pre-training of φ with a mirrored decoder: mean squared error, Adam;
2. c = mean of φ over the training images (one pass in eval mode); coordinates with |c_i| < 0.1
   set to ±0.1 (a zero coordinate stays 0, as in the official code);
3. Deep SAD loss, averaged over a batch: unlabelled images ``d``; labelled anomalies
   ``η / (d + 1e-6)`` (labelled normals, ``η (d + 1e-6)``, are never used here).

``deepsvdd`` has no labelled anomalies. ``deepsad-10``/``-25``/``-75`` are the paper's
semi-supervised setting: with ``known_fraction`` r, ``fit`` given the dataset and normal class
(:class:`~fgad.methods.base.FitContext`) draws
``round(r × number of anomaly classes)`` (half up, at least 1) known anomaly classes with the seed,
then ``n = int(ratio_known_outlier · N_normal / (1 − ratio_known_outlier))`` labelled anomalies
(at least 1 unless the ratio is 0) from those classes' TRAIN images, so that they make up
``ratio_known_outlier`` of the whole training set, as the official ``create_semisupervised_setting`` (no pollution, no
labelled normals). ``n_known_outliers`` sets the count directly. What was drawn is recorded in
``info["labelled_anomalies"]``.

Networks (:mod:`fgad.nets.lenet`): ``net="lenet"`` is the official ``mnist_LeNet`` (rep. 32) for
grey images and ``cifar10_LeNet`` (rep. 128) for colour ones; ``net="wrn"`` is a bias-free
WideResNet encoder (not in the official code) with the CIFAR-10 LeNet decoder. Images are fed in
[0, 1] (the official ``ToTensor``). The grey LeNet takes 28×28: smaller grey images are
zero-padded (centred), larger ones resized (bilinear, antialiased) to 28×28; the colour LeNet and
the WRN take 32×32, with the same rule.

Official setting (``paper`` preset), from the official README: pre-training 150 epochs, lr 1e-4,
lr × 0.1 from epoch 50, weight decay 0.5e-3; Deep SAD 150 epochs, lr 1e-4, × 0.1 from epoch 50,
weight decay 0.5e-6; batch 128 with the last incomplete batch dropped; η = 1;
``ratio_known_outlier`` = 0.05.

Departures (all presets): when there are fewer training images than one batch, one batch of all
of them is used per epoch (the official loader would give no batch at all); c is averaged over
all training images (the official code averages over the shuffled batches, without the dropped
last one); only the encoder is saved.

Departures in the scaled-down presets:

- ``quick``: 15 epochs of pre-training and 15 of Deep SAD, learning-rate step after epoch 5 in
  both (official: 150 / 150, step at 50, i.e. the same proportion); for ``net="wrn"`` a
  WRN-10-1 instead of the default WRN-16-4.
- ``tiny`` (tests only): 1 + 1 epochs, batch 8, WRN-10-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.config import Config, check_choice, check_positive
from ..core.seeding import derive_seed, generator, seed_everything
from ..errors import ConfigError, InputError, ModelFileError
from ..io.modelfolder import ModelFolder, join_states, read_model_folder, split_state
from ..io.preprocess import as_image_array, to_tensor
from ..io.provenance import versions
from ..io.safeload import load_state_checked
from ..nets.lenet import AutoEncoder, build_deepsad_nets
from .base import AnomalyDetector, FitContext, SavedState
from .common import Timer, check_images

EPS = 1e-6
CENTER_EPS = 0.1


@dataclass
class DeepSADConfig(Config):
    net: str = "lenet"  # "lenet" (official LeNet-type nets) or "wrn" (bias-free WideResNet)
    wrn_depth: int = 16
    wrn_width: int = 4
    ae_epochs: int = 150  # 0 = no pre-training
    ae_lr: float = 1e-4
    ae_milestones: tuple[int, ...] = (50,)
    ae_weight_decay: float = 0.5e-3
    epochs: int = 150
    lr: float = 1e-4
    milestones: tuple[int, ...] = (50,)
    weight_decay: float = 0.5e-6
    batch_size: int = 128
    eta: float = 1.0
    known_fraction: float | None = None  # fraction of anomaly classes known (deepsad-10/25/75)
    ratio_known_outlier: float = 0.05  # labelled anomalies / whole training set
    n_known_outliers: int | None = None  # absolute count instead of the ratio
    score_batch_size: int = 256
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        check_choice("net", self.net, ("lenet", "wrn"))
        check_positive(self, "epochs", "ae_lr", "lr", "batch_size", "eta", "score_batch_size", "wrn_width")
        check_positive(self, "ae_epochs", "ae_weight_decay", "weight_decay", "n_known_outliers", allow_zero=True)
        if self.wrn_depth < 10 or (self.wrn_depth - 4) % 6:
            raise ConfigError(f"option 'wrn_depth' must be 6n+4 with n >= 1 (10, 16, 22...), got {self.wrn_depth}")
        if self.known_fraction is not None and not 0.0 < self.known_fraction <= 1.0:
            raise ConfigError(f"option 'known_fraction' must be in (0, 1], got {self.known_fraction}")
        if not 0.0 <= self.ratio_known_outlier < 1.0:
            raise ConfigError(f"option 'ratio_known_outlier' must be in [0, 1), got {self.ratio_known_outlier}")
        if any(v < 0 for v in (*self.milestones, *self.ae_milestones)):
            raise ConfigError("learning-rate milestones must be epochs >= 0")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {"ae_epochs": 15, "ae_milestones": (5,), "epochs": 15, "milestones": (5,), "wrn_depth": 10,
              "wrn_width": 1},
    "tiny": {"ae_epochs": 1, "ae_milestones": (), "epochs": 1, "milestones": (), "batch_size": 8,
             "wrn_depth": 10, "wrn_width": 1, "score_batch_size": 64},
}


def n_known_classes(fraction: float, n_anomaly_classes: int) -> int:
    """round(fraction × n) half up, at least 1 and at most n."""
    return int(min(n_anomaly_classes, max(1, math.floor(fraction * n_anomaly_classes + 0.5))))


def n_labelled_anomalies(ratio: float, n_normal: int) -> int:
    """As the official code: labelled anomalies make up ``ratio`` of normal + labelled (at least 1
    when ``ratio`` > 0)."""
    if ratio <= 0:
        return 0
    return max(1, int(ratio * n_normal / (1.0 - ratio)))


class DeepSVDD(AnomalyDetector):
    """Deep SVDD one-class detector (Deep SAD without labelled anomalies).

    ``score`` returns anomaly scores ‖φ(x) − c‖²: higher = more anomalous.
    """

    name = "deepsvdd"
    config_class = DeepSADConfig
    presets = PRESETS
    fixed = {"known_fraction": None}
    file_format = "fgad-deepsad"

    def _setup(self, config: DeepSADConfig, preset: str) -> None:
        super()._setup(config, preset)
        self.encoder: nn.Module | None = None
        self.c: torch.Tensor | None = None

    @property
    def is_fitted(self) -> bool:
        return self.encoder is not None and self.c is not None

    @property
    def input_size(self) -> int:
        return int(self.encoder.input_size)

    def network_inputs(self, x_np: np.ndarray, device: torch.device) -> torch.Tensor:
        """uint8 N×H×W×C → N×C×S×S in [0, 1] (zero-padded or resized to the network's side)."""
        return to_tensor(x_np, self.input_size, device).add_(1.0).mul_(0.5)

    # ----------------------------------------------------------------------------- training
    def fit(self, images: Any, context: FitContext | None = None) -> "DeepSVDD":
        """Train on normal images (uint8 N×H×W[×C]); Deep SAD also on labelled anomalies (see
        :meth:`DeepSAD.fit`)."""
        context = self.fit_context(context)
        x_np = as_image_array(images, "training images")
        labelled_anomalies, draw = self.labelled_anomalies(x_np, context)
        self._train(x_np, labelled_anomalies, context.progress)
        if draw is not None:
            self.info["labelled_anomalies"] = draw
        return self

    def labelled_anomalies(self, x_np: np.ndarray, context: FitContext) -> tuple[Any, dict[str, Any] | None]:
        """The labelled anomalies to train with, and how they were drawn: none for Deep SVDD."""
        return None, None

    def _train(self, x_np: np.ndarray, labelled_anomalies: Any, progress: bool) -> None:
        from tqdm.auto import tqdm

        cfg = self.config
        if labelled_anomalies is not None:
            a_np = as_image_array(labelled_anomalies, "labelled anomalies")
            if a_np.shape[1:] != x_np.shape[1:]:
                raise InputError(f"labelled anomalies are {a_np.shape[1:]}, the normal images {x_np.shape[1:]}")
        else:
            a_np = x_np[:0]
        seed_everything(cfg.seed)
        device = self.device
        self.input_shape = tuple(int(s) for s in x_np.shape[1:])
        encoder, decoder = build_deepsad_nets(cfg.net, self.input_shape[2], cfg.wrn_depth, cfg.wrn_width)
        self.encoder = encoder.to(device)
        x = self.network_inputs(np.concatenate([x_np, a_np]), device)
        semi = torch.cat([torch.zeros(len(x_np)), -torch.ones(len(a_np))]).to(device)
        n = x.shape[0]
        bs = min(cfg.batch_size, n)
        per_epoch = n // bs  # the official loader drops the last incomplete batch
        with Timer() as timer:
            ae_loss = None
            if cfg.ae_epochs > 0:
                ae = AutoEncoder(self.encoder, decoder.to(device)).train()
                opt = torch.optim.Adam(ae.parameters(), lr=cfg.ae_lr, weight_decay=cfg.ae_weight_decay)
                bar = tqdm(range(cfg.ae_epochs), disable=not progress, desc="deepsad pretrain", unit="epoch")
                for epoch in bar:
                    _set_lr(opt, cfg.ae_lr, cfg.ae_milestones, epoch)
                    perm = torch.randperm(n, generator=generator(cfg.seed, 1, epoch)).to(device)
                    total = 0.0
                    for i in range(per_epoch):
                        xb = x[perm[i * bs : (i + 1) * bs]]
                        loss = torch.mean((ae(xb) - xb) ** 2)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        total += loss.item()
                    ae_loss = total / per_epoch
            self.c = self._init_center(x)
            self.encoder.train()
            opt = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            sad_loss = None
            for epoch in tqdm(range(cfg.epochs), disable=not progress, desc=self.name, unit="epoch"):
                _set_lr(opt, cfg.lr, cfg.milestones, epoch)
                perm = torch.randperm(n, generator=generator(cfg.seed, 2, epoch)).to(device)
                total = 0.0
                for i in range(per_epoch):
                    idx = perm[i * bs : (i + 1) * bs]
                    dist = torch.sum((self.encoder(x[idx]) - self.c) ** 2, dim=1)
                    s = semi[idx]
                    losses = torch.where(s == 0, dist, cfg.eta * (dist + EPS) ** s)
                    loss = losses.mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.item()
                sad_loss = total / per_epoch
            self.encoder.eval()
        self.info = {"n_train": int(len(x_np)), "n_labelled_anomalies": int(len(a_np)), "fit_s": timer.seconds,
                     "device": str(device), "pretrain_final_loss": ae_loss, "final_loss": sad_loss,
                     "versions": versions()}

    @torch.no_grad()
    def _init_center(self, x: torch.Tensor) -> torch.Tensor:
        self.encoder.eval()
        bs = self.config.score_batch_size
        c = sum(self.encoder(x[i : i + bs]).sum(0) for i in range(0, len(x), bs)) / len(x)
        c[(c.abs() < CENTER_EPS) & (c < 0)] = -CENTER_EPS
        c[(c.abs() < CENTER_EPS) & (c > 0)] = CENTER_EPS
        return c.detach()

    # ----------------------------------------------------------------------------- scoring
    @torch.inference_mode()
    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores ‖φ(x) − c‖², one per image: higher = more anomalous."""
        x_np = check_images(images, self.input_shape if self.is_fitted else None)
        device, bs = self.device, self.config.score_batch_size
        self.encoder.to(device).eval()
        c = self.c.to(device)
        out = []
        for i in range(0, len(x_np), bs):
            z = self.encoder(self.network_inputs(x_np[i : i + bs], device))
            out.append(torch.sum((z - c) ** 2, dim=1).double().cpu().numpy())
        return np.concatenate(out)

    # ----------------------------------------------------------------------------- files
    def fitted_state(self) -> SavedState:
        """Encoder weights and centre (only the encoder is saved)."""
        return SavedState({**join_states(encoder=self.encoder), "center": self.c.detach().cpu()})

    def restore_state(self, folder: ModelFolder) -> None:
        cfg = self.config
        encoder, _ = build_deepsad_nets(cfg.net, self.input_shape[2], cfg.wrn_depth, cfg.wrn_width)
        tensors = folder.tensors()
        load_state_checked(encoder, split_state(tensors, "encoder"), folder.path)
        c = tensors.get("center")
        if c is None or tuple(c.shape) != (encoder.rep_dim,):
            raise ModelFileError(f"{folder.path}: missing or malformed centre c")
        self.encoder, self.c = encoder.to(self.device).eval(), c

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> "DeepSVDD":
        """Load a folder written by :meth:`save`, as the Deep SVDD or Deep SAD variant that was saved."""
        folder = read_model_folder(path, cls.file_format, "Deep SAD")
        kinds = {k.name: k for k in (DeepSVDD, DeepSAD, DeepSAD10, DeepSAD25, DeepSAD75)}
        kind = kinds.get(folder.meta.get("method", "deepsvdd"))
        if kind is None:
            raise ModelFileError(f"{folder.config_path}: unknown Deep SAD variant {folder.meta.get('method')!r}")
        return kind.from_folder(folder, device=device)


class DeepSAD(DeepSVDD):
    """Deep SAD semi-supervised detector; ``score`` returns ‖φ(x) − c‖² (higher = more anomalous).

    ``fit`` takes its labelled anomalies from the context: given directly
    (``FitContext(labelled_anomalies=...)``), or drawn from the dataset the normal images come from
    (``FitContext(dataset=ds, normal_class=k)``, the paper's protocol, see the module doc).
    """

    name = "deepsad"
    fixed = {}
    semi_supervised = True

    def labelled_anomalies(self, x_np: np.ndarray, context: FitContext) -> tuple[Any, dict[str, Any] | None]:
        """``context.labelled_anomalies``, or those drawn from ``context.dataset`` (with the record
        of the draw); ``known_fraction`` set (deepsad-10/25/75) needs the dataset."""
        if context.labelled_anomalies is not None:
            if context.dataset is not None:
                raise ConfigError(f"{self.name}: give labelled anomalies or a dataset to draw them from, not both")
            return context.labelled_anomalies, None
        if context.dataset is not None:
            if context.normal_class is None:
                raise ConfigError(f"{self.name}: drawing labelled anomalies from a dataset needs its normal class")
            return self.draw_anomalies(context.dataset, context.normal_class, len(x_np))
        if self.config.known_fraction is not None:
            raise ConfigError(f"{self.name}: draws labelled anomalies from the known classes of a dataset: "
                              "fit with FitContext(dataset=..., normal_class=...)")
        return None, None

    def draw_anomalies(self, ds: Any, normal_class: int | str, n_normal: int) -> tuple[Any, dict[str, Any]]:
        """Labelled anomalies drawn with the seed from ``ds``'s training images of known anomaly
        classes (None when there are none to draw), and the record of the draw."""
        cfg = self.config
        k = ds.class_index(normal_class)
        y = np.asarray(ds.y_train)
        if not np.any(y == k):
            raise InputError(f"{ds.name}: class {ds.class_names[k]!r} has no training images")
        anomaly_classes = [c for c in range(len(ds.class_names)) if c != k and np.any(y == c)]
        if not anomaly_classes:
            raise InputError(f"{ds.name}: no anomaly class has training images; Deep SAD needs some to label")
        fraction = cfg.known_fraction if cfg.known_fraction is not None else 1.0 / len(anomaly_classes)
        rng = np.random.default_rng(derive_seed(cfg.seed, 11, k))
        n_classes = n_known_classes(fraction, len(anomaly_classes))
        known = sorted(int(c) for c in rng.choice(anomaly_classes, n_classes, replace=False))
        candidates = np.flatnonzero(np.isin(y, known))
        if cfg.n_known_outliers is not None:
            wanted, rule = cfg.n_known_outliers, "n_known_outliers"
        else:
            wanted, rule = n_labelled_anomalies(cfg.ratio_known_outlier, n_normal), "ratio_known_outlier"
        count = int(min(wanted, len(candidates)))
        idx = np.sort(rng.choice(candidates, count, replace=False)) if count else candidates[:0]
        draw = {
            "rule": (f"known classes = round({fraction:g} x {len(anomaly_classes)} anomaly classes) = {n_classes}, "
                     f"drawn with the seed; labelled anomalies drawn from their train images: "
                     + (f"n_known_outliers = {cfg.n_known_outliers}" if rule == "n_known_outliers" else
                        f"int({cfg.ratio_known_outlier:g} x {n_normal} normal / (1 - {cfg.ratio_known_outlier:g}))"
                        f" = {wanted}") + (f", capped at {count} available" if count < wanted else "")),
            "known_fraction": fraction,
            "n_anomaly_classes": len(anomaly_classes),
            "known_classes": known,
            "known_class_names": [ds.class_names[c] for c in known],
            "count": count,
            "indices": [int(i) for i in idx],
            "ratio_known_outlier": cfg.ratio_known_outlier,
            "n_known_outliers": cfg.n_known_outliers,
            "normal_class": k,
        }
        return (ds.x_train[idx] if count else None), draw


class DeepSAD10(DeepSAD):
    """Deep SAD with 10% of the anomaly classes known."""

    name = "deepsad-10"
    fixed = {"known_fraction": 0.10}


class DeepSAD25(DeepSAD):
    """Deep SAD with 25% of the anomaly classes known."""

    name = "deepsad-25"
    fixed = {"known_fraction": 0.25}


class DeepSAD75(DeepSAD):
    """Deep SAD with 75% of the anomaly classes known."""

    name = "deepsad-75"
    fixed = {"known_fraction": 0.75}


def _set_lr(opt: torch.optim.Optimizer, base: float, milestones: tuple[int, ...], epoch: int) -> None:
    lr = base * 0.1 ** sum(epoch >= m for m in milestones)
    for g in opt.param_groups:
        g["lr"] = lr
