"""The torchrun entry: data-parallel training of one detector on several processes.

    torchrun --nproc_per_node=4 -m fgad.cli.distributed normal.npz --out model --preset paper

The options are those of ``fgad train``; rank 0 writes the checkpoints and the model (see
:mod:`fgad.integrations.distributed`). From Python on one machine, use
:func:`fgad.integrations.distributed.train_ddp` instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

PROG = "python -m fgad.cli.distributed"


def build_parser() -> argparse.ArgumentParser:
    from .train import add_train_options

    p = argparse.ArgumentParser(prog=PROG, description="Data-parallel training of an fgad detector; run it with "
                                "torchrun, e.g. torchrun --nproc_per_node=4 -m fgad.cli.distributed IMAGES --out MODEL")
    add_train_options(p)  # as fgad train; rank 0 writes the model and the checkpoints
    p.add_argument("--no-sync-bn", action="store_true", help="batch-norm statistics per rank, not global")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import torch
    import torch.distributed as dist

    from ..errors import FgadError
    from ..integrations.distributed import process_group_backend, rank_device, run_rank
    from .common import check_output_folder, is_fgad_model
    from .train import build_detector, read_training_images, trained_on

    args = build_parser().parse_args(argv)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        print(f"{PROG}: error: start it with torchrun (e.g. torchrun --nproc_per_node=2 -m fgad.cli.distributed "
              "...), or call fgad.integrations.distributed.train_ddp", file=sys.stderr)
        return 2
    try:
        det = build_detector(args)
        check_output_folder(args.out, "an fgad model", is_fgad_model, overwrite=args.overwrite)
        images = read_training_images(args, det, report=os.environ["RANK"] == "0")  # every rank reads them
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = rank_device(det.config.device, local_rank)
    except FgadError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    dist.init_process_group(process_group_backend(device))
    try:
        run_rank(det, images, args.out, args.checkpoint_dir, not args.quiet, not args.no_sync_bn)
        if dist.get_rank() == 0:
            print(f"{trained_on(det, len(images))} with {dist.get_world_size()} processes; "
                  f"model written to {args.out}", file=sys.stderr)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
