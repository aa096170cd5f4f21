"""``fgad report RESULTS``: tables (Markdown, CSV) and ROC plots from benchmark records.

    fgad report runs/                 # writes runs/report/
    fgad report runs/ --out tables/   # a new or empty folder, or an earlier report (rebuilt)

A report is derived from the records, so an earlier report folder is rebuilt in place; a folder
holding anything else is refused.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from typing import Any

from .common import check_output_folder, only_entries

# What build_report writes (see fgad.report.build_report).
REPORT_ENTRY = re.compile(r"(report\.md|(table\d+|fusion)\.(md|csv)|per_class|roc)")


def _build(results: str, out: str | None = None, **kw: Any):
    from ..report import build_report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = build_report(results, out, **kw)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return res


def print_report(results: str) -> None:
    """Build the report of a benchmark results folder and print it; without records, say so."""
    from ..errors import InputError

    try:
        res = _build(results)
    except InputError as exc:
        print(f"no report: {exc}", file=sys.stderr)
        return
    print(res.markdown)
    print(f"report written to {res.out_dir}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_output_folder(args.out, "an fgad report", only_entries(lambda n: bool(REPORT_ENTRY.fullmatch(n))),
                            resume=True)
    res = _build(args.results, args.out, max_roc_classes=args.max_roc_classes)
    print(res.markdown)
    print(f"{res.n_records} record(s); report written to {res.out_dir}", file=sys.stderr)
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("report", help="tables (Markdown, CSV) and ROC plots from benchmark records")
    p.add_argument("results", help="results folder of fgad benchmark")
    p.add_argument("--out", help="report folder (default RESULTS/report); an earlier report there is rebuilt")
    p.add_argument("--max-roc-classes", type=int, default=20, help="ROC plots per dataset (default 20)")
    p.set_defaults(func=run)
