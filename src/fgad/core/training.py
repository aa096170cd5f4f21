"""The training loop: the views of every task from each batch of normal images, one loss.

Per step: ``batch_size`` source images (optionally flipped at random, ``hflip``) → every task's
views of them (jigsaw offsets random; all views, or a random ``views_per_image`` of each task's
per image) → one backbone pass → cross-entropy per head, averaged over a task's heads, summed
over tasks (weighted by ``task_weights``) → SGD with Nesterov momentum, learning rate on a cosine
curve stepped per iteration. The defaults (all views, no flip, weights 1) are the paper's.

Every random draw of step s derives from (seed, s) (see ``seeding``), and a checkpoint holds the
weights, the momentum buffers and the step: a run resumed from its last checkpoint ends with the
same weights as an uninterrupted one.

This is the only training loop: :meth:`fgad.Detector.fit` runs it, data-parallel training
(:mod:`fgad.integrations.distributed`) runs it with ``distributed=True``, and task diagnostics
(:mod:`fgad.tools.diagnose`) run it with an evaluation hook.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..errors import ConfigError, DistributedError, ModelFileError
from ..io.fileio import atomic_directory
from ..tasks import Task
from .config import PAPER_SETTINGS, DetectorConfig
from .precision import autocast
from .scoring import STANDARDISED_FUSIONS
from .seeding import derive_seed, generator

# Keys that change neither the data nor the arithmetic of training: a resume may differ in them.
# The scoring options act after training, except through the held-out split: the fusion and the
# normal statistics' options are compared as the one split they make (_training_identity).
_RESUME_FREE_KEYS = {"device", "score_batch_size", "checkpoint_every", "compile", "task_score", "feature_knn",
                     "feature_bank_max", "feature_weight", "pixel_knn", "test_mirror", "jigsaw_test_draws",
                     "score_fusion", "normal_stats", "heldout_fraction"}
_SPLIT_KEY = "held-out split (score_fusion, normal_stats, heldout_fraction)"


def _training_identity(config: dict[str, Any]) -> dict[str, Any]:
    """What in a config decides training, for the resume check: the keys a resume may not change
    and the held-out split (its share, or None: training on every image; the split itself depends
    only on the image count, the share and the seed). A key missing from a checkpoint's config
    was written before the option existed, when training was the paper's: it takes the paper's
    value (:data:`PAPER_SETTINGS` over the config's defaults)."""
    values = {**DetectorConfig().to_dict(), **PAPER_SETTINGS, **config}
    out = {k: v for k, v in values.items() if k not in _RESUME_FREE_KEYS}
    split = values["score_fusion"] in STANDARDISED_FUSIONS and values["normal_stats"] == "heldout"
    out[_SPLIT_KEY] = values["heldout_fraction"] if split else None
    return out


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    return max(1, math.ceil(n_images / batch_size))


def total_steps(cfg: DetectorConfig, n_images: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    return max(1, math.ceil(cfg.epochs * steps_per_epoch(n_images, cfg.batch_size)))


def epoch_permutation(seed: int, epoch: int, n_images: int) -> torch.Tensor:
    """The order of the images in epoch ``epoch``: a permutation drawn from (seed, epoch)."""
    return torch.randperm(n_images, generator=generator(seed, 1, epoch))


def batch_indices(seed: int, step: int, n_images: int, batch_size: int) -> torch.Tensor:
    """Source images of a step: epoch e is a permutation drawn from (seed, e), cut in batches."""
    spe = steps_per_epoch(n_images, batch_size)
    epoch, i = divmod(step, spe)
    return epoch_permutation(seed, epoch, n_images)[i * batch_size : (i + 1) * batch_size]


def cosine_lr(base_lr: float, step: int, total: int) -> float:
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / total))


def task_loss(
    logits: torch.Tensor, labels: torch.Tensor, head_sizes: tuple[int, ...]
) -> tuple[torch.Tensor, list[float]]:
    """Mean over heads of the cross-entropy of each head's slice; also each head's accuracy."""
    loss, accs = _task_loss(logits, labels, head_sizes)
    return loss, accs.tolist()


def _task_loss(
    logits: torch.Tensor, labels: torch.Tensor, head_sizes: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`task_loss` with the accuracies left on the device (no host sync)."""
    losses, accs, start = [], [], 0
    for h, size in enumerate(head_sizes):
        part = logits[:, start : start + size].float()
        losses.append(F.cross_entropy(part, labels[:, h]))
        accs.append((part.argmax(1) == labels[:, h]).float().mean())
        start += size
    return torch.stack(losses).mean(), torch.stack(accs)


def make_optimizer(net: torch.nn.Module, cfg: DetectorConfig) -> torch.optim.SGD:
    return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


# ------------------------------------------------------------------------------ one step, in pieces
# The loop below and ``benchmarks/throughput.py`` run a step with these same functions.

def stat_names(tasks: dict[str, Task]) -> list[str]:
    """Names of the per-step statistics, in the order of :func:`step_loss`'s vector."""
    return [f"acc_{name}_{h}" for name, t in tasks.items() for h in range(len(t.head_sizes))] + ["loss"]


def rank_share(n: int, rank: int, world: int) -> tuple[int, int, int]:
    """Rank ``rank``'s contiguous slice [lo, hi) of a step's ``n`` source images, and its size.

    Slices differ by at most one image. A rank left without an image (n < world) gets the last
    image with size 0: it still runs forward and backward (every rank must join the gradient
    reduction) but its loss is weighted by 0.
    """
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    size = base + (1 if rank < extra else 0)
    if size == 0:
        return n - 1, n, 0
    return lo, lo + size, size


def hflip_on(cfg: DetectorConfig, channels: int) -> bool:
    """Whether training flips source images at random: ``"auto"`` flips colour images only (a
    mirrored digit or glyph is another symbol), and never with geom72 (a flip is its class)."""
    if cfg.hflip == "auto":
        return channels == 3 and "geom72" not in cfg.tasks
    return cfg.hflip == "on"


def choose_views(n_images: int, n_views: int, m: int | None, g: torch.Generator) -> torch.Tensor | None:
    """B×m indices of the views each source image keeps, a uniform random subset per image drawn
    from ``g``; None (and no draw) when every view is kept (``m`` None or >= ``n_views``)."""
    if m is None or m >= n_views:
        return None
    return torch.rand(n_images, n_views, generator=g).argsort(1)[:, :m]


def step_batch(tasks: dict[str, Task], xb: torch.Tensor, cfg: DetectorConfig, step: int,
               part: tuple[int, int] | None = None, labels: dict[str, torch.Tensor] | None = None,
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The step's training views of the source images ``xb`` (B×C×S×S) and their labels.

    Per task: the views, flattened to (B·m)×C×S×S (m = the task's views kept per image, all of
    them by default), and the label of each view, (B·m)×heads. ``labels``: the tasks' label
    tables on the device (default: built here). All random draws come from the step's generator,
    in this order: the flips, then per task its views' draws and its view subset. With
    ``part=(lo, hi)`` only images lo..hi−1 are kept (a data-parallel rank's share); the draws are
    those of the whole batch, so the union over ranks is the one-process batch exactly.
    """
    g = generator(cfg.seed, 2, step)
    n = xb.shape[0]
    if hflip_on(cfg, xb.shape[1]):
        flip = torch.rand(n, generator=g) < 0.5
        xb = torch.where(flip.to(xb.device)[:, None, None, None], xb.flip(-1), xb)
    lo, hi = part if part is not None else (0, n)
    views, view_labels = {}, {}
    for name, t in tasks.items():
        table = labels[name] if labels is not None else t.labels().to(xb.device)
        v = t.views(xb, train=True, generator=g)
        chosen = choose_views(n, v.shape[1], cfg.views_per_image, g)
        v = v[lo:hi]
        if chosen is None:
            view_labels[name] = table.repeat(hi - lo, 1)
        else:
            idx = chosen[lo:hi].to(xb.device)
            v = v[torch.arange(hi - lo, device=xb.device)[:, None], idx]
            view_labels[name] = table[idx].flatten(0, 1)
        v = v.flatten(0, 1)
        if cfg.channels_last:
            v = v.contiguous(memory_format=torch.channels_last)
        views[name] = v
    return views, view_labels


def step_views(tasks: dict[str, Task], xb: torch.Tensor, cfg: DetectorConfig, step: int,
               part: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """The views of :func:`step_batch` alone."""
    return step_batch(tasks, xb, cfg, step, part)[0]


def step_loss(model: torch.nn.Module, tasks: dict[str, Task], view_labels: dict[str, torch.Tensor],
              views: dict[str, torch.Tensor], cfg: DetectorConfig,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward pass on the views (with their labels, see :func:`step_batch`); the task losses
    summed (weighted by ``cfg.task_weights``) and the step's statistics (head accuracies, then
    the loss) as one vector left on the device."""
    with autocast(cfg, device):
        logits = model(views)
    loss = logits[next(iter(tasks))].new_zeros((), dtype=torch.float32)
    accs = []
    for name, t in tasks.items():
        tl, acc = _task_loss(logits[name], view_labels[name], t.head_sizes)
        if cfg.task_weights is not None:
            tl = tl * cfg.task_weights.get(name, 1.0)
        loss = loss + tl
        accs.append(acc)
    return loss, torch.cat([*accs, loss.detach()[None]])


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, tasks: dict[str, Task],
               labels: dict[str, torch.Tensor], xb: torch.Tensor, cfg: DetectorConfig, device: torch.device,
               step: int, total: int, *, rank: int = 0, world: int = 1) -> tuple[float, torch.Tensor]:
    """One optimiser step on the source images ``xb`` (the whole step's batch, on ``device``).

    Returns the learning rate and the statistics vector (see :func:`stat_names`), on the device,
    weighted by this rank's share of the batch (summing the vectors of all ranks gives the
    whole batch's values). With ``world > 1``, ``model`` is a DistributedDataParallel wrapper:
    each rank takes its slice of the images, and its loss is scaled so that DDP's gradient
    average equals the gradient of the whole batch's mean loss, also for uneven slices.
    """
    n = xb.shape[0]
    part, share = None, n
    if world > 1:
        lo, hi, share = rank_share(n, rank, world)
        part = (lo, hi)
    views, view_labels = step_batch(tasks, xb, cfg, step, part, labels)
    torch.manual_seed(derive_seed(cfg.seed, 3, step))  # dropout masks of this step
    lr = cosine_lr(cfg.lr, step, total)
    for group in opt.param_groups:
        group["lr"] = lr
    loss, stats = step_loss(model, tasks, view_labels, views, cfg, device)
    if world > 1:
        loss = loss * (share * world / n)
        stats = stats * (share / n)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return lr, stats


# Host syncs: the step statistics stay on the device and are read every this many steps (and
# at the end and before a checkpoint), which is also the interval of the training log.
SYNC_EVERY = 10


def _dist_world(distributed: bool) -> tuple[int, int]:
    if not distributed:
        return 0, 1
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise DistributedError("distributed training needs an initialised torch.distributed process group "
                           "(use fgad.integrations.distributed)")
    return dist.get_rank(), dist.get_world_size()


# An evaluation hook: called with (steps done, the network being trained); see :func:`train`.
EvalHook = Callable[[int, torch.nn.Module], None]


def check_eval_every(eval_every: int | Collection[int] | None) -> None:
    """Refuse an evaluation interval below 1 (a user error, before any training)."""
    if isinstance(eval_every, bool) or (isinstance(eval_every, int) and eval_every < 1):
        raise ConfigError(f"eval_every must be >= 1, got {eval_every}")


def eval_due(done: int, start: int, total: int, eval_every: int | Collection[int] | None) -> bool:
    """Whether the evaluation hook runs after ``done`` steps of a run of ``total`` that starts at
    step ``start``: an int N = before the first step, every N steps and after the last; a
    collection = at exactly those step counts (0 = before training); None = first and last only."""
    if eval_every is None or isinstance(eval_every, int):
        return done == start or done == total or (eval_every is not None and done % eval_every == 0)
    return done in eval_every


def train(net: torch.nn.Module, tasks: dict[str, Task], x: torch.Tensor, cfg: DetectorConfig, device: torch.device,
          *, checkpoint_dir: str | Path | None = None, progress: bool | str = True,
          distributed: bool = False, evaluate: EvalHook | None = None,
          eval_every: int | Collection[int] | None = None) -> list[dict[str, Any]]:
    """Train ``net`` on the normal images ``x`` (N×C×S×S in [-1, 1]); returns the training log.

    With ``checkpoint_dir``, a checkpoint is written every ``cfg.checkpoint_every`` steps, and
    a run that finds one there resumes from it. ``progress``: show a progress bar (a string
    labels it; default label "train").

    ``evaluate(steps_done, net)``, if given, runs at the step counts chosen by ``eval_every``
    (see :func:`eval_due`; default: before the first step and after the last), on every rank,
    with ``net`` itself (not a compiled or data-parallel wrapper). It must leave ``net`` in
    training mode and must not draw from torch's global random generator, so that the weights
    stay those of a run without it (dropout seeds are set per step anyway).

    With ``distributed=True`` (inside an initialised ``torch.distributed`` process group, see
    :mod:`fgad.integrations.distributed`), ``net`` is wrapped in DistributedDataParallel and every rank trains
    on its slice of each step's ``cfg.batch_size`` source images: the global batch is the
    one-process batch. Every rank holds all of ``x``; rank 0 writes the checkpoints and shows
    progress; the log holds the statistics of the whole batch on every rank.
    """
    check_eval_every(eval_every)
    rank, world = _dist_world(distributed)
    n = x.shape[0]
    total = total_steps(cfg, n)
    opt = make_optimizer(net, cfg)
    history: list[dict[str, Any]] = []
    start = 0
    ckpt = Path(checkpoint_dir) / "last" if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.exists():
        start, history = load_checkpoint(ckpt, net, opt, cfg, device)
    x = x.to(device)
    labels = {name: t.labels().to(device) for name, t in tasks.items()}
    net.train()
    step_model = net
    if world > 1:
        start, history = _sync_start(net, opt, start, history)
        from torch.nn.parallel import DistributedDataParallel as DDP

        has_sync_bn = any(isinstance(m, torch.nn.SyncBatchNorm) or getattr(m, "global_batch_stats", False)
                          for m in net.modules())
        # With global batch norm every rank's buffers are already the same: no per-step broadcast.
        sync_kw = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters
                   else "broadcast_buffers")
        step_model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None,
                         **{sync_kw: not has_sync_bn})
    if cfg.compile:
        step_model = torch.compile(step_model)
    bar = tqdm(total=total, initial=start, disable=not progress or rank != 0, unit="step", dynamic_ncols=True,
               desc=progress if isinstance(progress, str) else "train")
    t0 = time.perf_counter()
    names = stat_names(tasks)
    running: dict[str, float] = {}
    pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, statistics on the device)
    perm_epoch, perm = -1, torch.empty(0)
    spe = steps_per_epoch(n, cfg.batch_size)

    def flush() -> None:
        if not pending:
            return
        rows = torch.stack([s for _, _, s in pending])
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(rows)  # the shares of all ranks: the whole batch's values
        for (st, lr, _), row in zip(pending, rows.tolist()):  # one host sync for all pending steps
            for k, v in zip(names, row):  # exponential moving averages for the progress bar
                running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
            if (st + 1) % SYNC_EVERY == 0 or st + 1 == total:
                history.append({"step": st + 1, "lr": lr, "elapsed_s": round(time.perf_counter() - t0, 3),
                                **{k: round(v, 5) for k, v in running.items()}})
        pending.clear()
        bar.set_postfix({k.replace("acc_", ""): f"{v:.3f}" for k, v in running.items()}, refresh=False)

    if evaluate is not None and eval_due(start, start, total, eval_every):
        evaluate(start, net)
    for step in range(start, total):
        epoch, i = divmod(step, spe)
        if epoch != perm_epoch:  # the epoch's order (as batch_indices), drawn and sent to the device once
            perm_epoch, perm = epoch, epoch_permutation(cfg.seed, epoch, n).to(device)
        xb = x[perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
        lr, stats = train_step(step_model, opt, tasks, labels, xb, cfg, device, step, total, rank=rank, world=world)
        pending.append((step, lr, stats))
        bar.update(1)
        save_now = ckpt is not None and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total
        if (step + 1) % SYNC_EVERY == 0 or step + 1 == total or save_now:
            flush()
        if save_now and rank == 0:
            save_checkpoint(ckpt, net, opt, cfg, step + 1, history)
        if evaluate is not None and eval_due(step + 1, start, total, eval_every):
            evaluate(step + 1, net)
    flush()
    bar.close()
    return history


def _sync_start(net: torch.nn.Module, opt: torch.optim.Optimizer, start: int,
                history: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """Make every rank start from rank 0's state: its step, log, weights and momentum buffers
    (a rank that found no checkpoint, e.g. on another machine, takes rank 0's)."""
    import torch.distributed as dist

    box = [(start, history)]
    dist.broadcast_object_list(box, src=0)
    start, history = box[0]
    for t in net.state_dict().values():
        dist.broadcast(t, src=0)
    for g in opt.param_groups:
        for p in g["params"]:
            st = opt.state[p]
            if "momentum_buffer" not in st or st["momentum_buffer"] is None:
                # SGD's first step sets buf = grad; 0·momentum + grad is the same value.
                st["momentum_buffer"] = torch.zeros_like(p)
            dist.broadcast(st["momentum_buffer"], src=0)
    return start, history


def save_checkpoint(path: Path, net: torch.nn.Module, opt: torch.optim.Optimizer, cfg: DetectorConfig,
                    next_step: int, history: list[dict[str, Any]]) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum.{i}"] = buf.detach().cpu().contiguous()
    meta = {"next_step": next_step, "config": cfg.to_dict(), "history": history}
    with atomic_directory(path) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))


def load_checkpoint(path: Path, net: torch.nn.Module, opt: torch.optim.Optimizer, cfg: DetectorConfig,
                    device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    for name in ("state.json", "state.safetensors"):
        try:
            if name == "state.json":
                meta = json.loads((path / name).read_text())
            else:
                tensors = load_file(str(path / name))
        except (OSError, ValueError, SafetensorError) as exc:
            raise ModelFileError(f"{path / name}: unreadable training checkpoint ({exc})") from exc
    saved, wanted = _training_identity(dict(meta.get("config", {}))), _training_identity(cfg.to_dict())
    if saved != wanted:
        diff = sorted(k for k in {*saved, *wanted} if saved.get(k) != wanted.get(k))
        raise ModelFileError(f"{path}: checkpoint was made with another configuration (differs in: "
                             f"{', '.join(diff)}); remove it or use another checkpoint folder")
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: checkpoint does not fit the network ({str(exc).splitlines()[0]})") from exc
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        if f"momentum.{i}" in tensors:
            opt.state[p]["momentum_buffer"] = tensors[f"momentum.{i}"].to(device)
    return int(meta["next_step"]), list(meta.get("history", []))
