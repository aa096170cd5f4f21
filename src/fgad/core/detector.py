"""``Detector``: the multi-task self-supervised anomaly detector behind one object.

Example:
    >>> from fgad import Detector
    >>> det = Detector(preset="quick")      # fgad's improved detector (the defaults)
    >>> det.fit(normal_images)              # uint8 N×H×W or N×H×W×C, normal images only
    >>> scores = det.score(test_images)     # anomaly scores: higher = more anomalous
    >>> det.save("model/"); det = Detector.load("model/")

``tasks=("geometric",)`` is MHRot, ``("jigsaw",)`` is jigsaw only, both (the default) the paper's
task set. The scoring options (``task_score``, ``score_fusion``, ``feature_knn``...; see
:mod:`fgad.core.scoring`) default to the improved detector's (``fgad.core.config.IMPROVED``);
``Detector(**PAPER_SETTINGS)`` is the paper's method (eqs. 2–4, no flips), as the ``ours`` method is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Collection, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import InputError, ModelFileError
from ..io.modelfolder import CONFIG_FILE, WEIGHTS_FILE, ModelFolder, read_model_folder, save_model_folder  # noqa: F401
from ..io.preprocess import as_image_array, check_image_shape, conform_images, image_list, to_tensor
from ..io.provenance import versions
from ..io.safeload import load_state_checked
from ..nets import MultiTaskNet, WideResNet
from ..tasks import Task, build_task
from .config import PAPER_SETTINGS, DetectorConfig, resolve_config, score_batch_size
from .precision import autocast
from .scoring import (
    FEATURE_COMPONENT,
    FUSIONS,
    PIXEL_COMPONENT,
    RAW_FUSIONS,
    STANDARDISED_FUSIONS,
    NormalStats,
    bank_subsample,
    fit_dirichlet_stats,
    fuse,
    heldout_split,
    knn_cosine_distance,
    l2_normalise,
    percentile_below,
    softmax_moments,
    task_score,
    true_class_probability_sum,
)
from .seeding import enable_determinism, seed_everything
from .training import EvalHook, hflip_on, train

FORMAT = "fgad-detector"
LOG_FILE = "training_log.json"
SCORING_FILE = "scoring.safetensors"  # Dirichlet parameters, kNN bank, normal statistics (when the config uses them)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available")
    return dev


def network_logits(net: nn.Module, views: dict[str, torch.Tensor], cfg: DetectorConfig,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """Float32 logits of ``net`` on flat views per task, with ``cfg``'s memory layout and precision
    (the one way every scorer runs the network: the detector, and diagnose's hook in training)."""
    if cfg.channels_last:
        views = {k: v.contiguous(memory_format=torch.channels_last) for k, v in views.items()}
    with autocast(cfg, device):
        out = net(views)
    return {k: v.float() for k, v in out.items()}


class Detector:
    """Multi-task self-supervised one-class detector (Jézéquel et al. 2021).

    Args:
        preset: ``"paper"``, ``"quick"`` or ``"tiny"`` (see :mod:`fgad.core.config`).
        **overrides: any :class:`~fgad.core.config.DetectorConfig` field, e.g. ``tasks``, ``steps``.
    """

    def __init__(self, preset: str = "quick", **overrides: Any):
        self._setup(resolve_config(preset, overrides), preset)

    @classmethod
    def from_config(cls, config: DetectorConfig, preset: str = "custom") -> "Detector":
        """An unfitted detector with a resolved ``config`` (checked again); ``preset`` names its origin."""
        det = cls.__new__(cls)
        det._setup(DetectorConfig.from_dict(config.to_dict()), preset)
        return det

    def _setup(self, config: DetectorConfig, preset: str) -> None:
        """Every attribute, unfitted: the one place ``__init__``, ``from_config`` and ``load`` set them."""
        self.config = config
        self.preset = preset
        self.tasks: dict[str, Task] = {}
        self.net: MultiTaskNet | None = None
        self.input_shape: tuple[int, int, int] | None = None  # H, W, C of the training images
        self.history: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        self.decision: dict[str, Any] | None = None  # set by calibrate(): threshold and rates
        # Fitted scoring state beyond the network (see _fit_scoring), None when the config does not use it:
        self.dirichlet_alpha: dict[str, list[np.ndarray]] | None = None  # per task, per head: V×size α
        self.feature_bank: np.ndarray | None = None  # M×D float32 L2-normalised features of training normals
        self.pixel_bank: np.ndarray | None = None  # M×(C·S·S) float32 L2-normalised input pixels of training normals
        self.normal_stats: NormalStats | None = None  # reference normals' components (zscore/rank fusion)
        self.heldout_indices: np.ndarray | None = None  # indices of the fit's images held out of training
        self._compiled: tuple[nn.Module, nn.Module] | None = None  # (network, its torch.compile wrapper)

    # ----------------------------------------------------------------------------- building
    def build_network(self, channels: int, task_states: dict[str, dict] | None = None, *,
                      device: torch.device | None = None) -> None:
        """Build ``self.tasks`` and a freshly initialised ``self.net`` for images of ``channels``
        channels (initial weights from torch's global generator: seed it first for a given run).

        ``task_states``: the tasks' saved states (:meth:`load`) instead of the config's. With
        ``device``, the network is moved there, in the config's memory layout.
        """
        cfg = self.config
        self.tasks = {}
        for name in cfg.tasks:
            if task_states is not None:
                params = task_states[name]
            elif name == "jigsaw":
                params = {"grid": cfg.jigsaw_grid, "k": cfg.jigsaw_k, "margin": cfg.jigsaw_margin, "seed": cfg.seed,
                          "choice": cfg.jigsaw_permutations}
            elif name in ("geometric", "translation", "geom72"):
                params = {"shift_fraction": cfg.shift_fraction}
            else:
                params = {}
            self.tasks[name] = build_task(name, **params)
        backbone = WideResNet(cfg.depth, cfg.width, channels, cfg.block_dropout)
        self.net = MultiTaskNet(backbone, {n: t.n_outputs for n, t in self.tasks.items()}, cfg.head_dropout)
        if device is not None:
            self.net.to(device)
            if cfg.channels_last:
                self.net.to(memory_format=torch.channels_last)

    @property
    def is_fitted(self) -> bool:
        return self.net is not None and self.input_shape is not None

    @property
    def device(self) -> torch.device:
        return resolve_device(self.config.device)

    # ----------------------------------------------------------------------------- training
    def fit(self, images: Any, *, checkpoint_dir: str | Path | None = None, progress: bool | str = True,
            evaluate: EvalHook | None = None, eval_every: int | Collection[int] | None = None) -> "Detector":
        """Train on normal images only (uint8 N×H×W or N×H×W×C, or a dataset's ``x_train``).

        With ``checkpoint_dir``, training checkpoints go there and an interrupted run given the
        same folder resumes from its last checkpoint. ``progress``: a progress bar (a string
        labels it). ``evaluate(steps_done, net)``: a hook run during training at the step counts
        chosen by ``eval_every`` (see :func:`fgad.core.training.train`); it does not change the
        weights (:func:`fgad.tools.diagnose.diagnose` uses it).

        With ``score_fusion`` ``"zscore"``/``"rank"`` and ``normal_stats="heldout"``, a seeded
        share ``heldout_fraction`` of the images is held out of training (their indices:
        ``heldout_indices``) and gives the normal statistics; after training, the scoring state
        the config needs (Dirichlet parameters, kNN bank, normal statistics) is fitted.
        """
        x_np = as_image_array(images, "training images")
        if x_np.shape[0] < 2:
            raise InputError("training images: at least 2 normal images are needed, got 1")
        cfg = self.config
        x_fit, held = self.split_heldout(x_np)
        seed_everything(cfg.seed)
        device = self.device
        if cfg.deterministic:
            enable_determinism()
        self.input_shape = tuple(int(s) for s in x_np.shape[1:])
        self.build_network(self.input_shape[2], device=device)
        x = to_tensor(x_fit, cfg.image_size)
        t0 = time.perf_counter()
        self.history = train(self.net, self.tasks, x, cfg, device, checkpoint_dir=checkpoint_dir, progress=progress,
                             evaluate=evaluate, eval_every=eval_every)
        self.net.eval()
        self.fit_scoring_state(x_fit, x_np, held, progress=bool(progress))
        self.info = {"n_train": int(x_fit.shape[0]), "fit_s": round(time.perf_counter() - t0, 3),
                     "device": str(device), "versions": versions()}
        if held is not None:
            self.info["n_heldout"] = int(len(held))
        return self

    def split_heldout(self, x_np: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The training images and the held-out indices (None: nothing held out): a seeded share
        when the config's fusion needs held-out normal statistics. Training never sees them."""
        cfg = self.config
        if cfg.score_fusion in STANDARDISED_FUSIONS and cfg.normal_stats == "heldout":
            keep, held = heldout_split(len(x_np), cfg.heldout_fraction, cfg.seed)
            return x_np[keep], held
        return x_np, None

    def fit_scoring_state(self, x_fit: np.ndarray, x_np: np.ndarray, held: np.ndarray | None, *,
                          progress: bool = False) -> None:
        """After training on ``x_fit`` (``x_np`` minus ``held``, :meth:`split_heldout`): forget any
        threshold (it was calibrated on another network) and fit what the config's scoring needs."""
        self.decision = None
        self.heldout_indices = held
        self._fit_scoring(x_fit, None if held is None else x_np[held], progress=progress)

    def _fit_scoring(self, x_fit: np.ndarray, x_held: np.ndarray | None, *, progress: bool) -> None:
        """After training: what the config's scoring needs beyond the network, in this order: the
        Dirichlet parameters (on the training normals), the kNN bank (a seeded subsample of them),
        then the normal statistics of the standardised fusions (on the held-out normals, or on
        the training normals with the feature component left-one-out)."""
        cfg = self.config
        self.dirichlet_alpha = self._fit_dirichlet(x_fit, progress) if cfg.task_score == "dirichlet" else None
        self.feature_bank, self.pixel_bank, bank = None, None, None
        if cfg.feature_knn or cfg.pixel_knn:
            bank = bank_subsample(len(x_fit), cfg.feature_bank_max, cfg.seed)
        if cfg.pixel_knn:
            self.pixel_bank = self.input_pixels(x_fit[bank]).astype(np.float32)
        if cfg.feature_knn:
            feats = [self.features(x_fit[bank], progress=progress)]
            if self.mirrors:  # the training normals' mirrors are as normal as they are
                feats.append(self.features(x_fit[bank], progress=progress, mirror=True))
            self.feature_bank = np.concatenate(feats).astype(np.float32)
        self.normal_stats = None
        if cfg.score_fusion not in STANDARDISED_FUSIONS:
            return
        if x_held is not None:
            comps = self.score_components(x_held, progress=progress)
        else:
            exclude = None  # each training image's own rows in the bank (and its mirror's), left out
            if bank is not None:
                copies = 2 if self.mirrors else 1
                exclude = np.full((len(x_fit), copies), -1, dtype=np.int64)
                exclude[bank] = np.arange(len(bank))[:, None] + len(bank) * np.arange(copies)
            comps = self._components(x_fit, progress=progress, knn_exclude=exclude)
        stats = NormalStats.fit(comps, cfg.normal_stats)
        if x_held is not None:
            stats.anomaly_scores = np.sort(-fuse(comps, cfg.score_fusion, self.task_terms, stats, self.fusion_weights))
        self.normal_stats = stats

    @torch.inference_mode()
    def _fit_dirichlet(self, x_fit: np.ndarray, progress: bool) -> dict[str, list[np.ndarray]]:
        """Per task and head, the V×size maximum-likelihood Dirichlet parameters of the training
        normals' softmax vectors, one Dirichlet per view (:func:`fgad.core.scoring.fit_dirichlet_stats`)."""
        sums: dict[str, list[list[torch.Tensor]]] = {}
        counts = dict.fromkeys(self.tasks, 0)  # softmax vectors per view: images (× draws for the jigsaw)
        for xb, n_real in self.image_batches(x_fit, progress=progress):
            logits, drawn = self._batch_logits(xb, n_real), self._draw_logits(xb, n_real)
            for n, t in self.tasks.items():
                # the test-time draws, when scored, are pooled with the centred views
                for z in [logits[n], *(drawn[n].unbind(1) if n in drawn else [])]:
                    moments = softmax_moments(z, t.head_sizes)
                    acc = sums.setdefault(n, [[torch.zeros_like(p), torch.zeros_like(lp)] for p, lp in moments])
                    for a, (p, lp) in zip(acc, moments):
                        a[0] += p
                        a[1] += lp
                    counts[n] += n_real
        return {n: [fit_dirichlet_stats((p / counts[n]).cpu().numpy(), (lp / counts[n]).cpu().numpy())
                    for p, lp in heads] for n, heads in sums.items()}

    # ----------------------------------------------------------------------------- scoring
    def _check_input(self, images: Any, conform: bool = False) -> np.ndarray:
        if not self.is_fitted:
            raise InputError("the detector is not fitted: call fit() or Detector.load() first")
        if conform:  # a list of images of several sizes too
            x = conform_images(image_list(images, "images to score"), self.input_shape, self.config.resize)
        else:
            x = as_image_array(images, "images to score")
        return check_image_shape(x, self.input_shape)

    @torch.inference_mode()
    def score_tasks(self, images: Any, *, progress: bool = False, conform: bool = False) -> dict[str, np.ndarray]:
        """Per-task normality sums (eq. 4; higher = more normal), one array of N per task.

        Images must have the training images' size and channels; with ``conform=True`` others are
        converted (grey ↔ colour) and resized by the model's rule (``config.resize``, see
        :mod:`fgad.io.conform`) instead, and a list of images of several sizes is accepted.
        Arrays of another size are refused by default.
        """
        device = self.device
        labels = {n: t.labels().to(device) for n, t in self.tasks.items()}
        out: dict[str, list[torch.Tensor]] = {n: [] for n in self.tasks}  # on the device: no sync per batch
        for logits in self.view_logits(images, progress=progress, conform=conform):
            for n, t in self.tasks.items():
                out[n].append(true_class_probability_sum(logits[n], labels[n], t.head_sizes))
        return {n: torch.cat(v).cpu().numpy().astype(np.float64) for n, v in out.items()}

    @torch.inference_mode()
    def view_logits(self, images: Any, *, progress: bool = False,
                    conform: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """The scoring pass: per batch of :meth:`image_batches`, per task the float32 logits
        B×V×outputs of the network on the task's V test-time views (the padding rows dropped).

        :meth:`score_tasks` and the explanations (:mod:`fgad.tools.explain`) both read these;
        :mod:`fgad.core.scoring` turns them into probabilities and scores.
        """
        for xb, n_real in self.image_batches(images, progress=progress, conform=conform):
            yield self._batch_logits(xb, n_real)

    def _batch_logits(self, xb: torch.Tensor, n_real: int) -> dict[str, torch.Tensor]:
        """Per task, the B×V×outputs logits of one batch of :meth:`image_batches` (padding dropped)."""
        views = {n: t.views(xb, train=False) for n, t in self.tasks.items()}
        logits = self.forward_views({n: v.flatten(0, 1) for n, v in views.items()}, self.device)
        return {n: logits[n].view(xb.shape[0], t.n_views, -1)[:n_real] for n, t in self.tasks.items()}

    def _draw_logits(self, xb: torch.Tensor, n_real: int) -> dict[str, torch.Tensor]:
        """With ``config.jigsaw_test_draws`` = D > 0: the jigsaw's logits B×D×V×outputs on its test
        views of draws 1..D (random tile offsets, :meth:`fgad.tasks.Task.test_views`), in one pass;
        empty otherwise (draw 0, the centred views, is :meth:`_batch_logits`)."""
        draws = self.config.jigsaw_test_draws
        if not draws or "jigsaw" not in self.tasks:
            return {}
        t = self.tasks["jigsaw"]
        views = torch.cat([t.test_views(xb, d) for d in range(1, draws + 1)], 1)  # B×(D·V)×C×H×W
        logits = self.forward_views({"jigsaw": views.flatten(0, 1)}, self.device)["jigsaw"]
        return {"jigsaw": logits.view(xb.shape[0], draws, t.n_views, -1)[:n_real]}

    def _batch_features(self, xb: torch.Tensor, n_real: int) -> torch.Tensor:
        """L2-normalised backbone features (float64, n_real×D) of the untransformed images of a batch."""
        cfg = self.config
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(cfg, self.device):
            feats = self.net.backbone(xb)
        return l2_normalise(feats.float()[:n_real])

    @torch.inference_mode()
    def input_pixels(self, images: Any, *, conform: bool = False) -> np.ndarray:
        """The network's input pixels of the images (padded or resized to ``image_size``, in
        [-1, 1]), flattened and L2-normalised: N×(C·S·S) float64 (the space of ``pixel_knn``)."""
        out = [_pixel_rows(xb, n) for xb, n in self.image_batches(images, conform=conform)]
        return torch.cat(out).cpu().numpy()

    @torch.inference_mode()
    def features(self, images: Any, *, progress: bool = False, conform: bool = False,
                 mirror: bool = False) -> np.ndarray:
        """The L2-normalised backbone features of the images, untransformed (``mirror``: of their
        left-right mirrors): N×D float64 (the space of the ``feature_knn`` component)."""
        out = [self._batch_features(xb.flip(-1) if mirror else xb, n)
               for xb, n in self.image_batches(images, progress=progress, conform=conform)]
        return torch.cat(out).cpu().numpy()

    def image_batches(self, images: Any, *, progress: bool = False,
                      conform: bool = False) -> Iterator[tuple[torch.Tensor, int]]:
        """The images, checked (see :meth:`score_tasks`), preprocessed on the device in batches of
        the scoring batch size: yields ``(B×C×S×S float tensor, n_real)``, the network in eval mode.

        Only the first ``n_real`` rows are images: with ``config.compile`` the last batch is
        padded to the full size (one batch shape for the compiled network) with copies of its
        first image; eval mode scores every image on its own, so callers drop those rows.
        """
        x_np = self._check_input(images, conform)
        cfg, device = self.config, self.device
        self.net.to(device).eval()
        bs = score_batch_size(cfg, device)
        from tqdm.auto import tqdm

        for start in tqdm(range(0, len(x_np), bs), disable=not progress, desc="score", unit="batch"):
            chunk = x_np[start : start + bs]
            n_real = chunk.shape[0]
            if cfg.compile and n_real < bs and len(x_np) > bs:
                chunk = np.concatenate([chunk, np.repeat(chunk[:1], bs - n_real, axis=0)])
            yield to_tensor(chunk, cfg.image_size, device), n_real

    def forward_views(self, views: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        """Float32 logits of the network on flat views per task, with the config's layout and precision."""
        return network_logits(self.inference_network(), views, self.config, device)

    def inference_network(self) -> nn.Module:
        """The network that scores: with ``config.compile``, compiled once per network (the
        compilation costs tens of seconds on a CPU and pays back over thousands of images)."""
        if not self.config.compile:
            return self.net
        if self._compiled is None or self._compiled[0] is not self.net:
            self._compiled = (self.net, torch.compile(self.net))
        return self._compiled[1]

    @property
    def mirrors(self) -> bool:
        """Whether each component is the mean over the image and its left-right mirror, and the kNN
        bank holds the training normals' mirrors (``config.test_mirror``; ``"auto"``: when
        training flips the images, :func:`fgad.core.training.hflip_on`)."""
        cfg = self.config
        if cfg.test_mirror == "auto":
            return self.input_shape is not None and hflip_on(cfg, self.input_shape[2])
        return cfg.test_mirror == "on"

    @property
    def component_names(self) -> list[str]:
        """The fused components: each task, then ``"feature_knn"`` and ``"pixel_knn"`` when the config
        has them."""
        cfg = self.config
        return [*self.tasks, *([FEATURE_COMPONENT] if cfg.feature_knn else []),
                *([PIXEL_COMPONENT] if cfg.pixel_knn else [])]

    def score_components(self, images: Any, *, progress: bool = False, conform: bool = False) -> dict[str, np.ndarray]:
        """Every component the score fuses, as normality values (higher = more normal), one float64
        array of N each: per task its score under ``config.task_score`` (``"prob"``: the sums of
        :meth:`score_tasks`; with ``jigsaw_test_draws`` = D > 0 the jigsaw's per-view terms are
        averaged over the centred tiles and D random tile draws), and ``"feature_knn"``: minus the
        mean cosine distance of the image's features to its nearest training normals, and
        ``"pixel_knn"``: the same for the network's input pixels. With :attr:`mirrors`, each but
        ``"pixel_knn"`` is the mean of its values on the image and on its left-right mirror (as
        chosen on the development suite). :meth:`score` is minus their fusion."""
        return self._components(images, progress=progress, conform=conform)

    @torch.inference_mode()
    def _components(self, images: Any, *, progress: bool = False, conform: bool = False,
                    knn_exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """:meth:`score_components`; ``knn_exclude``: per image, its own bank row to leave out
        of its neighbours (−1: none), for leave-one-out statistics on the training normals."""
        if not self.is_fitted:  # before the fitted scoring state is read
            raise InputError("the detector is not fitted: call fit() or Detector.load() first")
        cfg, device = self.config, self.device
        labels = {n: t.labels().to(device) for n, t in self.tasks.items()}
        alphas = None
        if cfg.task_score == "dirichlet":
            alphas = {n: [torch.from_numpy(a).to(device) for a in heads] for n, heads in self.dirichlet_alpha.items()}
        # float64 once per call, as knn_cosine_distance computes: not a copy of the banks per batch
        bank = torch.from_numpy(self.feature_bank).to(device, torch.float64) if cfg.feature_knn else None
        pixel_bank = torch.from_numpy(self.pixel_bank).to(device, torch.float64) if cfg.pixel_knn else None
        out: dict[str, list[torch.Tensor]] = {n: [] for n in self.component_names}  # on the device: no sync per batch
        start = 0
        for xb, n_real in self.image_batches(images, progress=progress, conform=conform):
            exclude = None
            if knn_exclude is not None:
                exclude = torch.from_numpy(knn_exclude[start : start + n_real]).to(device)
            values = self._batch_components(xb, n_real, labels, alphas, bank, exclude)
            if self.mirrors:
                mirrored = self._batch_components(xb.flip(-1), n_real, labels, alphas, bank, exclude)
                values = {n: (v + mirrored[n]) / 2 for n, v in values.items()}
            if pixel_bank is not None:  # the pixel bank holds no mirrors: the image's own row only
                own = None if exclude is None else exclude.reshape(n_real, -1)[:, :1]
                values[PIXEL_COMPONENT] = -knn_cosine_distance(_pixel_rows(xb, n_real), pixel_bank, cfg.pixel_knn, own)
            for n, v in values.items():
                out[n].append(v)
            start += n_real
        return {n: torch.cat(v).cpu().numpy().astype(np.float64) for n, v in out.items()}

    def _batch_components(self, xb: torch.Tensor, n_real: int, labels: dict[str, torch.Tensor],
                          alphas: dict[str, list[torch.Tensor]] | None, bank: torch.Tensor | None,
                          exclude: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Every component of one batch of :meth:`image_batches` (padding dropped): n_real each."""
        cfg = self.config
        logits, drawn = self._batch_logits(xb, n_real), self._draw_logits(xb, n_real)
        values = {}
        for n, t in self.tasks.items():
            alpha = None if alphas is None else alphas[n]
            value = task_score(logits[n], labels[n], t.head_sizes, cfg.task_score, alpha)
            if n in drawn:  # each view's term averaged over the centred tiles and the draws
                for d in range(drawn[n].shape[1]):
                    value = value + task_score(drawn[n][:, d], labels[n], t.head_sizes, cfg.task_score, alpha)
                value = value / (drawn[n].shape[1] + 1)
            values[n] = value
        if bank is not None:
            dist = knn_cosine_distance(self._batch_features(xb, n_real), bank, cfg.feature_knn, exclude)
            values[FEATURE_COMPONENT] = -dist
        return values

    def fuse_components(self, components: dict[str, np.ndarray], fusion: str | None = None) -> np.ndarray:
        """The fused normality score (higher = more normal) of :meth:`score_components`' output,
        with ``fusion`` (default: the config's; see :func:`fgad.core.scoring.fuse`)."""
        fusion = fusion or self.config.score_fusion
        if fusion not in FUSIONS:
            raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if fusion in STANDARDISED_FUSIONS and self.normal_stats is None:
            raise InputError(f"fusion {fusion!r} needs statistics of normal images; this model has none "
                             f"(fit it with score_fusion 'zscore' or 'rank')")
        if fusion in RAW_FUSIONS and FEATURE_COMPONENT in components:
            raise InputError(f"fusion {fusion!r} cannot add the feature-space component to task scores; "
                             f"use 'zscore' or 'rank'")
        return fuse(components, fusion, self.task_terms, self.normal_stats, self.fusion_weights)

    @property
    def fusion_weights(self) -> dict[str, float] | None:
        """Per component, its weight in the fusion when one is not 1 (``config.feature_weight``)."""
        if self.config.feature_knn and self.config.feature_weight != 1.0:
            return {FEATURE_COMPONENT: float(self.config.feature_weight)}
        return None

    def normality(self, images: Any, *, fusion: str | None = None, conform: bool = False) -> np.ndarray:
        """The fused normality score: higher = more normal (with the paper's settings, s(x) of eq. 3)."""
        return self.fuse_components(self.score_components(images, conform=conform), fusion)

    def score(self, images: Any, *, fusion: str | None = None, conform: bool = False) -> np.ndarray:
        """Anomaly scores, one per image: higher = more anomalous (the fused normality negated).

        ``fusion`` (default: the config's ``score_fusion``): ``"sum"`` (the paper's eq. 3)
        averages the raw task scores; ``"mean"`` divides each by its number of terms first;
        ``"zscore"`` and ``"rank"`` standardise each component with the model's statistics of
        normal images first (models fitted with one of them only).
        """
        return -self.normality(images, fusion=fusion, conform=conform)

    def normal_percentile(self, scores: Any) -> np.ndarray | None:
        """For each anomaly score (of :meth:`score`, the config's fusion), the share (0–100 %) of
        the held-out normal images whose anomaly score is lower: a readable companion of the raw
        score (99 = more anomalous than 99 % of normal images). None for a model without held-out
        normal images (fusion ``sum``/``mean``, or statistics from the training normals)."""
        if self.normal_stats is None or self.normal_stats.anomaly_scores is None:
            return None
        return percentile_below(np.asarray(scores, dtype=np.float64), self.normal_stats.anomaly_scores)

    @property
    def task_terms(self) -> dict[str, int]:
        return {n: t.n_score_terms for n, t in self.tasks.items()}

    # ----------------------------------------------------------------------------- decisions
    def calibrate(self, normal_images: Any = None, *, images: Any = None, labels: Any = None,
                  target_fpr: float = 0.05, rule: str | None = None, target: float | None = None,
                  fusion: str | None = None) -> dict[str, Any]:
        """Choose the decision threshold on held-out images; store it in ``self.decision``.

        - ``normal_images`` only (not the training images: they score too normal): the
          threshold rejects at most ``target_fpr`` of them (:func:`fgad.tools.decision.threshold_at_fpr`);
        - ``images`` with ``labels`` (1 = anomaly, 0 = normal; ``normal_images``, if also given,
          are added with label 0): ``rule`` ``"bpcer"`` (default, target = ``target_fpr``),
          ``"apcer"`` or ``"f1"`` (:func:`fgad.tools.decision.threshold_from_labels`).

        The dict returned (threshold, rule, target, counts, achieved rates, fusion) is saved with
        the model; :meth:`predict` applies it: anomalous when the anomaly score >= threshold.
        """
        from ..tools.decision import calibrate_scores, check_calibration_args

        fusion = fusion or self.config.score_fusion
        check_calibration_args(fusion, rule, target_fpr, target)  # before any scoring
        if images is not None and labels is None:
            raise InputError("calibrate: images need labels (1 = anomaly, 0 = normal); "
                             "for normal images only, pass them as normal_images")
        decision = calibrate_scores(
            None if normal_images is None else self.score(normal_images, fusion=fusion),
            None if images is None else self.score(images, fusion=fusion), labels,
            target_fpr=target_fpr, rule=rule, target=target)
        decision["fusion"] = fusion
        self.decision = decision
        return decision

    def predict(self, images: Any) -> np.ndarray:
        """1 = anomaly (anomaly score >= the calibrated threshold), 0 = normal; int64, one per image."""
        from ..tools.decision import decide

        if self.decision is None:
            raise InputError("the detector has no decision threshold: call calibrate() with held-out "
                             "normal images first (command line: fgad calibrate MODEL IMAGES)")
        return decide(self.score(images, fusion=self.decision.get("fusion")), self.decision)

    # ----------------------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write weights (safetensors), config and training log (JSON) into the folder ``path``, atomically."""
        if not self.is_fitted:
            raise InputError("the detector is not fitted: nothing to save")
        meta = {"preset": self.preset, "config": self.config.to_dict(), "input_shape": list(self.input_shape),
                "tasks": {n: t.state() for n, t in self.tasks.items()}, "task_terms": self.task_terms,
                "info": self.info}
        if self.normal_stats is not None:
            meta["normal_stats"] = self.normal_stats.summary()
        if self.decision is not None:
            meta["decision"] = self.decision
        scoring = self._scoring_tensors()
        return save_model_folder(path, FORMAT, meta, self.net.state_dict(), extra_json={LOG_FILE: self.history},
                                 extra_tensors={SCORING_FILE: scoring} if scoring else None)

    def _scoring_tensors(self) -> dict[str, torch.Tensor]:
        """The fitted scoring state as named tensors (:data:`SCORING_FILE`); empty with the paper's settings."""
        arrays: dict[str, np.ndarray] = {}
        for n, heads in (self.dirichlet_alpha or {}).items():
            arrays.update({f"dirichlet_alpha.{n}.{h}": a for h, a in enumerate(heads)})
        if self.feature_bank is not None:
            arrays["feature_bank"] = self.feature_bank
        if self.pixel_bank is not None:
            arrays["pixel_bank"] = self.pixel_bank
        if self.normal_stats is not None:
            arrays.update(self.normal_stats.tensors())
        if self.heldout_indices is not None:
            arrays["heldout_indices"] = self.heldout_indices
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def _restore_scoring(self, folder: ModelFolder) -> None:
        """Set the scoring state saved by :meth:`_scoring_tensors`; KeyError/ValueError when broken."""
        cfg = self.config
        saved = folder.tensors(SCORING_FILE) if (folder.path / SCORING_FILE).is_file() else {}
        arrays = {k: v.numpy() for k, v in saved.items()}
        if cfg.task_score == "dirichlet":
            self.dirichlet_alpha = {}
            for n, t in self.tasks.items():
                heads = [arrays[f"dirichlet_alpha.{n}.{h}"] for h in range(len(t.head_sizes))]
                if any(a.shape != (t.n_views, size) for a, size in zip(heads, t.head_sizes)):
                    raise ValueError(f"Dirichlet parameters of task {n!r} do not match its views and heads")
                self.dirichlet_alpha[n] = [a.astype(np.float64) for a in heads]
        if cfg.feature_knn:
            bank = arrays["feature_bank"]
            if bank.ndim != 2 or bank.shape[0] < 2 or bank.shape[1] != self.net.backbone.out_features:
                raise ValueError(f"feature bank of shape {list(bank.shape)} does not match the backbone")
            self.feature_bank = bank.astype(np.float32)
        if cfg.pixel_knn:
            bank = arrays["pixel_bank"]
            h, w = (cfg.image_size, cfg.image_size) if cfg.image_size else self.input_shape[:2]
            n_pixels = self.input_shape[2] * h * w
            if bank.ndim != 2 or bank.shape[0] < 2 or bank.shape[1] != n_pixels:
                raise ValueError(f"pixel bank of shape {list(bank.shape)} does not match {n_pixels} input pixels")
            self.pixel_bank = bank.astype(np.float32)
        if cfg.score_fusion in STANDARDISED_FUSIONS:
            self.normal_stats = NormalStats.restore(folder.get("normal_stats"), arrays, self.component_names)
        if "heldout_indices" in arrays:
            self.heldout_indices = arrays["heldout_indices"].astype(np.int64)

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> "Detector":
        """Load a folder written by :meth:`save`. Never unpickles: safetensors and JSON only.

        Raises:
            ModelFileError: missing files, or tensors whose names, shapes or dtypes do not match
                the configuration.
        """
        folder = read_model_folder(path, FORMAT, "fgad")
        try:
            # A folder saved before a scoring or flip option existed was the paper's method there.
            values = {**PAPER_SETTINGS, **dict(folder.get("config"))}
            values.setdefault("resize", "stretch")  # saved before the resize rules: conform=True stretched
            values.setdefault("feature_weight", 1.0)  # saved before the weight existed: an equal-weight mean
            if device is not None:
                values["device"] = device
            det = cls.from_config(DetectorConfig.from_dict(values), str(folder.meta.get("preset", "custom")))
            det.input_shape = tuple(int(v) for v in folder.get("input_shape"))
            if len(det.input_shape) != 3 or det.input_shape[2] not in (1, 3):
                raise ValueError(f"bad input_shape {det.input_shape}")
            det.info = dict(folder.meta.get("info", {}))
            log = folder.read_json(LOG_FILE)  # kept so that a re-save does not drop the log
            det.history = log if isinstance(log, list) else []
            det.decision = _load_decision(folder.meta.get("decision"))
            det.build_network(det.input_shape[2], task_states=folder.get("tasks"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{folder.config_path}: invalid model config ({exc})") from exc
        load_state_checked(det.net, folder.tensors(), folder.path / WEIGHTS_FILE)
        try:
            det._restore_scoring(folder)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{folder.path}: missing or invalid scoring state ({exc})") from exc
        det.net.to(det.device).eval()
        return det


def _pixel_rows(xb: torch.Tensor, n_real: int) -> torch.Tensor:
    """The L2-normalised flattened input pixels (float64, n_real×(C·S·S)) of a batch."""
    return l2_normalise(xb[:n_real].flatten(1))


def _load_decision(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    from ..tools.decision import check_decision

    try:
        decision = check_decision(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if decision.get("fusion", "sum") not in FUSIONS:
        raise ValueError(f"decision: unknown fusion {decision.get('fusion')!r}")
    return dict(decision)
