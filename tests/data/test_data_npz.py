import numpy as np
import pytest

from fgad.data import load_dataset, one_vs_all
from fgad.errors import ConfigError, DatasetNotFoundError, InputError


def arrays(**over):
    rng = np.random.default_rng(0)
    a = dict(
        x_train=rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8),
        y_train=np.array([0, 0, 1, 1, 2, 2]),
        x_test=rng.integers(0, 256, (3, 5, 5, 3), dtype=np.uint8),
        y_test=np.array([0, 1, 2]),
        class_names=np.array(["cat", "dog", "owl"]),
    )
    a.update(over)
    return {k: v for k, v in a.items() if v is not None}


def save(path, **over):
    np.savez(path, **arrays(**over))
    return path


def test_load_file_and_folder(tmp_path):
    save(tmp_path / "pets.npz", extra=np.arange(3))
    ds = load_dataset("npz", tmp_path / "pets.npz")
    assert ds.name == "pets" and ds.class_names == ["cat", "dog", "owl"]
    assert ds.x_train.shape == (6, 5, 5, 3) and ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.info["extra_arrays"] == ["extra"]
    assert load_dataset("npz", tmp_path).name == "pets"
    save(tmp_path / "other.npz")
    with pytest.raises(ConfigError, match="holds 2 .npz files"):
        load_dataset("npz", tmp_path)
    assert load_dataset("npz", tmp_path, file="other").name == "other"
    assert one_vs_all(load_dataset("npz", tmp_path, file="other.npz"), "owl")[2].tolist() == [1, 1, 0]


def test_integer_images_converted_and_channel_squeezed(tmp_path):
    x = np.arange(4 * 3 * 3, dtype=np.int32).reshape(4, 3, 3, 1)
    save(tmp_path / "a.npz", x_train=x, y_train=np.array([0, 1, 0, 1], np.int32), x_test=x[:2], y_test=np.array([1, 0]),
         class_names=None)  # fmt: skip
    ds = load_dataset("npz", tmp_path / "a.npz")
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (4, 3, 3)
    assert np.array_equal(ds.x_train, x[..., 0])
    assert ds.class_names == ["0", "1"]


@pytest.mark.parametrize(
    "over, message",
    [
        ({"x_train": np.zeros((6, 5, 5, 3), np.float32)}, "dtype float32"),
        ({"x_test": np.full((3, 5, 5, 3), np.nan)}, "NaN"),
        ({"x_train": np.full((6, 5, 5, 3), 300, np.int64)}, "outside 0..255"),
        ({"x_train": np.zeros((6, 5, 5, 2), np.uint8)}, "expected N×H×W"),
        ({"x_train": np.zeros((6, 25), np.uint8)}, "expected N×H×W"),
        ({"x_test": np.zeros((3, 4, 4, 3), np.uint8)}, "x_test images are"),
        ({"y_train": np.array([0, 1, 2])}, "3 labels but there are 6 images"),
        ({"y_test": np.array([0.0, 1.0, 2.0])}, "integer array"),
        ({"y_test": np.array([0, -1, 2])}, "negative"),
        ({"class_names": np.array(["a", "b"])}, "2 class_names"),
        ({"y_test": None}, "missing arrays y_test"),
    ],
)
def test_invalid_arrays(tmp_path, over, message):
    save(tmp_path / "bad.npz", **over)
    with pytest.raises(InputError, match=message):
        load_dataset("npz", tmp_path / "bad.npz")


def test_never_unpickles(tmp_path):
    np.savez(tmp_path / "obj.npz", **arrays(class_names=np.array([{"a": 1}, 2, 3], dtype=object)))
    with pytest.raises(InputError, match="never unpickled"):
        load_dataset("npz", tmp_path / "obj.npz")


def test_not_npz_and_missing(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"definitely not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_dataset("npz", tmp_path / "junk.npz")
    with pytest.raises(DatasetNotFoundError):
        load_dataset("npz", tmp_path / "nope.npz")
    with pytest.raises(DatasetNotFoundError, match="put x.npz in"):
        load_dataset("npz", tmp_path, file="x")
