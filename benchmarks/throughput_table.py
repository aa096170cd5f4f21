#!/usr/bin/env python
"""One Markdown table from the JSON files of ``benchmarks/throughput.py --json``, one row per file.

A file whose name ends in ``before.json`` is labelled "before", any other "after"::

    python benchmarks/throughput_table.py docs/perf/wrn16-4_1thread_*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("network, threads", "variant", "train step (source images)", "training views/s",
           "pretext views (share of a step)", "scoring images/s (batch)", "fp32 matmul peak",
           "utilisation train / scoring", "load average")


def row(path: Path) -> list[str]:
    r = json.loads(path.read_text())
    variant = ("before" if path.name.endswith("before.json") else "after") + ": " + \
        ("channels-last" if r["channels_last"] else "NCHW") + (", compiled" if r["compile"] else ", eager")
    peak = r["peak_flops_per_s"].get(r["peak_used"] or "fp32")
    util = "-" if r["utilisation_train"] is None else f"{r['utilisation_train']:.0%} / {r['utilisation_score']:.0%}"
    load = r.get("load_average")
    return [f"{r['network']}, {r['threads']}", variant, f"{r['train_step_s'] * 1e3:.0f} ms ({r['batch_images']})",
            f"{r['train_views_per_s']:.0f}", f"{r['views_s_per_batch'] * 1e3:.1f} ms ({r['views_share_of_step']:.1%})",
            f"{r['score_images_per_s']:.2f} ({r['score_batch_images']})",
            "-" if peak is None else f"{peak / 1e9:.1f} GFLOP/s", util, "-" if not load else f"{load[0]:.2f}"]


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("throughput_table.py: error: give one or more JSON files of throughput.py --json", file=sys.stderr)
        return 2
    try:
        rows = [row(p) for p in paths]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"throughput_table.py: error: {exc}", file=sys.stderr)
        return 2
    print("| " + " | ".join(COLUMNS) + " |")
    print("| --- | --- |" + " ---: |" * (len(COLUMNS) - 2))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
