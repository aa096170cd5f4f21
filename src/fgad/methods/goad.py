"""GOAD (Bergman & Hoshen, ICLR 2020): 72 geometric transformations, distances to per-transformation centres.

A WideResNet maps every transformed view T_t(x) (the 72 GEOM transformations, the ``geom72``
task: horizontal flip × 3 vertical × 3 horizontal shifts of a quarter side × 4 quarter turns)
to a feature z_t. Each transformation has a centre c_t, the mean training feature of its views.
An image's anomaly score is the cross-entropy of its views against their true transformations,
with the logits minus the squared distances to the centres:

    score(x) = Σ_t −log softmax_s(−‖z_t − c_s‖²)[s = t]        (higher = more anomalous)

Official setting (``paper`` preset), from lironber/GOAD (``train_ad.py``, ``opt_tc.py``): images
in [−1, 1] at 32×32; WRN-10-4; the feature z is the pooled backbone output (64·width = 256 values;
the code hard-codes 256, which fits width 4 only; ``feature_dim`` adds a dense layer of another
width instead); batch 288 = 4 images × all 72 of their views, the images in a new seeded order
every epoch; Adam lr 1e-3 (default betas, no weight decay); 16 epochs over the images. Loss per
batch, as the code has it:

- cross-entropy of a dense layer z → 72 logits (``ce_logits="linear"``; the paper writes the
  cross-entropy over −‖z − c_t‖² instead, available as ``ce_logits="centres"`` with the batch's
  centres);
- plus λ = 0.1 × the triplet-centre loss mean(max(0, ‖z_t − c_t‖² + m − min_{s≠t} ‖z_t − c_s‖²))
  with the batch's centres c (the mean of the batch's views per transformation) and margin m = 1
  (the code's default; its README suggests m = 0.1 for CIFAR-10, kept at 1 here);
- plus 10 · mean(z²) (the code's ``--reg``, on by default).

The centres used for scoring are the mean training features per transformation over the last
epoch, taken from the training passes themselves (the official code recomputes them after every
epoch; only the last ones are used). When a step budget ends inside an epoch, that partial epoch
is pooled with the previous full one so that every training image contributes.
``centres="refit"`` instead recomputes them after training with the network in evaluation mode,
as the views are scored.

Deliberate departures from the official code, in every preset:

- the network stays in training mode for the whole training run. The official loop calls
  ``train()`` once and ``eval()`` after every epoch, so from the second epoch on it trains with
  frozen batch-norm statistics; on small classes (~30 CUB images, width 1) the features
  collapsed to zero and the loss stayed at ln 72;
- fgad's pre-activation WideResNet, not the official ``BasicBlock``, which applies ``conv1``
  twice and discards its batch-norm/ReLU path;
- the per-view distances are not clamped below (the official ``--eps`` defaults to 0, a no-op);
- test AUROC is never computed during training (the official loop prints it every epoch);
- a channels-last memory layout (``channels_last``; a layout, not a change of the method).

Scaled-down presets (not the official setting):

- ``quick``: WRN-10-1 (64-value features) and a budget of 800 steps × 288 views = 230 400
  training views whatever the class size (the official run on a 6 000-image class is 24 000
  steps), chosen by CPU time, not by any test result. Arithmetic, one thread: a training step of
  288 views at 32×32 (64×64 colour images are resized to 32×32 first) costs about what a
  ``quick`` MHRot step of 8 × 39 views costs (measured 0.50–0.61 s vs 0.55–0.58 s of CPU time,
  interleaved, on a busy 2-core machine), and a scored image (72 forward views, 4 images per
  batch) about twice an MHRot one (35–43 ms vs 20–21 ms). Scaled to MHRot's idle figures
  (``docs/performance.md``: 468 ms per step, 15.7 ms per image): ≈ 0.47 s per step and
  ≈ 31 ms per image. A CUB job (30 training, 2 903 test images) is then 800 × 0.47 s + 2 903 ×
  31 ms ≈ 6.3 + 1.5 ≈ 8 min (MHRot ``quick``: ≈ 3 min); an MNIST job (10 000 test images) is
  6.3 + 5.2 ≈ 11.5 min, because scoring 72 views of each test image alone takes about as long
  as a whole MHRot ``quick`` job (≈ 5 min). Budget note: ~54 000 training views left GOAD at
  chance on CUB classes and ~430 000 (``steps=1500``, ≈ 12 min of training here) gave AUROC
  ≈ 0.9 (notes/reference-implementations.md); 230 400 lies between and is untested.
- ``tiny`` (tests only): WRN-10-1, 2 images per step, 2 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import Config, check_choice, check_positive
from ..core.seeding import generator
from ..errors import ModelFileError
from ..io.modelfolder import ModelFolder, join_states, split_state
from ..io.preprocess import to_tensor
from ..io.provenance import versions
from ..io.safeload import load_state_checked
from ..nets import WideResNet
from ..tasks import build_task
from .base import AnomalyDetector, FitContext, SavedState
from .common import Timer, check_geom72_options, check_images

N_TRANSFORMS = 72


# ------------------------------------------------------------------------------ losses and score
def batch_centres(z: torch.Tensor) -> torch.Tensor:
    """Mean feature per transformation of a batch: B×72×D → 72×D."""
    return z.mean(0)


def squared_distances(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """‖z[i, t] − centres[s]‖² for every view t and centre s: B×T×D, S×D → B×T×S."""
    return ((z.unsqueeze(2) - centres[None, None]) ** 2).sum(-1)


def triplet_centre_loss(z: torch.Tensor, margin: float) -> torch.Tensor:
    """mean over views of max(0, d(z_t, c_t) + margin − min_{s≠t} d(z_t, c_s)), batch centres c."""
    d = squared_distances(z, batch_centres(z))
    t = z.shape[1]
    pos = torch.diagonal(d, dim1=1, dim2=2)
    eye = torch.eye(t, dtype=torch.bool, device=z.device)
    neg = d.masked_fill(eye, float("inf")).min(-1).values
    return torch.clamp(pos + margin - neg, min=0).mean()


def view_scores(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Per-view cross-entropy −log softmax_s(−‖z_t − c_s‖²)[t], in float64: B×72×D, 72×D → B×72.

    Summed over the views it is the anomaly score (higher = more anomalous). The distances are
    expanded as ‖z‖² − 2 z·c + ‖c‖² (in float64), which needs no B×72×72×D difference tensor.
    """
    z, c = z.double(), centres.double()
    d = (z * z).sum(-1, keepdim=True) - 2.0 * z @ c.T + (c * c).sum(-1)
    logp = torch.log_softmax(-d, dim=2)
    return -torch.diagonal(logp, dim1=1, dim2=2)


# ------------------------------------------------------------------------------ config
@dataclass
class GOADConfig(Config):
    depth: int = 10
    width: int = 4
    feature_dim: int | None = None  # None: the pooled WRN feature (64·width, official); else a dense layer
    lr: float = 1e-3
    batch_images: int = 4  # source images per step, each with all 72 views (official: 4 × 72 = 288)
    epochs: float | None = 16.0  # passes over the training images...
    steps: int | None = None  # ...or optimiser steps (takes precedence)
    tc_weight: float = 0.1  # λ of the triplet-centre loss
    margin: float = 1.0  # m of the triplet-centre loss (README: 0.1 for CIFAR-10)
    norm_penalty: float = 10.0  # weight of mean(z²) (official --reg)
    ce_logits: str = "linear"  # "linear": dense layer z → 72 (code); "centres": −‖z − c‖² (paper)
    centres: str = "epoch"  # "epoch": from the last epoch's training passes (code); "refit": eval pass
    shift_fraction: float = 0.25
    image_size: int = 32
    score_batch_size: int | None = None  # source images per scoring batch; None: 128 on CUDA, 4 on CPU
    channels_last: bool = True  # a memory layout, not a change of the method (faster on CPU and GPU)
    device: str = "auto"
    seed: int = 0

    CLEARS: ClassVar[dict[str, str]] = {"epochs": "steps"}  # an 'epochs' asked for beats a preset's 'steps'

    def validate(self) -> None:
        check_positive(self, "depth", "width", "feature_dim", "lr", "batch_images", "epochs", "steps", "image_size",
                       "score_batch_size")
        check_positive(self, "tc_weight", "margin", "norm_penalty", allow_zero=True)
        check_choice("ce_logits", self.ce_logits, ("linear", "centres"))
        check_choice("centres", self.centres, ("epoch", "refit"))
        check_geom72_options(self)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {"width": 1, "epochs": None, "steps": 800},
    "tiny": {"width": 1, "batch_images": 2, "epochs": None, "steps": 2},
}


class GOADNet(nn.Module):
    """Views → (features z, 72 transformation logits of the dense head, or None without one)."""

    def __init__(self, depth: int, width: int, channels: int, feature_dim: int | None, linear_head: bool):
        super().__init__()
        self.backbone = WideResNet(depth, width, channels, 0.0)
        self.project = nn.Identity()
        if feature_dim is not None:
            self.project = nn.Linear(self.backbone.out_features, feature_dim)
            nn.init.zeros_(self.project.bias)
        self.feature_dim = feature_dim or self.backbone.out_features
        self.head = None
        if linear_head:  # official: PyTorch's default weight init, zero bias
            self.head = nn.Linear(self.feature_dim, N_TRANSFORMS)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = self.project(self.backbone(x))
        return z, (self.head(z) if self.head is not None else None)


class GOAD(AnomalyDetector):
    """GOAD one-class detector; ``score`` returns anomaly scores (higher = more anomalous).

    Args:
        preset: ``"paper"`` (official), ``"quick"`` or ``"tiny"`` (scaled down; see the module doc).
        seed: seeds initialisation and the order of the training images.
        **options: any :class:`GOADConfig` field, e.g. ``margin=0.1``, ``steps=3000``.
    """

    name = "goad"
    config_class = GOADConfig
    presets = PRESETS
    file_format = "fgad-goad"

    def _setup(self, config: GOADConfig, preset: str) -> None:
        super()._setup(config, preset)
        self.task = build_task("geom72", shift_fraction=config.shift_fraction)
        self.net: GOADNet | None = None
        self.centres: torch.Tensor | None = None  # 72 × D, float64, on the CPU

    @property
    def is_fitted(self) -> bool:
        return self.net is not None and self.centres is not None

    def steps_per_epoch(self, n_images: int) -> int:
        return max(1, math.ceil(n_images / self.config.batch_images))

    def total_steps(self, n_images: int) -> int:
        cfg = self.config
        if cfg.steps is not None:
            return cfg.steps
        return max(1, math.ceil(cfg.epochs * self.steps_per_epoch(n_images)))

    def _new_net(self, channels: int) -> GOADNet:
        cfg = self.config
        return GOADNet(cfg.depth, cfg.width, channels, cfg.feature_dim, cfg.ce_logits == "linear")

    def _views(self, xb: torch.Tensor) -> torch.Tensor:
        """All 72 views of each image, image-major: B×C×H×W → (B·72)×C×H×W."""
        views = self.task.views(xb).flatten(0, 1)
        return views.contiguous(memory_format=torch.channels_last) if self.config.channels_last else views

    # ----------------------------------------------------------------------------- training
    def fit(self, images: Any, context: FitContext | None = None) -> "GOAD":
        """Train on normal images (uint8 N×H×W[×C]) and set the 72 centres."""
        from tqdm.auto import tqdm

        x_np, context = self.start_fit(images, context)
        progress, cfg, device = context.progress, self.config, self.device
        self.net = self._new_net(self.input_shape[2]).to(device)
        if cfg.channels_last:
            self.net.to(memory_format=torch.channels_last)
        x = to_tensor(x_np, cfg.image_size, device)
        n = x.shape[0]
        steps, per_epoch = self.total_steps(n), self.steps_per_epoch(n)
        labels = torch.arange(N_TRANSFORMS, device=device)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        # Training mode throughout: the official eval() after each epoch froze the batch-norm statistics.
        self.net.train()
        dim = self.net.feature_dim
        sums = {"cur": torch.zeros(N_TRANSFORMS, dim, dtype=torch.float64, device=device), "prev": None}
        counts = {"cur": 0, "prev": 0}
        history: dict[str, list[float]] = {"loss": [], "ce": [], "tc": [], "acc": []}
        perm = None
        with Timer() as timer:
            for step in tqdm(range(steps), disable=not progress, desc="goad", unit="step"):
                epoch, i = divmod(step, per_epoch)
                if i == 0:
                    perm = torch.randperm(n, generator=generator(cfg.seed, 1, epoch)).to(device)
                    if step:
                        sums["prev"], counts["prev"] = sums["cur"], counts["cur"]
                        sums["cur"], counts["cur"] = torch.zeros_like(sums["prev"]), 0
                xb = x[perm[i * cfg.batch_images : (i + 1) * cfg.batch_images]]
                z, logits = self.net(self._views(xb))
                z = z.view(xb.shape[0], N_TRANSFORMS, dim)
                if logits is None:  # the paper's form: logits −‖z − c‖² with the batch centres
                    logits = -squared_distances(z, batch_centres(z))
                logits = logits.reshape(-1, N_TRANSFORMS)
                target = labels.repeat(xb.shape[0])
                ce = F.cross_entropy(logits, target)
                tc = triplet_centre_loss(z, cfg.margin)
                loss = ce + cfg.tc_weight * tc + cfg.norm_penalty * (z * z).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums["cur"] += z.detach().double().sum(0)
                counts["cur"] += xb.shape[0]
                for k, v in (("loss", loss), ("ce", ce), ("tc", tc)):
                    history[k].append(v.item())
                history["acc"].append((logits.argmax(1) == target).float().mean().item())
            self.net.eval()
            if cfg.centres == "refit":
                self.centres = self._mean_features(x_np)
            else:
                total, count = sums["cur"], counts["cur"]
                if steps % per_epoch and sums["prev"] is not None:  # a partial last epoch
                    total, count = total + sums["prev"], count + counts["prev"]
                self.centres = (total / count).cpu()
        tail = max(1, steps // 10)
        self.info = {"n_train": int(n), "steps": steps, "steps_per_epoch": per_epoch,
                     "training_views": N_TRANSFORMS * _images_drawn(n, steps, per_epoch, cfg.batch_images),
                     "fit_s": timer.seconds, "device": str(device),
                     **{f"final_{k}": float(np.mean(v[-tail:])) for k, v in history.items()},
                     "versions": versions()}
        return self

    # ----------------------------------------------------------------------------- features
    @torch.inference_mode()
    def _feature_batches(self, x_np: np.ndarray) -> Iterator[torch.Tensor]:
        """Per batch of source images, the features of their 72 views: B×72×D, evaluation mode."""
        cfg, device = self.config, self.device
        # 4 × 72 views on a CPU: bigger batches outgrow the caches (measured 40 vs 55-67 ms per image at 8-16).
        batch = cfg.score_batch_size or (128 if device.type == "cuda" else 4)
        self.net.to(device).eval()
        if cfg.channels_last:
            self.net.to(memory_format=torch.channels_last)
        for start in range(0, len(x_np), batch):
            xb = to_tensor(x_np[start : start + batch], cfg.image_size, device)
            z, _ = self.net(self._views(xb))
            yield z.view(xb.shape[0], N_TRANSFORMS, -1)

    def _mean_features(self, x_np: np.ndarray) -> torch.Tensor:
        total = sum(z.double().sum(0) for z in self._feature_batches(x_np))
        return (total / len(x_np)).cpu()

    def features(self, images: Any) -> np.ndarray:
        """Features of every view of every image, N×72×D float32 (evaluation mode)."""
        x_np = check_images(images, self.input_shape if self.is_fitted else None)
        return np.concatenate([z.cpu().numpy() for z in self._feature_batches(x_np)])

    # ----------------------------------------------------------------------------- scoring
    def score_views(self, images: Any) -> np.ndarray:
        """Per-view terms −log softmax_s(−‖z_t − c_s‖²)[t], N×72 float64 (higher = more anomalous)."""
        x_np = check_images(images, self.input_shape if self.is_fitted else None)
        centres = self.centres.to(self.device)
        return np.concatenate([view_scores(z, centres).cpu().numpy() for z in self._feature_batches(x_np)])

    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores, one per image: higher = more anomalous (sum over the 72 view terms)."""
        return self.score_views(images).sum(1)

    # ----------------------------------------------------------------------------- files
    def fitted_state(self) -> SavedState:
        """Weights and centres; the task's parameters for the record."""
        tensors = join_states(net=self.net)
        tensors["centres"] = self.centres
        return SavedState(tensors, {"task": self.task.state()})

    def restore_state(self, folder: ModelFolder) -> None:
        tensors = folder.tensors()
        self.net = self._new_net(self.input_shape[2])
        load_state_checked(self.net, split_state(tensors, "net"), folder.path)
        centres = tensors.get("centres")
        if centres is None or tuple(centres.shape) != (N_TRANSFORMS, self.net.feature_dim):
            raise ModelFileError(f"{folder.path}: missing or malformed GOAD centres")
        self.centres = centres.to(torch.float64)
        self.net.to(self.device).eval()


def _images_drawn(n: int, steps: int, per_epoch: int, batch_images: int) -> int:
    """Source images drawn in ``steps`` steps (the last batch of an epoch may be short)."""
    full, rest = divmod(steps, per_epoch)
    return full * n + min(n, rest * batch_images)
