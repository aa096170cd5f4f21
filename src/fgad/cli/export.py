"""``fgad export MODEL --format onnx --out model.onnx``: a saved model as an ONNX graph.

Writes ``model.onnx`` and its sidecar ``model.onnx.json`` (preprocessing, tasks, fusion, the
threshold if calibrated); see :mod:`fgad.tools.export`. Needs the ``onnx`` package
(``pip install 'fgad[export]'``); without it the command says so in one line and exits with 2.
An earlier export at ``--out`` (the sidecar says so) is replaced only with ``--overwrite``; any
other file there is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import add_overwrite_arg, check_output_file, is_fgad_json

FORMATS = ("onnx",)


def _is_earlier_export(path: Path) -> bool:
    """An ONNX file fgad exported: its sidecar ``PATH.json`` says so."""
    from ..tools.export import sidecar_path

    return is_fgad_json(Path(sidecar_path(path)), "fgad-onnx")


def run(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise InputError(f"unknown --format {args.format!r}; known: {', '.join(FORMATS)}")
    from ..tools.export import OPSET, require

    require("onnx")  # before loading the model: say what to install first
    if args.verify:
        require("onnxruntime")
    if args.opset is not None:
        try:
            opset = int(args.opset)
        except ValueError:
            raise InputError(f"--opset expects an integer >= 17, got {args.opset!r}") from None
    else:
        opset = OPSET
    from ..core.detector import Detector
    from ..tools.export import export_onnx, sidecar_path

    check_output_file(args.out, "an ONNX export of fgad", _is_earlier_export, overwrite=args.overwrite)
    check_output_file(sidecar_path(args.out), "the sidecar of an fgad export",
                      lambda p: is_fgad_json(p, "fgad-onnx"), overwrite=args.overwrite)

    det = Detector.load(args.model, device="cpu")
    meta = export_onnx(det, args.out, opset=opset)
    if args.verify:
        import numpy as np

        from ..tools.export import verify_onnx

        h, w, c = det.input_shape
        x = np.random.default_rng(0).integers(0, 256, (4, h, w, c), dtype=np.uint8)
        err = verify_onnx(det, args.out, x)
        print(f"verified with onnxruntime on 4 random images: largest error {err:.1e} (anomaly score and "
              f"components, relative to max(|score|, 1))")
    _, c, s, _ = meta["input"]["shape"]
    print(f"wrote {args.out} (opset {opset}; input: preprocessed images N×{c}×{s}×{s}, views built inside "
          f"the graph) and its sidecar {sidecar_path(args.out)}")
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("export", help="export a trained model (ONNX graph + JSON sidecar)",
                       description="Export a model folder as ONNX: the graph takes preprocessed images "
                       "N×C×S×S in [-1, 1], builds the pretext views inside and outputs anomaly_score "
                       "(higher = more anomalous), normality and each component's normality (the model's own "
                       "score); the sidecar OUT.json describes the preprocessing.")
    p.add_argument("model", help="model folder written by fgad train")
    p.add_argument("--format", default="onnx", help="onnx (the only format)")
    p.add_argument("--out", required=True, help="file to write, e.g. model.onnx (sidecar: model.onnx.json)")
    p.add_argument("--opset", help="ONNX opset, >= 17 (default 18)")
    add_overwrite_arg(p, "an ONNX file and sidecar")
    p.add_argument("--verify", action="store_true",
                   help="compare onnxruntime's scores with PyTorch's on random images (needs onnxruntime)")
    p.set_defaults(func=run)
