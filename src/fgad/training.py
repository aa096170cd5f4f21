"""The training loop: all views of every task from each batch of normal images, one loss.

Per step: ``batch_size`` source images → every task's views of them (jigsaw offsets random) →
one backbone pass → cross-entropy per head, averaged over a task's heads, summed over tasks →
SGD with Nesterov momentum, learning rate on a cosine curve stepped per iteration.

Every random draw of step s derives from (seed, s) (see ``seeding``), and a checkpoint holds the
weights, the momentum buffers and the step: a run resumed from its last checkpoint ends with the
same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .config import DetectorConfig
from .errors import ModelFileError
from .fileio import atomic_directory
from .seeding import derive_seed, generator
from .tasks import Task

# Keys that change neither the data nor the arithmetic of training: a resume may differ in them.
_RESUME_FREE_KEYS = {"device", "score_batch_size", "checkpoint_every", "score_fusion", "compile"}


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    return max(1, math.ceil(n_images / batch_size))


def total_steps(cfg: DetectorConfig, n_images: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    return max(1, math.ceil(cfg.epochs * steps_per_epoch(n_images, cfg.batch_size)))


def batch_indices(seed: int, step: int, n_images: int, batch_size: int) -> torch.Tensor:
    """Source images of a step: epoch e is a permutation drawn from (seed, e), cut in batches."""
    spe = steps_per_epoch(n_images, batch_size)
    epoch, i = divmod(step, spe)
    perm = torch.randperm(n_images, generator=generator(seed, 1, epoch))
    return perm[i * batch_size : (i + 1) * batch_size]


def cosine_lr(base_lr: float, step: int, total: int) -> float:
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / total))


def task_loss(logits: torch.Tensor, labels: torch.Tensor, head_sizes: tuple[int, ...]) -> tuple[torch.Tensor, list[float]]:
    """Mean over heads of the cross-entropy of each head's slice; also each head's accuracy."""
    losses, accs, start = [], [], 0
    for h, size in enumerate(head_sizes):
        part = logits[:, start : start + size].float()
        losses.append(F.cross_entropy(part, labels[:, h]))
        accs.append((part.argmax(1) == labels[:, h]).float().mean().item())
        start += size
    return torch.stack(losses).mean(), accs


def make_optimizer(net: torch.nn.Module, cfg: DetectorConfig) -> torch.optim.SGD:
    return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def _autocast(cfg: DetectorConfig, device: torch.device):
    if cfg.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def train(net: torch.nn.Module, tasks: dict[str, Task], x: torch.Tensor, cfg: DetectorConfig, device: torch.device,
          *, checkpoint_dir: str | Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Train ``net`` on the normal images ``x`` (N×C×S×S in [-1, 1]); returns the training log.

    With ``checkpoint_dir``, a checkpoint is written every ``cfg.checkpoint_every`` steps, and
    a run that finds one there resumes from it.
    """
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
    step_model = net
    if cfg.compile:
        step_model = torch.compile(net)
    net.train()
    bar = tqdm(total=total, initial=start, disable=not progress, desc="train", unit="step", dynamic_ncols=True)
    t0 = time.perf_counter()
    running: dict[str, float] = {}
    for step in range(start, total):
        idx = batch_indices(cfg.seed, step, n, cfg.batch_size).to(device)
        xb = x[idx]
        g = generator(cfg.seed, 2, step)
        views = {name: t.views(xb, train=True, generator=g).flatten(0, 1) for name, t in tasks.items()}
        if cfg.channels_last:
            views = {k: v.contiguous(memory_format=torch.channels_last) for k, v in views.items()}
        torch.manual_seed(derive_seed(cfg.seed, 3, step))  # dropout masks of this step
        lr = cosine_lr(cfg.lr, step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        with _autocast(cfg, device):
            logits = step_model(views)
        loss = logits[next(iter(tasks))].new_zeros((), dtype=torch.float32)
        stats: dict[str, float] = {}
        for name, t in tasks.items():
            tl, accs = task_loss(logits[name], labels[name].repeat(len(idx), 1), t.head_sizes)
            loss = loss + tl
            for h, a in enumerate(accs):
                stats[f"acc_{name}_{h}"] = a
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stats["loss"] = loss.item()
        for k, v in stats.items():  # exponential moving averages for the progress bar
            running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
        bar.update(1)
        bar.set_postfix({k.replace("acc_", ""): f"{v:.3f}" for k, v in running.items()}, refresh=False)
        if (step + 1) % 10 == 0 or step + 1 == total:
            history.append({"step": step + 1, "lr": lr, "elapsed_s": round(time.perf_counter() - t0, 3),
                            **{k: round(v, 5) for k, v in running.items()}})
        if ckpt is not None and ((step + 1) % cfg.checkpoint_every == 0) and step + 1 < total:
            save_checkpoint(ckpt, net, opt, cfg, step + 1, history)
    bar.close()
    return history


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
    saved = {k: v for k, v in meta.get("config", {}).items() if k not in _RESUME_FREE_KEYS}
    wanted = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_FREE_KEYS}
    if saved != wanted:
        diff = sorted(k for k in wanted if saved.get(k) != wanted[k])
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
