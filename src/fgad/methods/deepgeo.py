"""DeepGEO (GEOM; Golan & El-Yaniv, NeurIPS 2018): 72 geometric transformations, Dirichlet scoring.

A WideResNet-10-4 (no dropout) with one 72-way softmax learns which of the 72 transformations
(horizontal flip × 3 vertical × 3 horizontal shifts of a quarter side × 4 quarter turns; the
``geom72`` task) was applied to a normal image. For scoring, a Dirichlet distribution is fitted
by maximum likelihood to the softmax outputs of the training images under each transformation t;
an image's anomaly score is minus its mean Dirichlet log-likelihood (without the normalising
constant, as GEOM's code):

    score(x) = −(1/72) Σ_t Σ_j (α_tj − 1) · log p_j(T_t x)        (higher = more anomalous)

``scoring="softmax"`` gives GEOM's "simplified score" instead: minus the mean over t of the
softmax of the true transformation (the paper's eq. 4 for a single task); ``scoring="logprob"``
minus the mean of its log (float64, clipped as below). The three come from the same forward
passes (:meth:`DeepGEO.scores`), so one model can be scored every way for the price of one.

Official setting (``paper`` preset), from GEOM's code: images scaled to [−1, 1], 28×28 images
zero-padded to 32×32; WRN-10-4, He init, BN; Adam lr 1e-3 with an L2 penalty of 0.5·5e-4 on all
weights (the same gradient as Adam ``weight_decay=5e-4``); batch 128 transformed images; 3 epochs
over the training set materialised 72× (every image under every transformation). Here that set is
never materialised: each epoch is a seeded permutation of all (image, transformation) pairs, cut
into batches of 128 and transformed on the fly, so ``ceil(3·72·N/128)`` steps see each pair 3
times, exactly like the original. Probabilities are clipped to ≥ 1e-12 before the log (GEOM's code
does not clip; float32 softmaxes can saturate to 0).

Departures in the scaled-down presets (not the official setting):

- ``quick``: WRN-10-1 instead of WRN-10-4; 600 steps of 128 views instead of
  ``ceil(3·72·N/128)`` (≈10 000 for N = 6 000): about 1/17 of a pass over the 72× set; the
  Dirichlet distributions fitted on 1 000 training images drawn with the seed
  (``dirichlet_max_images``) instead of all of them. Chosen by CPU wall time, not by any test
  result. Scoring still costs 72 forward passes per image (≈ 12 M multiply-adds each for
  WRN-10-1): on 2 CPU cores, tens of minutes for a 10 000-image test split.
- ``tiny`` (tests only): WRN-10-1, 2 steps of 16 views.

Minor differences from Keras that remain in every preset: the WRN is fgad's PyTorch one (He
normal with fan-out, BN eps 1e-5 / momentum 0.1 = Keras 0.9), the dense layer Glorot-uniform with
zero bias as in Keras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import Config, check_choice, check_positive
from ..core.scoring import PROB_FLOOR, fit_dirichlet, fit_dirichlet_stats, inverse_digamma, trigamma  # noqa: F401
from ..core.seeding import generator
from ..errors import ConfigError, ModelFileError
from ..io.modelfolder import ModelFolder, join_states, split_state
from ..io.preprocess import to_tensor
from ..io.provenance import versions
from ..io.safeload import load_state_checked
from ..nets import WideResNet
from ..tasks import build_task
from ..tasks.geometric import all_rotations, shifted_grid
from .base import AnomalyDetector, FitContext, SavedState
from .common import Timer, check_geom72_options, check_images

# The Dirichlet MLE (fit_dirichlet*, trigamma, inverse_digamma) lives with the score math in
# core/scoring.py; it is imported above and stays importable from here.
N_TRANSFORMS = 72
SCORINGS = ("dirichlet", "softmax", "logprob")


# ------------------------------------------------------------------------------ transforms
def apply_geom72(x: torch.Tensor, t: torch.Tensor, shift_fraction: float = 0.25) -> torch.Tensor:
    """Transformation ``t[i]`` (0..71, the ``geom72`` order) applied to image ``x[i]``: B×C×H×W."""
    idx = torch.arange(x.shape[0], device=x.device)
    t = t.to(x.device)
    flip, vert, horiz, rot = t // 36, (t // 12) % 3, (t // 4) % 3, t % 4
    x = torch.where((flip == 1)[:, None, None, None], torch.flip(x, dims=(-1,)), x)
    x = shifted_grid(x, shift_fraction)[idx, vert, horiz]
    return all_rotations(x)[idx, rot]


# ------------------------------------------------------------------------------ config
@dataclass
class DeepGEOConfig(Config):
    depth: int = 10
    width: int = 4
    lr: float = 1e-3
    weight_decay: float = 5e-4  # Adam (coupled L2) = Keras l2(0.5 * 5e-4) on every weight
    batch_size: int = 128  # transformed images per step
    epochs: float | None = 3.0  # passes over the 72× materialised training set...
    steps: int | None = None  # ...or optimiser steps (takes precedence)
    scoring: str = "dirichlet"  # or "softmax" (GEOM's simplified score) or "logprob" (its log)
    shift_fraction: float = 0.25
    image_size: int = 32
    score_batch_size: int = 32  # source images per scoring batch (× 72 views)
    dirichlet_max_images: int | None = None  # None: fit the Dirichlets on all training images
    device: str = "auto"
    seed: int = 0

    CLEARS: ClassVar[dict[str, str]] = {"epochs": "steps"}  # an 'epochs' asked for beats a preset's 'steps'

    def validate(self) -> None:
        check_positive(self, "depth", "width", "lr", "batch_size", "epochs", "steps", "image_size",
                       "score_batch_size", "dirichlet_max_images")
        check_positive(self, "weight_decay", allow_zero=True)
        check_choice("scoring", self.scoring, SCORINGS)
        check_geom72_options(self)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {"width": 1, "epochs": None, "steps": 600, "dirichlet_max_images": 1000},
    "tiny": {"width": 1, "batch_size": 16, "epochs": None, "steps": 2},
}


class GeomNet(nn.Module):
    def __init__(self, depth: int, width: int, channels: int):
        super().__init__()
        self.backbone = WideResNet(depth, width, channels, 0.0)
        self.head = nn.Linear(self.backbone.out_features, N_TRANSFORMS)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class DeepGEO(AnomalyDetector):
    """GEOM / DeepGEO one-class detector; ``score`` returns anomaly scores (higher = more anomalous).

    Args:
        preset: ``"paper"`` (official), ``"quick"`` or ``"tiny"`` (scaled down; see the module doc).
        seed: seeds initialisation and the order of (image, transformation) pairs.
        **options: any :class:`DeepGEOConfig` field, e.g. ``scoring="softmax"``, ``steps=1000``.
    """

    name = "deepgeo"
    config_class = DeepGEOConfig
    presets = PRESETS
    file_format = "fgad-deepgeo"

    def _setup(self, config: DeepGEOConfig, preset: str) -> None:
        super()._setup(config, preset)
        self.task = build_task("geom72", shift_fraction=config.shift_fraction)
        self.net: GeomNet | None = None
        self.alpha: np.ndarray | None = None  # 72 transformations × 72 Dirichlet parameters

    @property
    def is_fitted(self) -> bool:
        return self.net is not None and self.alpha is not None

    def total_steps(self, n_images: int) -> int:
        cfg = self.config
        if cfg.steps is not None:
            return cfg.steps
        return max(1, math.ceil(cfg.epochs * N_TRANSFORMS * n_images / cfg.batch_size))

    # ----------------------------------------------------------------------------- training
    def fit(self, images: Any, context: FitContext | None = None) -> "DeepGEO":
        """Train on normal images (uint8 N×H×W[×C]), then fit the 72 Dirichlet distributions."""
        from tqdm.auto import tqdm

        x_np, context = self.start_fit(images, context)
        progress, cfg, device = context.progress, self.config, self.device
        self.net = GeomNet(cfg.depth, cfg.width, self.input_shape[2]).to(device)
        x = to_tensor(x_np, cfg.image_size, device)
        n = x.shape[0]
        n_pairs = N_TRANSFORMS * n
        steps = self.total_steps(n)
        per_epoch = max(1, math.ceil(n_pairs / cfg.batch_size))
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.net.train()
        losses, accs = [], []
        perm, perm_epoch = None, -1
        with Timer() as timer:
            for step in tqdm(range(steps), disable=not progress, desc="deepgeo", unit="step"):
                epoch, i = divmod(step, per_epoch)
                if epoch != perm_epoch:
                    perm, perm_epoch = torch.randperm(n_pairs, generator=generator(cfg.seed, 1, epoch)), epoch
                pairs = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size].to(device)
                img, t = pairs // N_TRANSFORMS, pairs % N_TRANSFORMS
                views = apply_geom72(x[img], t, cfg.shift_fraction)
                logits = self.net(views)
                loss = F.cross_entropy(logits, t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                accs.append((logits.argmax(1) == t).float().mean().item())
            self.net.eval()
            fit_np = x_np
            if cfg.dirichlet_max_images is not None and len(x_np) > cfg.dirichlet_max_images:
                pick = torch.randperm(len(x_np), generator=generator(cfg.seed, 2))[: cfg.dirichlet_max_images]
                fit_np = x_np[np.sort(pick.numpy())]
            mean_p, mean_log = self._train_statistics(fit_np)
            self.alpha = fit_dirichlet_stats(mean_p, mean_log)
        tail = max(1, len(losses) // 10)
        self.info = {"n_train": int(n), "steps": steps, "n_dirichlet_images": int(len(fit_np)),
                     "fit_s": timer.seconds, "device": str(device),
                     "final_loss": float(np.mean(losses[-tail:])), "final_acc": float(np.mean(accs[-tail:])),
                     "versions": versions()}
        return self

    @torch.inference_mode()
    def _probabilities(self, x_np: np.ndarray):
        """Yield, per batch, softmax outputs B×72 (transformation) ×72 (class), float64 on CPU."""
        cfg, device = self.config, self.device
        self.net.to(device).eval()
        for start in range(0, len(x_np), cfg.score_batch_size):
            xb = to_tensor(x_np[start : start + cfg.score_batch_size], cfg.image_size, device)
            views = self.task.views(xb).flatten(0, 1)
            p = torch.softmax(self.net(views).double(), dim=1)
            yield p.view(xb.shape[0], N_TRANSFORMS, N_TRANSFORMS).cpu().numpy()

    def _train_statistics(self, x_np: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sum_p = np.zeros((N_TRANSFORMS, N_TRANSFORMS))
        sum_log = np.zeros((N_TRANSFORMS, N_TRANSFORMS))
        for p in self._probabilities(x_np):
            sum_p += p.sum(0)
            sum_log += np.log(np.clip(p, PROB_FLOOR, None)).sum(0)
        return sum_p / len(x_np), sum_log / len(x_np)

    # ----------------------------------------------------------------------------- scoring
    def score(self, images: Any, *, scoring: str | None = None) -> np.ndarray:
        """Anomaly scores, one per image: higher = more anomalous.

        ``scoring="dirichlet"`` (default): minus the mean Dirichlet log-likelihood over the 72
        transformations; ``"softmax"``: minus the mean softmax of the true transformation;
        ``"logprob"``: minus the mean log softmax of the true transformation.
        """
        scoring = scoring or self.config.scoring
        return self.scores(images, (scoring,))[scoring]

    def scores(self, images: Any, scorings: tuple[str, ...] = SCORINGS) -> dict[str, np.ndarray]:
        """Anomaly scores of every scoring asked for, from one pass of the 72 views per image."""
        unknown = [s for s in scorings if s not in SCORINGS]
        if unknown:
            raise ConfigError(f"deepgeo: scoring must be one of {', '.join(SCORINGS)}, got {unknown[0]!r}")
        x_np = check_images(images, self.input_shape if self.is_fitted else None)
        out: dict[str, list[np.ndarray]] = {s: [] for s in scorings}
        diag = np.arange(N_TRANSFORMS)
        for p in self._probabilities(x_np):
            true_p = p[:, diag, diag]
            logp = np.log(np.clip(p, PROB_FLOOR, None))
            for s in scorings:
                if s == "softmax":
                    out[s].append(-true_p.mean(1))
                elif s == "logprob":
                    out[s].append(-logp[:, diag, diag].mean(1))
                else:
                    out[s].append(-((self.alpha[None] - 1.0) * logp).sum(axis=(1, 2)) / N_TRANSFORMS)
        return {s: np.concatenate(v) for s, v in out.items()}

    # ----------------------------------------------------------------------------- files
    def fitted_state(self) -> SavedState:
        """Weights and Dirichlet parameters; the task's parameters for the record."""
        tensors = join_states(net=self.net)
        tensors["dirichlet_alpha"] = torch.from_numpy(np.ascontiguousarray(self.alpha))
        return SavedState(tensors, {"task": self.task.state()})

    def restore_state(self, folder: ModelFolder) -> None:
        tensors = folder.tensors()
        self.net = GeomNet(self.config.depth, self.config.width, self.input_shape[2])
        load_state_checked(self.net, split_state(tensors, "net"), folder.path)
        alpha = tensors.get("dirichlet_alpha")
        if alpha is None or tuple(alpha.shape) != (N_TRANSFORMS, N_TRANSFORMS):
            raise ModelFileError(f"{folder.path}: missing or malformed Dirichlet parameters")
        self.alpha = alpha.numpy().astype(np.float64)
        self.net.to(self.device).eval()
