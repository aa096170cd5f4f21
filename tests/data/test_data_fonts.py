import json
import shutil

import numpy as np
import pytest

from fgad.data import fonts, load_dataset, one_vs_all
from fgad.errors import ConfigError, DatasetNotFoundError, InputError


@pytest.fixture(scope="module")
def default_fonts():
    return load_dataset("fonts")


def test_default_needs_no_files(default_fonts):
    ds = default_fonts
    assert ds.class_names == fonts.DEFAULT_FACES and len(ds.class_names) == 16
    assert ds.info["chars_kept"] == 62
    json.dumps(ds.info)
    n_test = round(62 * 0.3)
    assert ds.x_train.shape == (16 * (62 - n_test), 32, 32) and ds.x_test.shape == (16 * n_test, 32, 32)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == [62 - n_test] * 16
    train_chars, test_chars = set(ds.info["train_chars"]), set(ds.info["test_chars"])
    assert not train_chars & test_chars and len(train_chars | test_chars) == 62
    assert ds.ids_test[0] == f"DejaVuSans/{ds.info['test_chars'][0]}"
    # white glyph on black: corners black, some pixels fully lit, every image has ink
    assert ds.x_train[:, 0, 0].max() == 0 and ds.x_train.max() == 255
    assert (ds.x_train.reshape(len(ds.x_train), -1).max(1) > 0).all()
    # faces differ from each other on the same character
    per_face = ds.x_test.reshape(16, n_test, 32, 32)
    assert not np.array_equal(per_face[0], per_face[1])
    x, xt, y = one_vs_all(ds, "DejaVuSerif-Bold")
    assert len(x) == 62 - n_test and y.sum() == 15 * n_test


def test_split_seed_and_fraction():
    a = load_dataset("fonts", faces=["DejaVuSans", "DejaVuSerif"], split_seed=1, test_fraction=0.5)
    b = load_dataset("fonts", faces=["DejaVuSans", "DejaVuSerif"], split_seed=1, test_fraction=0.5)
    c = load_dataset("fonts", faces=["DejaVuSans", "DejaVuSerif"], split_seed=2, test_fraction=0.5)
    assert a.info["test_chars"] == b.info["test_chars"] != c.info["test_chars"]
    assert np.array_equal(a.x_test, b.x_test)
    assert len(a.info["test_chars"]) == 31


def test_size_option():
    ds = load_dataset("fonts", faces=["STIXGeneral", "cmr10.ttf"], size=20)
    assert ds.x_train.shape[1:] == (20, 20) and ds.class_names == ["STIXGeneral", "cmr10"]


def test_font_folder_with_ttc_and_charset_file(tmp_path, mpl_font_dir):
    from fontTools.ttLib import TTCollection, TTFont

    folder = tmp_path / "fonts"
    folder.mkdir()
    shutil.copy(mpl_font_dir / "DejaVuSans.ttf", folder / "A.ttf")
    coll = TTCollection()
    coll.fonts = [TTFont(mpl_font_dir / "cmr10.ttf"), TTFont(mpl_font_dir / "cmtt10.ttf")]
    coll.save(folder / "pair.ttc")
    charset = tmp_path / "chars.txt"
    charset.write_text("ABC abc\n123 中 A\u00e9")  # 中 and é: not in the cm faces -> dropped
    ds = load_dataset("fonts", folder, charset=str(charset), test_fraction=0.25)
    assert ds.class_names == ["A", "pair#0", "pair#1"]
    assert ds.info["chars_requested"] == 11 and ds.info["chars_kept"] == 9
    assert set(ds.info["train_chars"] + ds.info["test_chars"]) == set("ABCabc123")
    assert len(ds.x_train) == 3 * 7 and len(ds.x_test) == 3 * 2
    assert [f["index"] for f in ds.info["faces"]] == [0, 0, 1]
    per_face = ds.x_train.reshape(3, 7, 32, 32)
    assert not np.array_equal(per_face[1], per_face[2]), "the two faces of the .ttc must differ"
    sub = load_dataset("fonts", folder, charset=str(charset), faces=["pair#1", "A.ttf"])
    assert sub.class_names == ["pair#1", "A"]


def test_fallback_coverage_agrees_with_cmap(mpl_font_dir):
    """Without fontTools the .notdef comparison decides; it must agree with the cmap here."""
    chars = list(fonts.LATIN) + list("中文\u00e9\u0416\ue000")
    for name in ("DejaVuSans.ttf", "cmr10.ttf"):
        face = fonts.Face(mpl_font_dir / name, 0, name, 32)
        by_render, _ = face.covers(chars, None)
        by_cmap, _ = face.covers(chars, fonts.face_cmap(mpl_font_dir / name, 0))
        assert by_render == by_cmap
        assert all(by_render[:62]) and not any(by_render[62:64])


def test_gb2312_level1():
    chars = fonts.gb2312_chars(1)
    assert len(chars) == 3755 and chars[0] == "啊" and chars[-1] == "座"
    assert len(fonts.gb2312_chars(2)) == 6763
    assert len(fonts.resolve_charset("gb2312-1")[0]) == 3755


def test_charset_gb2312_with_latin_faces_fails_clearly():
    with pytest.raises(InputError, match="covered by every face"):
        load_dataset("fonts", faces=["DejaVuSans", "DejaVuSerif"], charset="gb2312-1")


def test_errors(tmp_path, mpl_font_dir):
    with pytest.raises(ConfigError, match="no face named 'NoSuchFont'"):
        load_dataset("fonts", faces=["DejaVuSans", "NoSuchFont"])
    with pytest.raises(ConfigError, match="charset"):
        load_dataset("fonts", charset=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("fonts", test_fraction=1.0)
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        load_dataset("fonts", tmp_path / "nope")
    shutil.copy(mpl_font_dir / "cmr10.ttf", tmp_path / "one.ttf")
    with pytest.raises(DatasetNotFoundError, match="found 1 font face"):
        load_dataset("fonts", tmp_path)
    with pytest.raises(ConfigError, match="cannot be downloaded"):
        load_dataset("fonts", download=True)


def test_european_charset_gives_hundreds_of_shared_glyphs_per_face():
    chars = fonts.european_chars()
    assert "A" in chars and "é" in chars and "Ж" in chars and "λ" in chars
    assert "\u0301" not in chars and " " not in chars  # no combining marks, no spaces
    ds = load_dataset("fonts", charset="european", test_fraction=0.25, faces=["DejaVuSans", "STIXGeneral"])
    # every kept character is covered by both faces; the 16 default faces share 535 of them
    per_face_train = np.bincount(ds.y_train).tolist()
    per_face_test = np.bincount(ds.y_test).tolist()
    assert per_face_train[0] == per_face_train[1] >= 300 and per_face_test[0] == per_face_test[1] >= 100
    assert ds.info["charset"] == "european"
