#!/usr/bin/env python
"""Training and scoring throughput of the fgad detector, measured against the hardware.

Measures, on one device, with the library's own code paths:

- training: ``fgad.core.training.train_step`` (the step the training loop runs: views of the batch
  built on the device, forward, loss, backward, SGD), step statistics read every
  ``training.SYNC_EVERY`` steps as the loop does; views/s and source images/s;
- the pretext transformations alone (``fgad.core.training.step_views`` on one batch);
- scoring: ``Detector.score_tasks`` (uint8 images → all views → softmax sums) in test images/s;
- the model FLOPs per view (``torch.utils.flop_counter.FlopCounterMode``: convolutions and dense
  layers, forward, and forward + backward), hence the achieved FLOP/s;
- the device's dense matmul peak, measured here (square matmuls: float32; on CUDA also TF32 and
  bf16), and the utilisation = achieved / peak of the precision the run computes in (bf16 with
  ``--bf16`` on CUDA; TF32 for float32 on CUDA, as cuDNN convolutions use TF32 by default;
  float32 on CPU).

Examples::

    python benchmarks/throughput.py                               # WRN-16-4, batch 32, 32×32×3
    python benchmarks/throughput.py --device cuda --bf16 --channels-last --json wrn16-4.json
    python benchmarks/throughput.py --preset quick --steps 5      # the quick preset's network

Numbers on a shared or busy machine are disturbed: the header prints the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

from fgad.core import training
from fgad.core.config import PRESETS, score_batch_size
from fgad.core.detector import Detector, resolve_device


# ------------------------------------------------------------------------------ timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int = 1) -> float:
    """Seconds of ``repeat`` calls of ``fn``, device work included."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return time.perf_counter() - t0


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeat: int, tf32: bool = False) -> float:
    """Best FLOP/s of ``size``² matmuls in ``dtype`` (each 2·size³ FLOPs)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        torch.mm(a, b)  # warm-up (kernel selection)
        inner = 1 if device.type == "cpu" else 10
        best = min(timed(lambda: [torch.mm(a, b) for _ in range(inner)], device) / inner for _ in range(repeat))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return 2.0 * size**3 / best


def measure_peaks(device: torch.device, args: argparse.Namespace) -> dict[str, float]:
    """Dense matmul peaks of the precisions the device offers, in FLOP/s."""
    size = args.peak_size or (8192 if device.type == "cuda" else 1024)
    peaks = {"fp32": matmul_peak(device, torch.float32, size, args.peak_repeat)}
    if device.type == "cuda":
        peaks["tf32"] = matmul_peak(device, torch.float32, size, args.peak_repeat, tf32=True)
        peaks["bf16"] = matmul_peak(device, torch.bfloat16, size, args.peak_repeat)
    return peaks


def cpu_bf16_probe(det: Detector, device: torch.device, channels: int) -> dict[str, float]:
    """Seconds of one eager forward of a scoring batch's views, fp32 and under CPU bf16 autocast
    (the library enables bf16 on CUDA only; this shows whether a CPU would gain from it)."""
    cfg = det.config
    x = torch.randn(score_batch_size(cfg, device) * 4, channels, cfg.image_size, cfg.image_size)
    views = {n: x for n in det.tasks}
    if cfg.channels_last:
        views = {n: v.contiguous(memory_format=torch.channels_last) for n, v in views.items()}
    out = {}
    with torch.inference_mode():
        for name, ctx in (("fp32", lambda: torch.autocast("cpu", enabled=False)),
                          ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
            with ctx():
                det.net(views)  # warm-up
                out[f"{name}_s"] = min(timed(lambda: det.net(views), device) for _ in range(2))
    out["views"] = x.shape[0] * len(views)
    return out


# ------------------------------------------------------------------------------ FLOPs
def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops_per_view(det: Detector, cfg, device: torch.device, channels: int) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per view: one view of each task, fp32, train mode."""
    net = det.net
    views = {n: torch.zeros(2, channels, cfg.image_size, cfg.image_size, device=device) for n in det.tasks}
    n_views = 2 * len(views)
    with torch.no_grad():
        fwd = count_flops(lambda: net(views))
    was = net.training
    net.train()

    def fwd_bwd():
        out = net(views)
        sum(o.float().sum() for o in out.values()).backward()

    both = count_flops(fwd_bwd)
    net.zero_grad(set_to_none=True)
    net.train(was)
    return fwd / n_views, both / n_views


# ------------------------------------------------------------------------------ the measurements
def build(args: argparse.Namespace):
    overrides: dict[str, Any] = {"device": args.device, "tasks": tuple(args.tasks.split(",")),
                                 "image_size": args.image_size, "steps": max(1, args.steps + args.warmup)}
    for key, value in (("depth", args.depth), ("width", args.width), ("batch_size", args.batch),
                       ("score_batch_size", args.score_batch)):
        if value is not None:
            overrides[key] = value
    for flag in ("channels_last", "bf16", "compile"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    det = Detector(preset=args.preset, **overrides)
    cfg = det.config
    device = resolve_device(cfg.device)
    det.input_shape = (cfg.image_size, cfg.image_size, args.channels)
    det.build_network(args.channels, device=device)
    return det, cfg, device


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    det, cfg, device = build(args)
    peaks_before = {} if args.no_peak else measure_peaks(device, args)
    tasks = det.tasks
    views_per_image = sum(t.n_views for t in tasks.values())
    b = cfg.batch_size
    rng = np.random.default_rng(0)
    n_train = b * 4
    images = rng.integers(0, 256, (n_train, cfg.image_size, cfg.image_size, args.channels), dtype=np.uint8)
    from fgad.io.preprocess import to_tensor

    x = to_tensor(images, cfg.image_size, device)
    labels = {n: t.labels().to(device) for n, t in tasks.items()}

    # FLOPs first (fp32, eager, no compile): the count does not depend on dtype or layout.
    fwd_flops, train_flops = flops_per_view(det, cfg, device, args.channels)

    # Training: the loop's own step, on the device, with its sync pattern.
    net = det.net
    opt = training.make_optimizer(net, cfg)
    model = torch.compile(net) if cfg.compile else net
    net.train()
    total = args.warmup + args.steps
    pending: list[torch.Tensor] = []

    perm = training.epoch_permutation(cfg.seed, 0, n_train).to(device)  # as the loop: indices on the device
    spe = training.steps_per_epoch(n_train, b)

    def run_step(step: int) -> None:
        i = step % spe
        xb = x[perm[i * b : (i + 1) * b]]
        _, stats = training.train_step(model, opt, tasks, labels, xb, cfg, device, step, total)
        pending.append(stats)
        if (step + 1) % training.SYNC_EVERY == 0:
            torch.stack(pending).tolist()
            pending.clear()

    t_compile = timed(lambda: [run_step(s) for s in range(args.warmup)], device)
    t_train = timed(lambda: [run_step(s) for s in range(args.warmup, total)], device)
    if pending:
        torch.stack(pending).tolist()
    step_s = t_train / args.steps

    # The pretext transformations alone (training views of one batch).
    xb = x[:b]
    training.step_views(tasks, xb, cfg, 0)
    reps = max(3, args.steps)
    t_views = timed(lambda: [training.step_views(tasks, xb, cfg, s) for s in range(reps)], device) / reps

    # Scoring: the detector's own path, uint8 images in, per-task sums out.
    net.eval()  # with compile, Detector.score_tasks compiles the network once (the warm-up below)
    score_bs = score_batch_size(cfg, device)
    n_score = args.score_images or max(score_bs * 4, b)
    test_images = rng.integers(0, 256, (n_score, cfg.image_size, cfg.image_size, args.channels), dtype=np.uint8)
    det.score_tasks(test_images[:score_bs])  # warm-up
    t_score = min(timed(lambda: det.score_tasks(test_images), device) for _ in range(args.score_repeat))
    cpu_bf16 = cpu_bf16_probe(det, device, args.channels) if args.cpu_bf16_probe and device.type == "cpu" else None

    # The device's matmul peak, measured now: the best of a measurement before the workload (kept
    # in ``peaks_before``) and one after, so that a moment of interference lowers neither.
    peaks: dict[str, float] = {}
    if not args.no_peak:
        after = measure_peaks(device, args)
        peaks = {k: max(v, peaks_before.get(k, 0.0)) for k, v in after.items()}
    if device.type == "cuda" and cfg.bf16:
        precision = "bf16"
    elif device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        precision = "tf32"
    else:
        precision = "fp32"
    peak = peaks.get(precision)

    train_views_s = b * views_per_image / step_s
    score_images_s = n_score / t_score
    score_views_s = score_images_s * views_per_image
    achieved_train = train_flops * train_views_s
    achieved_score = fwd_flops * score_views_s
    return {
        "network": f"WRN-{cfg.depth}-{cfg.width}", "depth": cfg.depth, "width": cfg.width,
        "image": [cfg.image_size, cfg.image_size, args.channels], "tasks": list(cfg.tasks),
        "views_per_image": views_per_image, "batch_images": b, "batch_views": b * views_per_image,
        "score_batch_images": score_bs, "score_images": n_score,
        "device": str(device), "device_name": _device_name(device), "precision": precision,
        "channels_last": cfg.channels_last, "bf16": cfg.bf16, "compile": cfg.compile,
        "threads": torch.get_num_threads(), "steps_timed": args.steps, "warmup_steps": args.warmup,
        "warmup_s": t_compile,
        "train_step_s": step_s, "train_views_per_s": train_views_s, "train_images_per_s": b / step_s,
        "views_s_per_batch": t_views, "views_share_of_step": t_views / step_s,
        "views_transformed_per_s": b * views_per_image / t_views,
        "score_images_per_s": score_images_s, "score_views_per_s": score_views_s,
        "flops_per_view_forward": fwd_flops, "flops_per_view_train": train_flops,
        "achieved_train_flops_per_s": achieved_train, "achieved_score_flops_per_s": achieved_score,
        "peak_flops_per_s": peaks, "peak_used": precision if peak else None,
        "utilisation_train": achieved_train / peak if peak else None,
        "utilisation_score": achieved_score / peak if peak else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "cpu_bf16_probe": cpu_bf16,
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------ output
def si(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def table(r: dict[str, Any]) -> str:
    flags = [r["precision"], "channels-last" if r["channels_last"] else "NCHW", "compiled" if r["compile"] else "eager"]
    head = (f"{r['network']}, {'×'.join(map(str, r['image']))}, tasks {'+'.join(r['tasks'])} "
            f"({r['views_per_image']} views/image), {r['device']} ({r['device_name']}, {r['threads']} threads), "
            f"{', '.join(flags)}")
    load = r.get("load_average")
    rows = [
        ("batch", f"{r['batch_images']} images = {r['batch_views']} views per step"),
        ("train step", f"{r['train_step_s'] * 1e3:.1f} ms (mean of {r['steps_timed']} after "
                       f"{r['warmup_steps']} warm-up)"),
        ("train throughput", f"{r['train_views_per_s']:.0f} views/s = {r['train_images_per_s']:.1f} images/s"),
        ("pretext views of a batch", f"{r['views_s_per_batch'] * 1e3:.2f} ms = {r['views_share_of_step']:.1%} "
                                     f"of a step ({si(r['views_transformed_per_s'], 'views/s')})"),
        ("scoring throughput", f"{r['score_images_per_s']:.1f} images/s = {r['score_views_per_s']:.0f} views/s "
                               f"(batches of {r['score_batch_images']})"),
        ("FLOPs per view", f"{si(r['flops_per_view_forward'], 'FLOP')} forward, "
                           f"{si(r['flops_per_view_train'], 'FLOP')} forward+backward"),
        ("achieved", f"train {si(r['achieved_train_flops_per_s'], 'FLOP/s')}, "
                     f"scoring {si(r['achieved_score_flops_per_s'], 'FLOP/s')}"),
        ("matmul peak (measured)", ", ".join(f"{k} {si(v, 'FLOP/s')}" for k, v in r["peak_flops_per_s"].items())
         or "not measured"),
        (f"utilisation vs {r['peak_used'] or '-'} peak",
         "-" if r["utilisation_train"] is None else
         f"train {r['utilisation_train']:.1%}, scoring {r['utilisation_score']:.1%}"),
    ]
    probe = r.get("cpu_bf16_probe")
    if probe:
        rows.append((
            "bf16 autocast on this CPU",
            f"forward of {probe['views']} views: fp32 {probe['fp32_s'] * 1e3:.0f} ms, "
            f"bf16 {probe['bf16_s'] * 1e3:.0f} ms ({probe['bf16_s'] / probe['fp32_s']:.1f}× "
            "the fp32 time)",
        ))
    width = max(len(k) for k, _ in rows)
    lines = [head]
    if load:
        lines.append(f"(load average {load[0]:.2f} on {r['cpu_count']} CPUs while measuring)")
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="network and batch of this preset (default paper: WRN-16-4, batch 32); "
                        "the options below override it")
    p.add_argument("--depth", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch", type=int, help="source images per training step (preset's batch_size)")
    p.add_argument("--score-batch", type=int, help="source images per scoring batch (preset's score_batch_size)")
    p.add_argument("--score-images", type=int, help="test images scored (default: 4 scoring batches)")
    p.add_argument("--tasks", default="geometric,jigsaw")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="(default: the preset's)")
    p.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, help="bf16 autocast, CUDA only (default: the preset's)"
    )
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, help="torch.compile the network (default: the preset's)"
    )
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    p.add_argument("--steps", type=int, default=20, help="timed training steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (default 3)")
    p.add_argument("--score-repeat", type=int, default=2, help="scoring passes; the best is kept (default 2)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--peak-size", type=int, help="matmul side for the peak (default 8192 on CUDA, 1024 on CPU)")
    p.add_argument("--peak-repeat", type=int, default=10, help="matmuls timed per peak measurement; the best counts")
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak")
    p.add_argument("--cpu-bf16-probe", action="store_true",
                   help="on a CPU, also time a forward pass under bf16 autocast against fp32")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        print("throughput.py: error: --steps must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    res = measure(args)
    print(table(res))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1, default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v))
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
