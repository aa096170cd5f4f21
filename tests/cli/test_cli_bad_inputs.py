"""Every command, every bad input: one ``fgad: error:`` line, exit status 2, no traceback, no files.

One table: each command (train, score, calibrate, gallery, explain, diagnose, export, benchmark
on an ``.npz``, report, list) against the bad inputs that apply to it: a missing path, an empty
folder, a truncated JPEG, a decompression-bomb PNG, a file that is not an image, a zero-byte file,
object, float, NaN, empty and truncated ``.npz`` files, a directory where a file is expected, a
damaged model, an unwritable output (a path under a regular file: it fails for root too) and a
malformed command line. Each run must print exactly one line on stderr, starting
``fgad: error:``, exit with status 2, and leave no new file anywhere.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgad.cli import main
from fgad.errors import ImageReadError
from fgad.io.imageio import read_image, read_images

torch.set_num_threads(1)
FAST = ["--preset", "tiny", "--quiet", "--set", "steps=2", "--set", "image_size=16", "--device", "cpu"]


# ------------------------------------------------------------------------------ bad files
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A PNG header claiming side×side 1-bit grey pixels, with a tiny IDAT: a few hundred bytes
    (a real bomb of this size is 0.9 MB and decodes to 900 MB)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    return path


def _npz(path: Path, x: np.ndarray) -> Path:
    y = np.arange(len(x)) % 2
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    return path


def _folder_with(root: Path, name: str, file: str, data: bytes) -> Path:
    (root / name).mkdir()
    (root / name / file).write_bytes(data)
    return root / name


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    return _npz(tmp_path_factory.mktemp("data") / "d.npz", rng.integers(0, 256, (8, 16, 16), dtype=np.uint8))


@pytest.fixture(scope="module")
def model(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["train", str(data), "--out", str(out), *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def bad(data, tmp_path_factory) -> dict[str, Path]:
    """The bad inputs, by name (built once; each test checks that none is changed)."""
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(1)
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(jpeg, "JPEG")
    (root / "empty").mkdir()
    (root / "folder.npz").mkdir()  # a directory where a file is expected
    (root / "zero.npz").write_bytes(b"")
    (root / "truncated.npz").write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    (root / "zero.png").write_bytes(b"")
    (root / "notes.png").write_text("not an image\n")
    (root / "regular_file").write_text("a file, not a folder\n")
    (root / "trunc.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    damaged = root / "damaged_model"  # a model folder whose weights are cut short
    damaged.mkdir()
    return {
        "missing": root / "no_such_path",
        "empty_folder": root / "empty",
        "dir_as_npz": root / "folder.npz",
        "regular_file": root / "regular_file",
        "zero_npz": root / "zero.npz",
        "truncated_npz": root / "truncated.npz",
        "object_npz": _npz(root / "object.npz", np.array([np.zeros(3), "a", None, 1, 2, 3, 4, 5], dtype=object)),
        "float_npz": _npz(root / "float.npz", rng.random((8, 16, 16))),
        "nan_npz": _npz(root / "nan.npz", np.full((8, 16, 16), np.nan)),
        "truncated_jpeg": root / "trunc.jpg",
        "bomb_png": bomb_png(root / "bomb.png"),
        "not_an_image": root / "notes.png",
        "zero_byte_png": root / "zero.png",
        "folder_truncated_jpeg": _folder_with(root, "f_trunc", "t.jpg", (root / "trunc.jpg").read_bytes()),
        "folder_bomb_png": _folder_with(root, "f_bomb", "b.png", (root / "bomb.png").read_bytes()),
        "folder_not_an_image": _folder_with(root, "f_text", "n.png", b"not an image\n"),
        "folder_zero_byte": _folder_with(root, "f_zero", "z.png", b""),
        "damaged_model": damaged,
    }


@pytest.fixture(scope="module")
def damaged_model(model, bad) -> Path:
    shutil.copy(model / "config.json", bad["damaged_model"] / "config.json")
    weights = (model / "model.safetensors").read_bytes()
    (bad["damaged_model"] / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    return bad["damaged_model"]


# ------------------------------------------------------------------------------ the table
# The inputs every command reading images must refuse (the name of the bad file must be in the
# message where there is one file to name).
IMAGE_INPUTS = {
    "missing": "no_such_path", "empty_folder": "empty", "dir_as_npz": "folder.npz", "zero_npz": "zero.npz",
    "truncated_npz": "truncated.npz", "object_npz": "object.npz", "float_npz": "float", "nan_npz": "NaN",
    "folder_truncated_jpeg": "t.jpg", "folder_bomb_png": "b.png", "folder_not_an_image": "n.png",
    "folder_zero_byte": "z.png",
}
SINGLE_IMAGES = {"missing": "no_such_path", "truncated_jpeg": "trunc.jpg", "bomb_png": "bomb.png",
                 "not_an_image": "notes.png", "zero_byte_png": "zero.png", "dir_as_npz": "folder.npz",
                 "zero_npz": "zero.npz", "truncated_npz": "truncated.npz", "object_npz": "object.npz",
                 "float_npz": "float", "nan_npz": "float"}
DATASET_INPUTS = {"missing": "no_such_path", "empty_folder": "empty", "dir_as_npz": "folder.npz",
                  "zero_npz": "zero.npz", "truncated_npz": "truncated.npz", "object_npz": "object arrays",
                  "float_npz": "float", "nan_npz": "NaN"}
MODELS = {"missing": "no_such_path", "empty_folder": "empty", "regular_file": "regular_file",
          "damaged_model": "model.safetensors"}


def _commands():
    """(command, case, argv builder(paths) -> argv, expected text in the message)."""
    rows = []

    def add(command, cases, build):
        for case, needle in cases.items():
            rows.append(pytest.param(command, case, build, needle, id=f"{command}-{case}"))

    for cmd in ("train", "score", "calibrate", "gallery"):
        args = {
            "train": lambda p: ["train", str(p.input), "--out", str(p.out / "model"), *FAST],
            "score": lambda p: ["score", str(p.model), str(p.input), "--quiet", "--out", str(p.out / "s.csv")],
            "calibrate": lambda p: ["calibrate", str(p.model), str(p.input), "--quiet"],
            "gallery": lambda p: ["gallery", str(p.model), str(p.input), "--quiet", "--out", str(p.out / "g.html")],
        }[cmd]
        add(cmd, IMAGE_INPUTS, args)
    add("explain", SINGLE_IMAGES, lambda p: ["explain", str(p.model), str(p.input), "--out", str(p.out / "e.png")])
    add("diagnose", DATASET_INPUTS, lambda p: ["diagnose", str(p.input), "--normal-class", "0", "--tasks", "rotation",
                                               "--out", str(p.out / "diag"), *FAST])
    add("benchmark", DATASET_INPUTS, lambda p: ["benchmark", "--dataset", "npz", "--data-root", str(p.input),
                                                "--method", "mean-distance", "--classes", "0", "--quiet",
                                                "--out", str(p.out / "runs")])
    add("report", {"missing": "no_such_path", "empty_folder": "empty", "regular_file": "regular_file"},
        lambda p: ["report", str(p.input), "--out", str(p.out / "report")])
    # A damaged or missing model, for every command that loads one.
    add("score", {f"model_{k}": v for k, v in MODELS.items()},
        lambda p: ["score", str(p.input), str(p.data), "--quiet", "--out", str(p.out / "s.csv")])
    add("calibrate", {f"model_{k}": v for k, v in MODELS.items()},
        lambda p: ["calibrate", str(p.input), str(p.data), "--quiet"])
    add("gallery", {f"model_{k}": v for k, v in MODELS.items()},
        lambda p: ["gallery", str(p.input), str(p.data), "--quiet", "--out", str(p.out / "g.html")])
    add("explain", {f"model_{k}": v for k, v in MODELS.items()},
        lambda p: ["explain", str(p.input), str(p.data), "--out", str(p.out / "e.png")])
    add("export", {f"model_{k}": v for k, v in MODELS.items()},
        lambda p: ["export", str(p.input), "--out", str(p.out / "m.onnx")])
    # A directory where a file is expected (a config file, an output file).
    add("train", {"config_is_a_folder": "empty"},
        lambda p: ["train", str(p.data), "--config", str(p.bad["empty_folder"]), "--out", str(p.out / "m"), *FAST])
    add("benchmark", {"config_is_a_folder": "empty"},
        lambda p: ["benchmark", "--dataset", "npz", "--data-root", str(p.data), "--config", str(p.bad["empty_folder"]),
                   "--out", str(p.out / "runs")])
    for cmd, build in {
        "score": lambda p, o: ["score", str(p.model), str(p.data), "--quiet", "--out", str(o)],
        "gallery": lambda p, o: ["gallery", str(p.model), str(p.data), "--quiet", "--out", str(o)],
        "explain": lambda p, o: ["explain", str(p.model), str(p.data), "--out", str(o)],
        "export": lambda p, o: ["export", str(p.model), "--out", str(o)],
    }.items():
        add(cmd, {"out_is_a_folder": "existing_folder"},
            lambda p, build=build: build(p, p.root / "existing_folder"))
    # An output that cannot be written: a path under a regular file fails for root too.
    unwritable = {
        "train": lambda p, o: ["train", str(p.data), "--out", str(o), *FAST],
        "score": lambda p, o: ["score", str(p.model), str(p.data), "--quiet", "--out", str(o)],
        "gallery": lambda p, o: ["gallery", str(p.model), str(p.data), "--quiet", "--out", str(o)],
        "explain": lambda p, o: ["explain", str(p.model), str(p.data), "--out", str(o)],
        "export": lambda p, o: ["export", str(p.model), "--out", str(o)],
        "diagnose": lambda p, o: ["diagnose", str(p.data), "--normal-class", "0", "--tasks", "rotation", "--out",
                                  str(o), *FAST],
        "benchmark": lambda p, o: ["benchmark", "--dataset", "npz", "--data-root", str(p.data), "--method",
                                   "mean-distance", "--classes", "0", "--quiet", "--out", str(o)],
        "report": lambda p, o: ["report", str(p.bad["empty_folder"]), "--out", str(o)],
    }
    # (calibrate writes into the model folder: there is no output path to make unwritable.)
    for cmd, build in unwritable.items():
        add(cmd, {"unwritable_output": "a_file"}, lambda p, build=build: build(p, p.root / "a_file" / "sub" / "x"))
    # A malformed command line is one line too.
    add("train", {"usage_missing_out": "--out"}, lambda p: ["train", str(p.data)])
    add("score", {"usage_bad_max_pixels": "--max-pixels"},
        lambda p: ["score", str(p.model), str(p.data), "--max-pixels", "lots"])
    add("list", {"usage_extra_argument": "unrecognized"}, lambda p: ["list", "extra"])
    add("bogus", {"usage_unknown_command": "invalid choice"}, lambda p: ["bogus"])
    return rows


class Paths:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _tree(*roots: Path) -> dict[str, bytes | None]:
    """Every path under ``roots``, with the bytes of each file (None for a folder)."""
    out = {}
    for root in roots:
        for p in [root, *root.rglob("*")] if root.exists() else []:
            out[str(p)] = None if p.is_dir() else p.read_bytes()
    return out


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("fgad: error: "), lines
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


@pytest.mark.parametrize("command, case, build, needle", _commands())
def test_bad_input_is_one_error_line_and_no_files(command, case, build, needle, data, model, bad, damaged_model,
                                                  tmp_path, capsys):
    root = tmp_path / "out"
    root.mkdir()
    (root / "a_file").write_text("a regular file\n")
    if case == "out_is_a_folder":
        (root / "existing_folder").mkdir()
    name = case.removeprefix("model_")
    # Outputs go into folders that do not exist yet: a failed command must not leave them behind.
    paths = Paths(data=data, model=model, bad=bad, root=root, out=root / "new" / "folder", input=bad.get(name))
    argv = build(paths)
    before = _tree(tmp_path, data.parent, model, bad["missing"].parent)
    capsys.readouterr()
    status = main(argv)
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert status == 2, (status, line)
    assert needle in line, line
    assert _tree(tmp_path, data.parent, model, bad["missing"].parent) == before  # nothing written or changed


# ------------------------------------------------------------------------------ skip, count, limits
def _good_png(path: Path, seed: int, side: int = 16) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)).save(path)
    return path


def test_skip_unreadable_skips_and_counts_every_kind_of_bad_file(model, bad, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    _good_png(folder / "a.png", 0)
    _good_png(folder / "b.png", 1)
    for name in ("truncated_jpeg", "bomb_png", "not_an_image", "zero_byte_png"):
        shutil.copy(bad[name], folder / f"bad_{bad[name].name}")
    csv = tmp_path / "scores.csv"
    assert main(["score", str(model), str(folder), "--skip-unreadable", "--quiet", "--out", str(csv)]) == 0
    assert "skipped 4 unreadable file(s)" in capsys.readouterr().err
    rows = csv.read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["a.png", "b.png"]


def test_max_pixels_sets_the_limit(model, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    _good_png(folder / "a.png", 0)  # 16x16 = 256 pixels
    capsys.readouterr()
    assert main(["score", str(model), str(folder), "--quiet", "--max-pixels", "255"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "a.png" in line and "16x16" in line and "--max-pixels" in line
    assert main(["score", str(model), str(folder), "--quiet", "--max-pixels", "256"]) == 0


@pytest.mark.parametrize("side", [10000, 30000], ids=["over-the-limit-warning", "over-twice-the-limit-error"])
def test_pillow_bomb_warning_and_error_are_both_unreadable_and_the_limit_does_not_leak(tmp_path, side):
    """Between Pillow's limit and twice it, Pillow only warns; past twice it, it raises. Both
    are unreadable here, with no warning shown, and Pillow's process setting is left as it was."""
    path = bomb_png(tmp_path / "bomb.png", side)
    limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageReadError, match="bomb.png.*more than the limit of 89478485"):
            read_image(path)
        with pytest.raises(ImageReadError, match="more than the limit of 1000"):
            read_image(path, max_pixels=1000)
        _, kept, skipped = read_images([_good_png(tmp_path / "ok.png", 0), path], skip_unreadable=True)
    assert [p.name for p in kept] == ["ok.png"] and [p.name for p in skipped] == ["bomb.png"]
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == limit


@pytest.mark.subprocess
def test_the_real_exit_status_and_stderr_of_the_fgad_process(model, bad, tmp_path):
    """Not main()'s return value: the process's, for a bomb PNG in a folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("FGAD_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-m", "fgad.cli", "score", str(model), str(bad["folder_bomb_png"]),
                           "--quiet", "--out", str(tmp_path / "s.csv")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 2
    assert "b.png" in one_error_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


def test_an_unexpected_exception_is_one_line_with_status_1(monkeypatch, capsys):
    """A bug is not a user error: status 1 and a line saying so, still no traceback."""
    from fgad.cli import list as list_command

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(list_command, "run", broken)
    monkeypatch.delenv("FGAD_TRACEBACK", raising=False)
    assert main(["list"]) == 1
    line = capsys.readouterr().err.strip()
    assert line == ("fgad: error: internal error: RuntimeError: boom second line (a bug in fgad: please report "
                    "it; FGAD_TRACEBACK=1 shows the traceback)")
