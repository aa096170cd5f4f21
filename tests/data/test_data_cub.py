import json

import numpy as np
import pytest

from fgad.data import load_dataset, one_vs_all
from fgad.errors import DatasetNotFoundError, InputError

CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def make_cub2011(folder, save_img, rand_img, grey_first=False):
    rows = []
    for c, cls in enumerate(CLASSES):
        for i in range(3):
            img_id = len(rows) + 1
            rel = f"{cls}/{cls[4:]}_{i:04d}.jpg"
            arr = rand_img(20 + i, 15, 1 if (grey_first and img_id == 1) else 3)
            save_img(folder / "images" / rel, arr)
            rows.append((img_id, rel, c + 1, 1 if i < 2 else 0))
    (folder / "images.txt").write_text("".join(f"{r[0]} {r[1]}\n" for r in rows))
    (folder / "image_class_labels.txt").write_text("".join(f"{r[0]} {r[2]}\n" for r in rows))
    (folder / "train_test_split.txt").write_text("".join(f"{r[0]} {r[3]}\n" for r in rows))
    (folder / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
    return rows


def test_cub2011(tmp_path, save_img, rand_img):
    make_cub2011(tmp_path / "CUB_200_2011", save_img, rand_img, grey_first=True)
    ds = load_dataset("cub200", tmp_path)
    assert ds.class_names == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert ds.x_train.shape == (6, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (3, 32, 32, 3)
    assert ds.y_train.tolist() == [0, 0, 1, 1, 2, 2] and ds.y_test.tolist() == [0, 1, 2]
    assert ds.ids_test[0] == "001.Black_footed_Albatross/Black_footed_Albatross_0002.jpg"
    assert ds.info["layout"] == "2011"
    json.dumps(ds.info)
    x, xt, y = one_vs_all(ds, "Laysan_Albatross")
    assert len(x) == 2 and y.tolist() == [1, 0, 1]


def test_cub2011_size_option(tmp_path, save_img, rand_img):
    make_cub2011(tmp_path, save_img, rand_img)
    ds = load_dataset("cub200", tmp_path, size=8)
    assert ds.x_train.shape == (6, 8, 8, 3) and ds.info["size"] == 8


def test_cub2010(tmp_path, save_img, rand_img):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classes.txt").write_text("\n".join(CLASSES[:2]) + "\n")
    train, test = [], []
    for c, cls in enumerate(CLASSES[:2]):
        for i in range(3):
            rel = f"{cls}/img_{i}.jpg"
            save_img(tmp_path / "images" / rel, rand_img())
            (train if i < 2 else test).append(rel)
    (lists / "train.txt").write_text("\n".join(train) + "\n")
    (lists / "test.txt").write_text("\n".join(test) + "\n")
    ds = load_dataset("cub200", tmp_path, size=16)
    assert ds.info["layout"] == "2010"
    assert ds.class_names == ["Black_footed_Albatross", "Laysan_Albatross"]
    assert ds.y_train.tolist() == [0, 0, 1, 1] and ds.y_test.tolist() == [0, 1]
    assert ds.x_test.shape == (2, 16, 16, 3)


@pytest.mark.parametrize("bad", ["../outside.jpg", "/etc/passwd", "001.A/../../x.jpg", "C:\\x.jpg"])
def test_cub_path_escape_refused(tmp_path, save_img, rand_img, bad):
    make_cub2011(tmp_path, save_img, rand_img)
    text = (tmp_path / "images.txt").read_text().splitlines()
    text[4] = f"5 {bad}"
    (tmp_path / "images.txt").write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match="escapes the dataset folder"):
        load_dataset("cub200", tmp_path)


def test_cub2010_path_escape_refused(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "classes.txt").write_text("001.A\n")
    (tmp_path / "lists" / "train.txt").write_text("001.A/../../../secret.jpg\n")
    (tmp_path / "lists" / "test.txt").write_text("")
    with pytest.raises(InputError, match=r"train.txt line 1: path .* escapes"):
        load_dataset("cub200", tmp_path)


def test_cub_inconsistent_index(tmp_path, save_img, rand_img):
    make_cub2011(tmp_path, save_img, rand_img)
    lines = (tmp_path / "image_class_labels.txt").read_text().splitlines()
    (tmp_path / "image_class_labels.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(InputError, match="no label for image 9"):
        load_dataset("cub200", tmp_path)


def test_cub_missing_files_named(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cub200", tmp_path)
    msg = str(err.value)
    for f in (
        "images.txt", "image_class_labels.txt", "train_test_split.txt",
        "classes.txt", "CUB_200_2011.tgz", "lists/train.txt",
    ):
        assert f in msg
    assert "--download" in msg


def test_cub_missing_image_file(tmp_path, save_img, rand_img):
    make_cub2011(tmp_path, save_img, rand_img)
    next((tmp_path / "images").rglob("*.jpg")).unlink()
    with pytest.raises(InputError, match="no such file"):
        load_dataset("cub200", tmp_path)
