"""``Detector``: the paper's multi-task self-supervised anomaly detector behind one object.

Example:
    >>> from fgad import Detector
    >>> det = Detector(preset="quick", tasks=("geometric", "jigsaw"))  # the paper's method
    >>> det.fit(normal_images)              # uint8 N×H×W or N×H×W×C, normal images only
    >>> scores = det.score(test_images)     # anomaly scores: higher = more anomalous
    >>> det.save("model/"); det = Detector.load("model/")

``tasks=("geometric",)`` is MHRot, ``("jigsaw",)`` is jigsaw only, both is the paper's method.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Collection, Iterator

import numpy as np
import torch
from torch import nn

from .config import DetectorConfig, resolve_config, score_batch_size
from ..errors import InputError, ModelFileError
from ..io.modelfolder import CONFIG_FILE, WEIGHTS_FILE, read_model_folder, save_model_folder  # noqa: F401 (re-exported)
from ..nets import MultiTaskNet, WideResNet
from ..io.preprocess import as_image_array, check_image_shape, conform_images, to_tensor
from ..io.provenance import versions
from ..io.safeload import load_state_checked
from .scoring import fuse, true_class_probability_sum
from .seeding import enable_determinism, seed_everything
from ..tasks import Task, build_task
from .precision import autocast
from .training import EvalHook, train

FORMAT = "fgad-detector"
LOG_FILE = "training_log.json"


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
                params = {"grid": cfg.jigsaw_grid, "k": cfg.jigsaw_k, "margin": cfg.jigsaw_margin, "seed": cfg.seed}
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
        """
        x_np = as_image_array(images, "training images")
        if x_np.shape[0] < 2:
            raise InputError("training images: at least 2 normal images are needed, got 1")
        cfg = self.config
        seed_everything(cfg.seed)
        device = self.device
        if cfg.deterministic:
            enable_determinism()
        self.input_shape = tuple(int(s) for s in x_np.shape[1:])
        self.build_network(self.input_shape[2], device=device)
        x = to_tensor(x_np, cfg.image_size)
        t0 = time.perf_counter()
        self.history = train(self.net, self.tasks, x, cfg, device, checkpoint_dir=checkpoint_dir, progress=progress,
                             evaluate=evaluate, eval_every=eval_every)
        self.net.eval()
        self.decision = None  # a threshold calibrated on another network no longer holds
        self.info = {"n_train": int(x_np.shape[0]), "fit_s": round(time.perf_counter() - t0, 3),
                     "device": str(device), "versions": versions()}
        return self

    # ----------------------------------------------------------------------------- scoring
    def _check_input(self, images: Any, conform: bool = False) -> np.ndarray:
        if not self.is_fitted:
            raise InputError("the detector is not fitted: call fit() or Detector.load() first")
        x = as_image_array(images, "images to score")
        if conform:
            x = conform_images(x, self.input_shape)
        return check_image_shape(x, self.input_shape)

    @torch.inference_mode()
    def score_tasks(self, images: Any, *, progress: bool = False, conform: bool = False) -> dict[str, np.ndarray]:
        """Per-task normality sums (eq. 4; higher = more normal), one array of N per task.

        Images must have the training images' size and channels; with ``conform=True`` others are
        converted (grey ↔ colour, see :func:`fgad.io.preprocess.conform_images`) and resized instead.
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
        device = self.device
        for xb, n_real in self.image_batches(images, progress=progress, conform=conform):
            views = {n: t.views(xb, train=False) for n, t in self.tasks.items()}
            logits = self.forward_views({n: v.flatten(0, 1) for n, v in views.items()}, device)
            yield {n: logits[n].view(xb.shape[0], t.n_views, -1)[:n_real] for n, t in self.tasks.items()}

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
        cfg = self.config
        if cfg.channels_last:
            views = {k: v.contiguous(memory_format=torch.channels_last) for k, v in views.items()}
        with autocast(cfg, device):
            out = self._inference_net()(views)
        return {k: v.float() for k, v in out.items()}

    def _inference_net(self) -> nn.Module:
        """The network that scores: with ``config.compile``, compiled once per network (the
        compilation costs tens of seconds on a CPU and pays back over thousands of images)."""
        if not self.config.compile:
            return self.net
        if self._compiled is None or self._compiled[0] is not self.net:
            self._compiled = (self.net, torch.compile(self.net))
        return self._compiled[1]

    def normality(self, images: Any, *, fusion: str | None = None, conform: bool = False) -> np.ndarray:
        """The paper's normality score s(x) (eq. 3): higher = more normal."""
        sums = self.score_tasks(images, conform=conform)
        return fuse(sums, fusion or self.config.score_fusion, self.task_terms)

    def score(self, images: Any, *, fusion: str | None = None, conform: bool = False) -> np.ndarray:
        """Anomaly scores, one per image: higher = more anomalous (the paper's score negated).

        ``fusion="sum"`` (default, the paper's eq. 3) averages the raw task sums;
        ``"mean"`` divides each task's sum by its number of terms first.
        """
        return -self.normality(images, fusion=fusion, conform=conform)

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
        if self.decision is not None:
            meta["decision"] = self.decision
        return save_model_folder(path, FORMAT, meta, self.net.state_dict(), extra_json={LOG_FILE: self.history})

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> "Detector":
        """Load a folder written by :meth:`save`. Never unpickles: safetensors and JSON only.

        Raises:
            ModelFileError: missing files, or tensors whose names, shapes or dtypes do not match
                the configuration.
        """
        folder = read_model_folder(path, FORMAT, "fgad")
        try:
            values = dict(folder.get("config"))
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
        det.net.to(det.device).eval()
        return det


def _load_decision(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    from ..tools.decision import check_decision

    try:
        decision = check_decision(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if decision.get("fusion", "sum") not in ("sum", "mean"):
        raise ValueError(f"decision: unknown fusion {decision.get('fusion')!r}")
    return dict(decision)
