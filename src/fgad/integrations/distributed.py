"""Data-parallel training of a :class:`~fgad.Detector` on several processes (GPUs or CPU cores).

Every rank holds all normal images and takes a contiguous slice of each step's
``batch_size`` source images (the global batch is the one-process batch); gradients are averaged
by DistributedDataParallel, nccl on CUDA, gloo on CPU. Batch-norm statistics are those of the whole
global batch by default (``sync_batchnorm``: SyncBatchNorm on CUDA, :class:`GlobalBatchNorm2d` on
CPU), so with dropout off a run on N processes gives the weights of a one-process run up to float
rounding. With dropout on, each rank draws its own masks: the run differs from a one-process one,
as any other seed would. Rank 0 writes the checkpoints and the model.

On one machine, from Python::

    from fgad.integrations.distributed import train_ddp
    train_ddp(images, "model/", nprocs=4, preset="paper")     # 4 GPUs, or 4 CPU processes

or with torchrun (one or several machines; a checkpoint folder must be on a shared file system
to resume), through the command-line entry :mod:`fgad.cli.distributed`::

    torchrun --nproc_per_node=4 -m fgad.cli.distributed normal.npz --out model/ --preset paper
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import DistributedError, InputError
from ..io.fileio import checkpoint_folder, remove_checkpoints


# ------------------------------------------------------------------------------ batch norm
class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum over ranks
    of the gradients of the output."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(t)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks), on any
    backend (torch's SyncBatchNorm is GPU-only). Two differentiable all-reduces per call: the
    sums (mean), then the squared deviations (variance). Outside a process group, or in eval
    mode, it is a plain BatchNorm2d. In a group it uses this formula on any number of ranks
    (also one), so runs on 1 and N processes differ only in the order of float sums; torch's own
    batch-norm kernel rounds differently (about 1e-5 relative per step in the weights)."""

    global_batch_stats = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        c = x.shape[1]
        count = x.new_full((1,), x.numel() // c)
        totals = all_reduce_sum(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        n = totals[c]
        mean = totals[:c] / n
        dev = x - mean.view(1, c, 1, 1)
        var = all_reduce_sum(dev.pow(2).sum(dim=(0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        y = dev * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def _swap_batchnorm(module: nn.Module, match: tuple[type, ...], new_cls: type) -> nn.Module:
    """Replace every ``match`` batch-norm layer under ``module`` by ``new_cls`` sharing its
    parameters and buffers (in place; the module tree is returned)."""
    for name, child in list(module.named_children()):
        if isinstance(child, match) and type(child) is not new_cls:
            kw = dict(eps=child.eps, momentum=child.momentum, affine=child.affine,
                      track_running_stats=child.track_running_stats)
            new = new_cls(child.num_features, **kw)
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            _swap_batchnorm(child, match, new_cls)
    return module


def use_global_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the global batch: SyncBatchNorm on CUDA, GlobalBatchNorm2d elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return _swap_batchnorm(net, (nn.BatchNorm2d,), GlobalBatchNorm2d)


def use_plain_batchnorm(net: nn.Module) -> nn.Module:
    """Undo :func:`use_global_batchnorm` (same tensors, plain BatchNorm2d layers)."""
    return _swap_batchnorm(net, (nn.SyncBatchNorm, GlobalBatchNorm2d), nn.BatchNorm2d)


def assert_replicas_agree(net: nn.Module) -> None:
    """Raise if any parameter or buffer differs between ranks (bitwise)."""
    flat = torch.cat([t.detach().float().flatten() for t in net.state_dict().values()])
    lo, hi = flat.clone(), flat.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        bad = int((lo != hi).sum())
        raise RuntimeError(f"data-parallel replicas disagree after training in {bad} value(s)")


# ------------------------------------------------------------------------------ one rank
def rank_device(config_device: str, local_rank: int) -> torch.device:
    """This rank's device: cuda:LOCAL_RANK when the config asks for CUDA (or auto and there is
    one), else the CPU."""
    if config_device == "cpu" or (config_device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"device {config_device!r} requested but CUDA is not available")
    return torch.device("cuda", local_rank)


def fit_distributed(det, images: Any, *, checkpoint_dir: str | Path | None = None, progress: bool = True,
                    sync_batchnorm: bool = True, local_rank: int | None = None):
    """:meth:`Detector.fit` on this rank of an initialised process group; returns ``det``
    (fitted, identical on every rank). The steps are those of the one training loop,
    :func:`fgad.core.training.train` with ``distributed=True``; around it, the rank's device and
    the global batch norm."""
    from ..core.seeding import seed_everything
    from ..core.training import train
    from ..io.preprocess import as_image_array, to_tensor
    from ..io.provenance import versions

    if not (dist.is_available() and dist.is_initialized()):
        raise DistributedError("fit_distributed needs an initialised torch.distributed process group")
    x_np = as_image_array(images, "training images")
    if x_np.shape[0] < 2:
        raise InputError("training images: at least 2 normal images are needed, got 1")
    cfg = det.config
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if local_rank is None else local_rank
    device = rank_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(cfg.seed)
    det.input_shape = tuple(int(s) for s in x_np.shape[1:])
    det.build_network(det.input_shape[2], device=device)  # the initial weights of Detector.fit
    if sync_batchnorm:
        det.net = use_global_batchnorm(det.net, device)
    x_fit, held = det.split_heldout(x_np)  # the same split on every rank (seeded)
    x = to_tensor(x_fit, cfg.image_size)
    t0 = time.perf_counter()
    det.history = train(det.net, det.tasks, x, cfg, device, checkpoint_dir=checkpoint_dir,
                        progress=progress, distributed=True)
    if not sync_batchnorm:  # per-rank running statistics: keep rank 0's, as DDP does at each forward
        for b in det.net.buffers():
            dist.broadcast(b, src=0)
    assert_replicas_agree(det.net)
    det.net = use_plain_batchnorm(det.net)
    det.net.eval()
    det.fit_scoring_state(x_fit, x_np, held)  # every rank alike: the same weights, images and seeds
    det.info = {"n_train": int(x_fit.shape[0]), "fit_s": round(time.perf_counter() - t0, 3), "device": str(device),
                "versions": versions(),
                "distributed": {"world_size": dist.get_world_size(), "backend": dist.get_backend(),
                                "sync_batchnorm": bool(sync_batchnorm)}}
    if held is not None:
        det.info["n_heldout"] = int(len(held))
    return det


def run_rank(det, images, out, checkpoint_dir, progress, sync_batchnorm) -> None:
    """This rank's part of a run in an initialised process group: train; rank 0 saves to ``out``
    and then removes the checkpoints it wrote."""
    ckpt = checkpoint_folder(checkpoint_dir) if dist.get_rank() == 0 else checkpoint_dir  # rank 0 writes them
    det = fit_distributed(det, images, checkpoint_dir=ckpt, progress=progress, sync_batchnorm=sync_batchnorm)
    if dist.get_rank() == 0 and out is not None:
        det.save(out)
        remove_checkpoints(checkpoint_dir)  # the finished model supersedes them
    dist.barrier()


def process_group_backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


# ------------------------------------------------------------------------------ spawn (one machine)
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world: int, port: int, threads: int, det, images, out, checkpoint_dir, progress,
             sync_batchnorm) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    torch.set_num_threads(threads)
    device = rank_device(det.config.device, rank)
    dist.init_process_group(process_group_backend(device), rank=rank, world_size=world)
    try:
        run_rank(det, images, out, checkpoint_dir, progress, sync_batchnorm)
    finally:
        dist.destroy_process_group()


def train_ddp(images: Any, out: str | Path, *, nprocs: int = 2, preset: str = "quick",
              checkpoint_dir: str | Path | None = None, progress: bool = True, sync_batchnorm: bool = True,
              threads: int | None = None, **overrides: Any) -> Path:
    """Train a detector with ``nprocs`` data-parallel processes on this machine; rank 0 saves
    it to ``out``. On CUDA, process i uses cuda:i (``nprocs`` ≤ the number of GPUs); on CPU,
    each process gets ``threads`` intra-op threads (default: the cores divided among them).

    ``images``: uint8 N×H×W[×C] normal images. ``overrides``: DetectorConfig fields.
    Load the result with ``Detector.load(out)``.
    """
    import torch.multiprocessing as mp

    from ..core.detector import Detector
    from ..io.preprocess import as_image_array

    if nprocs < 1:
        raise InputError(f"nprocs must be >= 1, got {nprocs}")
    det = Detector(preset=preset, **overrides)  # a bad config fails here, before any process starts
    device = rank_device(det.config.device, 0)
    if device.type == "cuda" and nprocs > torch.cuda.device_count():
        raise InputError(f"nprocs={nprocs} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    images = as_image_array(images, "training images")
    threads = threads or max(1, (os.cpu_count() or 1) // nprocs)
    mp.spawn(_spawned, args=(nprocs, _free_port(), threads, det, images, str(out),
                             None if checkpoint_dir is None else str(checkpoint_dir), progress, sync_batchnorm),
             nprocs=nprocs, join=True)
    return Path(out)
