import ast
import json
from pathlib import Path

import numpy as np
import pytest

import fgad.data
from fgad.data import ImageDataset, default_data_root, list_datasets, load_dataset, one_vs_all
from fgad.data.registry import DATASETS
from fgad.errors import ConfigError, InputError

DATA_PKG = Path(fgad.data.__file__).parent


def _ds(**kw):
    base = dict(
        name="toy",
        x_train=np.zeros((6, 4, 4), np.uint8),
        y_train=np.array([0, 0, 1, 1, 2, 2]),
        x_test=np.zeros((3, 4, 4), np.uint8),
        y_test=np.array([0, 1, 2]),
        class_names=["a", "b", "c"],
    )
    base.update(kw)
    return ImageDataset(**base)


def test_list_datasets():
    names = list_datasets()
    assert names == sorted(names)
    assert set(names) == {
        "mnist", "fashion-mnist", "cifar10", "cifar100", "cub200", "fonts", "antispoof", "folder", "npz"
    }


def test_unknown_dataset_lists_known():
    with pytest.raises(ConfigError, match=r"unknown dataset 'imagenet'; known: antispoof, cifar10, .*npz"):
        load_dataset("imagenet")


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match=r"unknown option 'colour' for dataset 'cifar100'; its options: labels"):
        load_dataset("cifar100", colour=True)
    with pytest.raises(ConfigError, match=r"'mnist'; its options: none"):
        load_dataset("mnist", size=32)


def test_download_refused_where_licence_forbids():
    with pytest.raises(ConfigError, match="cannot be downloaded"):
        load_dataset("antispoof", download=True)
    for name in ("mnist", "fashion-mnist", "cifar10", "cifar100", "cub200"):
        assert DATASETS[name].downloadable


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("FGAD_DATA_DIR", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("FGAD_DATA_DIR")
    assert default_data_root() == Path.home() / ".cache" / "fgad" / "data"


def test_one_vs_all_by_index_and_name():
    ds = _ds()
    x, xt, y = one_vs_all(ds, 1)
    assert len(x) == 2 and len(xt) == 3
    assert y.dtype == np.int64 and y.tolist() == [1, 0, 1]
    x2, _, y2 = one_vs_all(ds, "b")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert one_vs_all(ds, np.int64(2))[2].tolist() == [1, 1, 0]


@pytest.mark.parametrize("bad", [3, -1, "z", True, 1.0])
def test_one_vs_all_unknown_class(bad):
    with pytest.raises(ConfigError):
        one_vs_all(_ds(), bad)


def test_one_vs_all_class_without_training_images():
    with pytest.raises(InputError, match="no training images"):
        one_vs_all(_ds(y_train=np.array([0, 0, 0, 1, 1, 1])), "c")


def test_image_dataset_validates():
    ds = _ds(y_train=np.array([0, 0, 1, 1, 2, 2], dtype=np.int32))
    assert ds.y_train.dtype == np.int64
    with pytest.raises(InputError, match="uint8"):
        _ds(x_train=np.zeros((6, 4, 4), np.float32))
    with pytest.raises(InputError, match="6 images"):
        _ds(y_train=np.array([0, 1]))
    with pytest.raises(InputError, match="outside"):
        _ds(y_test=np.array([0, 1, 3]))
    with pytest.raises(InputError, match="train images are"):
        _ds(x_test=np.zeros((3, 5, 5), np.uint8))
    assert "train=(6, 4, 4)" in repr(ds)


def test_info_records_dataset_and_options(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 3, 3), np.uint8), y_train=[0, 1],
             x_test=np.zeros((1, 3, 3), np.uint8), y_test=[1])  # fmt: skip
    ds = load_dataset("npz", tmp_path)
    assert ds.info["dataset"] == "npz" and ds.info["options"] == {"file": None}
    json.dumps(ds.info)


def test_room_imports_only_allowed_modules():
    """The data room imports neither torch nor any fgad module but errors, io.imageio, io.fileio."""
    allowed_fgad = {"errors", "io.imageio", "io.fileio"}
    for path in DATA_PKG.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
                assert not any(m.split(".")[0] in ("torch", "torchvision", "fgad") for m in mods), (path, mods)
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                assert mod.split(".")[0] not in ("torch", "torchvision"), (path, mod)
                if node.level == 2:  # from ..x import
                    assert mod in allowed_fgad, (path, mod)
                assert node.level in (0, 1, 2), (path, mod)
                assert not mod.startswith("fgad"), (path, mod)
