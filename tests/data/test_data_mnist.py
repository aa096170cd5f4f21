import gzip
import hashlib
import os

import numpy as np
import pytest

from fgad.data import download, load_dataset, one_vs_all
from fgad.data.mnist import read_idx
from fgad.errors import DatasetNotFoundError, InputError


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, make_mnist, gz):
    xtr, ytr, xte, yte = make_mnist(tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.name == "mnist"
    assert ds.x_train.shape == (20, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert np.array_equal(ds.x_train, xtr) and np.array_equal(ds.y_test, yte)
    assert ds.class_names == [str(i) for i in range(10)]
    x, xt, y = one_vs_all(ds, 3)
    assert len(x) == 2 and len(xt) == 10 and y.sum() == 9


def test_fashion_mnist_names_and_default_root(make_mnist, monkeypatch, tmp_path):
    monkeypatch.setenv("FGAD_DATA_DIR", str(tmp_path))
    make_mnist(tmp_path / "fashion-mnist")
    ds = load_dataset("fashion-mnist")
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert one_vs_all(ds, "Trouser")[0].shape == (2, 28, 28)


def test_root_may_be_parent_of_name(tmp_path, make_mnist):
    make_mnist(tmp_path / "mnist")
    assert load_dataset("mnist", tmp_path).x_test.shape == (10, 28, 28)


def test_missing_files_named(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", tmp_path)
    msg = str(err.value)
    for f in (
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
    ):
        assert f in msg
    assert f"in {tmp_path} " in msg and "--download" in msg and "\n" not in msg


def test_bad_magic(tmp_path, idx_writer):
    p = tmp_path / "x"
    p.write_bytes(b"\x01\x02\x08\x03" + b"\0" * 20)
    with pytest.raises(InputError, match="bad magic"):
        read_idx(p)
    idx_writer(p, np.zeros((2, 3), np.uint8))
    with pytest.raises(InputError, match="2 dimensions, expected 3"):
        read_idx(p, 3)
    p.write_bytes(b"\0\0\x0d\x01" + b"\0\0\0\x01" + b"\0" * 4)  # float32 type
    with pytest.raises(InputError, match="not unsigned byte"):
        read_idx(p)


def test_truncated_and_corrupt(tmp_path, make_mnist):
    make_mnist(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(InputError, match=r"truncated: header says 20×28×28 = 15680 bytes of data, file has 15675"):
        load_dataset("mnist", tmp_path)
    gz = tmp_path / "g"
    gz.write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x05abcde")[:-10])
    with pytest.raises(InputError, match="corrupt or truncated gzip"):
        read_idx(gz)


def test_label_count_mismatch(tmp_path, make_mnist, idx_writer):
    make_mnist(tmp_path, gz=False)
    idx_writer(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8))
    with pytest.raises(InputError, match="10 test images but 9 test labels"):
        load_dataset("mnist", tmp_path)


def test_download_verifies_and_loads(tmp_path, make_mnist, monkeypatch):
    """download=True fetches each file (here from file:// URLs), checks its MD5, then loads."""
    src = tmp_path / "server"
    make_mnist(src, gz=True)
    remotes = []
    for f in sorted(os.listdir(src)):
        md5 = hashlib.md5((src / f).read_bytes()).hexdigest()
        remotes.append(download.RemoteFile(((src / f).as_uri(),), f, md5=md5))
    monkeypatch.setitem(download.RESOURCES, "mnist", remotes)
    dest = tmp_path / "data"
    ds = load_dataset("mnist", dest, download=True)
    assert ds.x_train.shape == (20, 28, 28)
    assert sorted(os.listdir(dest)) == sorted(os.listdir(src))
