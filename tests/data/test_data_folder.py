import json

import numpy as np
import pytest

from fgad.data import load_dataset, one_vs_all
from fgad.errors import ConfigError, DatasetNotFoundError, ImageReadError, InputError


def test_normal_anomalous(tmp_path, save_img, rand_img):
    for i in range(10):
        save_img(tmp_path / "normal" / f"n{i}.png", rand_img(8, 8))
    for i in range(3):
        save_img(tmp_path / "anomalous" / f"a{i}.png", rand_img(8, 8))
    ds = load_dataset("folder", tmp_path)
    assert ds.class_names == ["normal", "anomalous"] and ds.info["layout"] == "normal/anomalous"
    assert ds.x_train.shape == (7, 8, 8, 3) and (ds.y_train == 0).all()
    assert ds.y_test.tolist().count(0) == 3 and ds.y_test.tolist().count(1) == 3
    assert all(i.startswith(("normal/", "anomalous/")) for i in ds.ids_test)
    json.dumps(ds.info)
    x, xt, y = one_vs_all(ds, "normal")
    assert len(x) == 7 and y.sum() == 3


def test_normal_only(tmp_path, save_img, rand_img):
    for i in range(4):
        save_img(tmp_path / "normal" / f"n{i}.png", rand_img(8, 8, 1))
    ds = load_dataset("folder", tmp_path, test_fraction=0.5)
    assert ds.x_train.shape == (2, 8, 8) and ds.x_test.shape == (2, 8, 8)


def test_class_folders_seeded_per_class(tmp_path, save_img, rand_img):
    for cls, n in (("cats", 5), ("dogs", 10), ("owls", 2)):
        for i in range(n):
            save_img(tmp_path / cls / "sub" / f"{i}.png", rand_img(6, 6))
    (tmp_path / ".hidden").mkdir()
    ds = load_dataset("folder", tmp_path, test_fraction=0.4, split_seed=3)
    assert ds.class_names == ["cats", "dogs", "owls"] and ds.info["layout"] == "class folders"
    assert np.bincount(ds.y_test).tolist() == [2, 4, 1] and np.bincount(ds.y_train).tolist() == [3, 6, 1]
    assert load_dataset("folder", tmp_path, test_fraction=0.4, split_seed=3).ids_test == ds.ids_test


def test_mixed_sizes_error_names_file_and_size_option(tmp_path, save_img, rand_img):
    save_img(tmp_path / "normal" / "a.png", rand_img(8, 8))
    save_img(tmp_path / "normal" / "b.png", rand_img(9, 8))
    save_img(tmp_path / "normal" / "c.png", rand_img(8, 8, 1))
    with pytest.raises(InputError, match=r"b\.png: image is 8x9"):
        load_dataset("folder", tmp_path)
    ds = load_dataset("folder", tmp_path, size=5)
    assert ds.x_train.shape[1:] == (5, 5, 3), "grey files join colour ones as RGB"
    assert load_dataset("folder", tmp_path, size=(4, 6)).x_test.shape[1:] == (4, 6, 3)


def test_corrupt_image_error_or_skip(tmp_path, save_img, rand_img):
    for i in range(5):
        save_img(tmp_path / "normal" / f"n{i}.png", rand_img(8, 8))
    (tmp_path / "normal" / "zz_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ImageReadError, match="zz_broken.jpg"):
        load_dataset("folder", tmp_path)
    ds = load_dataset("folder", tmp_path, skip_unreadable=True)
    assert ds.info["skipped_unreadable"] == 1 and ds.info["skipped_files"] == ["normal/zz_broken.jpg"]
    assert len(ds.x_train) + len(ds.x_test) == 5
    ds = load_dataset("folder", tmp_path, skip_unreadable=True, size=4)
    assert ds.info["skipped_unreadable"] == 1


def test_errors(tmp_path, save_img, rand_img):
    with pytest.raises(DatasetNotFoundError, match="normal"):
        load_dataset("folder", tmp_path / "none")
    save_img(tmp_path / "only" / "a.png", rand_img())
    with pytest.raises(DatasetNotFoundError, match="found 1 class folder"):
        load_dataset("folder", tmp_path)
    for bad in ({"test_fraction": 0}, {"test_fraction": "x"}, {"size": -3}, {"skip_unreadable": "maybe"}):
        with pytest.raises(ConfigError):
            load_dataset("folder", tmp_path, **bad)
