import tarfile

import numpy as np
import pytest

from fgad.data import load_dataset, one_vs_all
from fgad.data.cifar100 import COARSE_NAMES, FINE_NAMES
from fgad.errors import ConfigError, DatasetNotFoundError, InputError


def test_cifar10_binary(tmp_path, make_cifar10):
    xtr, ytr, xte, yte = make_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert np.array_equal(ds.x_train, xtr), "R, G, B planes must land in the last axis"
    assert np.array_equal(ds.y_train, ytr) and ds.y_train.dtype == np.int64
    assert np.array_equal(ds.x_test, xte) and np.array_equal(ds.y_test, yte)
    assert ds.class_names[0] == "airplane" and len(ds.class_names) == 10
    x, _, y = one_vs_all(ds, "bird")
    assert len(x) == int((ytr == 2).sum()) and y.tolist() == [int(v != 2) for v in yte]


def test_cifar10_root_is_batches_folder_and_names_builtin(tmp_path, make_cifar10):
    make_cifar10(tmp_path, meta=False)
    ds = load_dataset("cifar10", tmp_path / "cifar-10-batches-bin")
    assert ds.class_names[-1] == "truck"


def test_cifar10_truncated(tmp_path, make_cifar10):
    make_cifar10(tmp_path)
    p = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(InputError, match="data_batch_3.bin: corrupt or truncated.*3073-byte records"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_missing_files_named(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", tmp_path)
    msg = str(err.value)
    assert "cifar-10-batches-bin/data_batch_1.bin" in msg and "test_batch.bin" in msg
    assert "cifar-10-binary.tar.gz" in msg and "--download" in msg


def test_cifar10_from_archive(tmp_path, make_cifar10):
    src = tmp_path / "src"
    xtr, *_ = make_cifar10(src)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tf:
        tf.add(src / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    ds = load_dataset("cifar10", root)
    assert np.array_equal(ds.x_train, xtr)
    assert ds.info["extracted_from"].endswith("cifar-10-binary.tar.gz")
    assert (root / "cifar-10-batches-bin" / "test_batch.bin").is_file()


def test_cifar100_coarse_default_and_fine(tmp_path, make_cifar100):
    xtr, ctr, ftr, xte, cte, fte = make_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.class_names == COARSE_NAMES and len(ds.class_names) == 20
    assert np.array_equal(ds.y_train, ctr) and np.array_equal(ds.y_test, cte)
    assert np.array_equal(ds.x_train, xtr) and ds.x_test.shape == (4, 32, 32, 3)
    fine = load_dataset("cifar100", tmp_path, labels="fine")
    assert len(fine.class_names) == 100 and fine.class_names == FINE_NAMES
    assert np.array_equal(fine.y_train, ftr) and np.array_equal(fine.y_test, fte)
    assert fine.info["labels"] == "fine"


def test_cifar100_names_file_used(tmp_path, make_cifar100):
    make_cifar100(tmp_path)
    names = [f"super{i}" for i in range(20)]
    (tmp_path / "cifar-100-binary" / "coarse_label_names.txt").write_text("\n".join(names) + "\n")
    assert load_dataset("cifar100", tmp_path).class_names == names


def test_cifar100_bad_labels_option(tmp_path, make_cifar100):
    make_cifar100(tmp_path)
    with pytest.raises(ConfigError, match="labels must be one of 'coarse', 'fine'"):
        load_dataset("cifar100", tmp_path, labels="superclass")


def test_cifar100_label_out_of_range(tmp_path, make_cifar100):
    make_cifar100(tmp_path)
    p = tmp_path / "cifar-100-binary" / "test.bin"
    raw = bytearray(p.read_bytes())
    raw[3074] = 25  # coarse label of record 1
    p.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="record 1 has label 25"):
        load_dataset("cifar100", tmp_path)


def _serve_archive(tmp_path, make_cifar10, monkeypatch, md5=None):
    import hashlib

    from fgad.data import download

    src = tmp_path / "src"
    xtr, *_ = make_cifar10(src)
    arch = tmp_path / "server" / "cifar-10-binary.tar.gz"
    arch.parent.mkdir()
    with tarfile.open(arch, "w:gz") as tf:
        tf.add(src / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    md5 = md5 or hashlib.md5(arch.read_bytes()).hexdigest()
    monkeypatch.setitem(download.RESOURCES, "cifar10", [download.RemoteFile((arch.as_uri(),), arch.name, md5=md5)])
    return xtr


def test_cifar10_download(tmp_path, make_cifar10, monkeypatch):
    xtr = _serve_archive(tmp_path, make_cifar10, monkeypatch)
    ds = load_dataset("cifar10", tmp_path / "data", download=True)
    assert np.array_equal(ds.x_train, xtr)
    assert (tmp_path / "data" / "cifar-10-binary.tar.gz").is_file()


def test_cifar10_download_checksum_mismatch(tmp_path, make_cifar10, monkeypatch):
    from fgad.data.download import DownloadError

    _serve_archive(tmp_path, make_cifar10, monkeypatch, md5="0" * 32)
    with pytest.raises(DownloadError, match="MD5 is"):
        load_dataset("cifar10", tmp_path / "data", download=True)
    assert not any((tmp_path / "data").iterdir()), "a download that fails its checksum is removed"
