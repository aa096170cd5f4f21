import json

import numpy as np
import pytest

from fgad.data import leave_one_attack_out, load_dataset, one_vs_all
from fgad.errors import ConfigError, DatasetNotFoundError


def make_tree(folder, save_img, rand_img, live=10, attacks=(("Print", 3), ("Mask", 2))):
    for i in range(live):
        save_img(folder / "live" / f"subject{i % 2}" / f"{i}.png", rand_img())
    for name, n in attacks:
        for i in range(n):
            save_img(folder / "attack" / name / f"{i}.jpg", rand_img())


def test_split_by_fraction(tmp_path, save_img, rand_img):
    make_tree(tmp_path, save_img, rand_img)
    ds = load_dataset("antispoof", tmp_path, size=16)
    assert ds.class_names == ["live", "Mask", "Print"]
    assert ds.x_train.shape == (7, 16, 16, 3) and ds.x_train.dtype == np.uint8
    assert (ds.y_train == 0).all(), "attacks go to test by default"
    assert np.bincount(ds.y_test).tolist() == [3, 2, 3]
    assert ds.groups_test.tolist().count("live") == 3 and set(ds.groups_test) == {"live", "Mask", "Print"}
    assert all(g == ds.class_names[y] for g, y in zip(ds.groups_test, ds.y_test))
    assert ds.ids_test[-1] == "attack/Print/2.jpg"
    json.dumps(ds.info)
    x, xt, y = one_vs_all(ds, "live")
    assert len(x) == 7 and y.sum() == 5

    again = load_dataset("antispoof", tmp_path, size=16)
    assert again.ids_test == ds.ids_test
    other = load_dataset("antispoof", tmp_path, size=16, split_seed=5)
    assert other.ids_test != ds.ids_test


def test_attacks_split_keeps_labels(tmp_path, save_img, rand_img):
    make_tree(tmp_path, save_img, rand_img, attacks=(("Print", 4),))
    ds = load_dataset("antispoof", tmp_path, attacks="split", test_fraction=0.5)
    assert np.bincount(ds.y_train).tolist() == [5, 2] and np.bincount(ds.y_test).tolist() == [5, 2]


def test_train_test_folders(tmp_path, save_img, rand_img):
    make_tree(tmp_path / "train", save_img, rand_img, live=4, attacks=(("Print", 1),))
    make_tree(tmp_path / "test", save_img, rand_img, live=2, attacks=(("Print", 2), ("Replay", 1)))
    ds = load_dataset("antispoof", tmp_path)
    assert ds.info["split"] == "folders"
    assert ds.class_names == ["live", "Print", "Replay"]
    assert ds.y_train.tolist() == [0, 0, 0, 0, 1]
    assert sorted(ds.y_test.tolist()) == [0, 0, 1, 1, 2]
    assert ds.x_train.shape[1:] == (32, 32, 3)


def test_leave_one_attack_out(tmp_path, save_img, rand_img):
    make_tree(tmp_path, save_img, rand_img)
    ds = load_dataset("antispoof", tmp_path)
    sets = leave_one_attack_out(ds)
    assert list(sets) == ["Mask", "Print"]
    x, y = sets["Mask"]
    assert len(x) == 5 and y.tolist().count(1) == 2 and y.tolist().count(0) == 3 and y.dtype == np.int64
    x, y = sets["Print"]
    assert len(x) == 6 and y.sum() == 3


def test_missing_and_bad_options(tmp_path, save_img, rand_img):
    with pytest.raises(DatasetNotFoundError, match="(?s)live/<images>.*cannot be downloaded"):
        load_dataset("antispoof", tmp_path)
    make_tree(tmp_path, save_img, rand_img)
    with pytest.raises(ConfigError, match="attacks must be one of"):
        load_dataset("antispoof", tmp_path, attacks="train")
    with pytest.raises(ConfigError, match="size"):
        load_dataset("antispoof", tmp_path, size=0)


def test_skip_unreadable(tmp_path, save_img, rand_img):
    make_tree(tmp_path, save_img, rand_img)
    (tmp_path / "attack" / "Mask" / "broken.png").write_bytes(b"not an image")
    ds = load_dataset("antispoof", tmp_path, skip_unreadable=True)
    assert ds.info["skipped_unreadable"] == 1 and len(ds.x_test) == 8
