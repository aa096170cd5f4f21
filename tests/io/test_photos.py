"""Photos as they come: any size and mode goes in through the model's one rule (fgad.io.conform).

Decoding (EXIF orientation, 16-bit scaled by value, alpha on black), the three resize rules and
the channel conversion are checked against per-image NumPy / Pillow references written here; a
folder mixing sizes and modes trains and scores through the command line, and the scikit-learn
wrapper scores it as ``fgad score`` does.
"""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from fgad import Detector, InputError
from fgad.cli import main
from fgad.integrations.sklearn_estimator import FgadOutlierDetector
from fgad.io.conform import InputRule, conform_image, fit_size
from fgad.io.imageio import image_header, list_images, read_image
from fgad.io.inputs import read_inputs

torch.set_num_threads(1)
FAST = ["--preset", "tiny", "--quiet", "--set", "steps=1", "--set", "image_size=16", "--device", "cpu"]
RULES = ("crop", "pad", "stretch")


def rng_image(*shape, seed=0, dtype=np.uint8, high=256):
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


# ------------------------------------------------------------------------------ a mixed folder
def write_mixed_folder(folder):
    """Every mode the issue names, at the sizes of ordinary photos; {name: (H, W, colour)}."""
    folder.mkdir(parents=True, exist_ok=True)
    palette = rng_image(256, 3, seed=9).ravel().tolist()
    files = {}

    def save(name, im, colour, **kw):
        im.save(folder / name, **kw)
        files[name] = (im.size[1], im.size[0], colour)

    save("rgb_640x480.jpg", Image.fromarray(rng_image(480, 640, 3, seed=1)), True, quality=95)
    save("cmyk_800x600.jpg", Image.fromarray(rng_image(600, 800, 4, seed=2), "CMYK"), True)
    save("grey16_40x40.png", Image.fromarray(rng_image(40, 40, seed=3, dtype=np.uint16, high=65536)), False)
    save("bit1_300x300.png", Image.fromarray(rng_image(300, 300, seed=4) > 127), False)
    save("grey_640x480.png", Image.fromarray(rng_image(480, 640, seed=5)), False)
    p = Image.fromarray(rng_image(600, 800, seed=6), "P")
    p.putpalette(palette)
    save("palette_800x600.png", p, True)
    pt = Image.fromarray(rng_image(300, 300, seed=7), "P")
    pt.putpalette(palette)
    save("palette_transparent_300x300.png", pt, True, transparency=3)
    save("rgba_40x40.png", Image.fromarray(rng_image(40, 40, 4, seed=8), "RGBA"), True)
    save("la_300x300.png", Image.fromarray(rng_image(300, 300, 2, seed=10), "LA"), False)
    save("int32_40x40.tif", Image.fromarray(rng_image(40, 40, seed=11, dtype=np.int32, high=70000)), False)
    save("float_300x300.tif", Image.fromarray(rng_image(300, 300, seed=12, high=300).astype(np.float32)), False)
    return files


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos") / "mixed"
    return folder, write_mixed_folder(folder)


@pytest.fixture(scope="module")
def mixed_model(mixed, tmp_path_factory):
    folder, _ = mixed
    model = tmp_path_factory.mktemp("models") / "m"
    assert main(["train", str(folder), "--out", str(model), *FAST]) == 0
    return model


def read_scores(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    return {r["id"]: float(r["anomaly_score"]) for r in rows}


def test_pictures_of_fgad_explain_in_a_folder_are_never_read_as_images(mixed, mixed_model, tmp_path, capsys):
    """Explaining an image writes NAME.explain.png beside it: the folder's next scoring (or
    training) leaves it out, and says so."""
    folder, files = mixed
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    name = "rgb_640x480.jpg"
    (incoming / name).write_bytes((folder / name).read_bytes())
    assert main(["explain", str(mixed_model), str(incoming / name)]) == 0
    assert (incoming / "rgb_640x480.explain.png").is_file()
    capsys.readouterr()
    assert main(["score", str(mixed_model), str(incoming), "--quiet"]) == 0
    out = capsys.readouterr()
    assert list(read_scores(out.out)) == [name]
    assert "left out 1 picture(s) written by fgad explain (*.explain.png)" in out.err
    assert list_images(incoming) == [incoming / name]
    (incoming / name).unlink()
    assert main(["score", str(mixed_model), str(incoming), "--quiet"]) == 2
    assert "no image files in this folder (only 1 picture(s) of fgad explain)" in capsys.readouterr().err


def test_every_mode_decodes_to_8_bit_grey_or_rgb(mixed):
    folder, files = mixed
    for name, (h, w, colour) in files.items():
        img = read_image(folder / name)
        assert img.dtype == np.uint8 and img.shape == ((h, w, 3) if colour else (h, w)), name
        assert image_header(folder / name) == (h, w, 3 if colour else 1), name


def test_mixed_folder_trains_and_scores_through_the_cli(mixed, mixed_model, tmp_path, capsys):
    folder, files = mixed
    meta = json.loads((mixed_model / "config.json").read_text())
    # Several sizes: 64x64 by default; colour, since some files are colour; the rule is saved.
    assert meta["input_shape"] == [64, 64, 3] and meta["config"]["resize"] == "crop"
    out = tmp_path / "s.csv"
    assert main(["score", str(mixed_model), str(folder), "--out", str(out), "--quiet"]) == 0
    n_grey = sum(not c for _, _, c in files.values())
    assert f"converted {n_grey} grey image(s) to colour, resized {len(files)} image(s) to 64x64 (rule: crop)" \
        in capsys.readouterr().err
    scores = read_scores(out.read_text())
    assert sorted(scores) == sorted(files) and np.isfinite(list(scores.values())).all()
    # The same scores as the library's on the images brought to 64x64 by the reference rule.
    det = Detector.load(mixed_model)
    x = np.stack([reference_conform(as_hwc(read_image(folder / n)), (64, 64, 3), "crop") for n in sorted(files)])
    np.testing.assert_allclose([scores[n] for n in sorted(files)], det.score(x), atol=2e-6)


def test_size_resize_and_channels_options_are_saved_and_applied(mixed, tmp_path, capsys):
    folder, files = mixed
    model = tmp_path / "grey"
    assert main(["train", str(folder), "--out", str(model), *FAST, "--size", "32", "--resize", "pad",
                 "--channels", "grey"]) == 0
    n_colour = sum(c for _, _, c in files.values())
    assert f"converted {n_colour} colour image(s) to grey, resized {len(files)}" in capsys.readouterr().err
    det = Detector.load(model)
    assert det.input_shape == (32, 32, 1) and det.config.resize == "pad"
    got = read_inputs(folder, InputRule.of_model(det.input_shape, det.config.resize))
    for name, img in zip(got.ids, got.images):
        assert np.array_equal(img, reference_conform(as_hwc(read_image(folder / name)), (32, 32, 1), "pad")), name


def test_strict_size_is_one_error_line_naming_the_first_mismatched_file(mixed, mixed_model, tmp_path, capsys):
    folder, _ = mixed
    assert main(["train", str(folder), "--out", str(tmp_path / "m"), *FAST, "--strict-size"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    first = sorted(p.name for p in folder.iterdir())
    assert len(err) == 1 and err[0].startswith("fgad: error: ") and first[1] in err[0] and first[0] in err[0]
    assert not (tmp_path / "m").exists()
    assert main(["score", str(mixed_model), str(folder), "--strict-size", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and first[0] in err[0] and "64x64" in err[0] and "--strict-size" in err[0]


def test_exif_rotated_twins_read_and_score_the_same(mixed_model, tmp_path, capsys):
    """Each twin holds the pixels turned and an EXIF Orientation that exif_transpose undoes."""
    undo = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}
    folder = tmp_path / "twins"
    folder.mkdir()
    upright = Image.fromarray(rng_image(48, 80, 3, seed=20))
    upright.save(folder / "o1.png")
    for orientation, turn in undo.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        upright.transpose(turn).save(folder / f"o{orientation}.png", exif=exif.tobytes())
    ref = read_image(folder / "o1.png")
    for p in list_images(folder):
        assert np.array_equal(read_image(p), ref), p.name
        assert image_header(p) == (48, 80, 3), p.name
    assert main(["score", str(mixed_model), str(folder), "--quiet"]) == 0
    scores = read_scores(capsys.readouterr().out)
    assert len(scores) == 8 and len(set(scores.values())) == 1


# ------------------------------------------------------------------------------ decoding rules
def test_16_bit_grey_is_scaled_by_value_not_clipped(tmp_path):
    v = np.array([[0, 1, 128, 129, 257, 32767], [32896, 40000, 65278, 65279, 65534, 65535]], np.uint16)
    Image.fromarray(v).save(tmp_path / "g16.png")
    expected = np.floor(v.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert np.array_equal(read_image(tmp_path / "g16.png"), expected)
    assert read_image(tmp_path / "g16.png")[1, -1] == 255  # Pillow's convert("L") gives 255 from 255 on


def test_32_bit_integer_and_float_grey(tmp_path):
    i = np.array([[-5, 0, 257, 65535, 100000]], np.int32)
    Image.fromarray(i).save(tmp_path / "i.tif")
    assert read_image(tmp_path / "i.tif").tolist() == [[0, 0, 1, 255, 255]]
    f = np.array([[-3.0, 0.4, 0.6, 254.5, 300.0]], np.float32)
    Image.fromarray(f).save(tmp_path / "f.tif")
    assert read_image(tmp_path / "f.tif").tolist() == [[0, 0, 1, 254, 255]]


def test_alpha_and_transparent_palette_entries_are_composited_on_black(tmp_path):
    rgba = rng_image(6, 7, 4, seed=30)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    expected = np.floor(rgba[..., :3].astype(np.float64) * rgba[..., 3:] / 255 + 0.5).astype(np.uint8)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), expected)
    la = rng_image(6, 7, 2, seed=31)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    expected = np.floor(la[..., 0].astype(np.float64) * la[..., 1] / 255 + 0.5).astype(np.uint8)
    assert np.array_equal(read_image(tmp_path / "la.png"), expected)
    idx = rng_image(6, 7, seed=32) % 4
    p = Image.fromarray(idx.astype(np.uint8), "P")
    p.putpalette([200, 100, 50, 10, 20, 30, 255, 255, 255, 1, 2, 3])
    p.save(tmp_path / "p.png", transparency=2)
    colours = np.array([[200, 100, 50], [10, 20, 30], [0, 0, 0], [1, 2, 3]], np.uint8)  # entry 2: transparent
    assert np.array_equal(read_image(tmp_path / "p.png"), colours[idx])


def test_one_bit_palette_and_cmyk(tmp_path):
    bits = rng_image(5, 9, seed=33) > 127
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert np.array_equal(read_image(tmp_path / "b.png"), bits.astype(np.uint8) * 255)
    cmyk = Image.fromarray(rng_image(5, 9, 4, seed=34), "CMYK")
    cmyk.save(tmp_path / "c.tif")  # lossless, so Pillow's CMYK -> RGB is the reference
    assert np.array_equal(read_image(tmp_path / "c.tif"), np.asarray(cmyk.convert("RGB")))


# ------------------------------------------------------------------------------ resize rules
def as_hwc(img):
    return img[..., None] if img.ndim == 2 else img


def half_up(fraction):
    return int(fraction + Fraction(1, 2))


def reference_conform(img, shape, rule):
    """Per image, by the documented rule: luma or repetition, then Pillow bilinear and NumPy slicing."""
    h, w, c = shape
    if img.shape[2] != c:
        if c == 1:
            r, g, b = (img[..., k].astype(np.float64) for k in range(3))
            img = (r * 0.299 + g * 0.587 + b * 0.114 + 0.5).astype(np.uint8)[..., None]
        else:
            img = np.concatenate([img] * 3, axis=2)
    H, W = img.shape[:2]
    if (H, W) == (h, w):
        return img
    pil = Image.fromarray(img[..., 0] if c == 1 else img)
    if rule == "stretch":
        return as_hwc(np.asarray(pil.resize((w, h), Image.BILINEAR)))
    cover = Fraction(h, H) if Fraction(h, H) >= Fraction(w, W) else Fraction(w, W)
    fit = Fraction(h, H) if Fraction(h, H) <= Fraction(w, W) else Fraction(w, W)
    scale = cover if rule == "crop" else fit
    sh, sw = half_up(H * scale), half_up(W * scale)
    scaled = as_hwc(np.asarray(pil.resize((sw, sh), Image.BILINEAR)))
    if rule == "crop":
        top, left = (sh - h) // 2, (sw - w) // 2
        return scaled[top:top + h, left:left + w]
    out = np.zeros((h, w, c), np.uint8)
    top, left = (h - sh) // 2, (w - sw) // 2
    out[top:top + sh, left:left + sw] = scaled
    return out


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("size", [(480, 640), (600, 800), (300, 300), (40, 40), (37, 91), (91, 37)])
@pytest.mark.parametrize("target", [(64, 64, 3), (32, 48, 1)])
def test_each_rule_matches_the_per_image_reference(rule, size, target):
    img = rng_image(*size, 3, seed=sum(size))
    out = conform_image(img, target, rule)
    assert out.shape == target and out.dtype == np.uint8
    assert np.array_equal(out, reference_conform(img, target, rule))


def test_crop_and_pad_without_resampling_are_slicing_and_black_borders():
    img = rng_image(64, 100, 3, seed=40)
    assert np.array_equal(fit_size(img, (64, 64), "crop"), img[:, 18:82])
    tall = rng_image(64, 40, 1, seed=41)
    padded = fit_size(tall, (64, 64), "pad")
    assert np.array_equal(padded[:, 12:52], tall) and not padded[:, :12].any() and not padded[:, 52:].any()
    assert fit_size(img, (64, 100), "crop") is img  # already the model's size: untouched, whatever the rule


def test_folder_reader_applies_the_rule_to_each_file(mixed):
    folder, files = mixed
    for rule in RULES:
        got = read_inputs(folder, InputRule((48, 48), 3, rule))
        assert got.ids == sorted(files) and got.images.shape == (len(files), 48, 48, 3)
        for name, img in zip(got.ids, got.images):
            assert np.array_equal(img, reference_conform(as_hwc(read_image(folder / name)), (48, 48, 3), rule))


def test_npz_images_of_another_size_go_through_the_rule(mixed_model, tmp_path, capsys):
    x = rng_image(3, 30, 50, seed=42)
    np.savez(tmp_path / "x.npz", x_train=x)
    assert main(["score", str(mixed_model), str(tmp_path / "x.npz"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "converted 3 grey image(s) to colour, resized 3 image(s) to 64x64 (rule: crop)" in captured.err
    det = Detector.load(mixed_model)
    ref = np.stack([reference_conform(img[..., None], (64, 64, 3), "crop") for img in x])
    np.testing.assert_allclose(list(read_scores(captured.out).values()), det.score(ref), atol=2e-6)


# ------------------------------------------------------------------------------ the library
def test_library_refuses_other_sizes_unless_conform_and_then_uses_the_models_rule(mixed_model):
    det = Detector.load(mixed_model)
    x = rng_image(2, 40, 70, 3, seed=43)
    with pytest.raises(InputError, match="trained on 64x64"):
        det.score(x)
    ref = np.stack([reference_conform(img, (64, 64, 3), "crop") for img in x])
    np.testing.assert_array_equal(det.score(x, conform=True), det.score(ref))


def test_models_saved_before_the_rule_keep_stretching(tmp_path):
    det = Detector(preset="tiny", steps=1, image_size=16, device="cpu", tasks=("rotation",))
    det.fit(rng_image(4, 12, 12, seed=44), progress=False)
    det.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["config"]["resize"]  # as a model written before fgad had resize rules
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    old = Detector.load(tmp_path / "old")
    assert old.config.resize == "stretch"
    x = rng_image(2, 12, 30, seed=45)
    ref = np.stack([reference_conform(img[..., None], (12, 12, 1), "stretch") for img in x])
    np.testing.assert_array_equal(old.score(x, conform=True), old.score(ref))


@pytest.mark.slow
def test_sklearn_wrapper_scores_a_mixed_folder_as_fgad_score(mixed, tmp_path, capsys):
    folder, files = mixed
    photos = [read_image(p) for p in list_images(folder)]  # native sizes and modes, as decoded
    est = FgadOutlierDetector(preset="tiny", steps=1, image_size=16, device="cpu", conform=True, input_size=32,
                              resize="pad").fit(photos)
    assert est.detector_.input_shape == (32, 32, 3) and est.detector_.config.resize == "pad"
    model = tmp_path / "cli"
    assert main(["train", str(folder), "--out", str(model), *FAST, "--size", "32", "--resize", "pad"]) == 0
    assert main(["score", str(model), str(folder), "--out", str(tmp_path / "s.csv"), "--quiet"]) == 0
    cli = read_scores((tmp_path / "s.csv").read_text())
    np.testing.assert_allclose(-est.score_samples(photos), [cli[n] for n in sorted(files)], atol=2e-6)
    with pytest.raises(InputError):
        FgadOutlierDetector(preset="tiny", steps=1, device="cpu").fit(photos)  # without conform: refused


def test_library_conform_takes_a_list_of_photos_of_several_sizes(mixed, mixed_model):
    folder, _ = mixed
    det = Detector.load(mixed_model)
    photos = [read_image(p) for p in list_images(folder)]
    got = read_inputs(folder, InputRule.of_model(det.input_shape, det.config.resize))
    np.testing.assert_array_equal(det.score(photos, conform=True), det.score(got.images))
