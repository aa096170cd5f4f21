"""``fgad gallery`` / :mod:`fgad.tools.gallery`: the page is parsed with ``html.parser`` and checked
against the images, ``fgad score``'s CSV and the decision; once, rendered in a headless browser."""

from __future__ import annotations

import base64
import csv
import io
import shutil
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import fgad
from fgad.cli import main
from fgad.errors import OutputError
from fgad.tools.gallery import GALLERY_MARKER, build_gallery, is_gallery, write_gallery

torch.set_num_threads(1)  # two shared cores: one intra-op thread is faster and deterministic

PNG_URI = "data:image/png;base64,"


class Page(HTMLParser):
    """Cards (``figure`` attributes + thumbnail src), all ``img`` srcs, the visible text, every tag seen."""

    def __init__(self, text: str):
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.ids: list[str] = []
        self.text: list[str] = []
        self._card: dict[str, str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "figure":
            self._card = dict(a)
            self.cards.append(self._card)
        if tag == "img":
            self.images.append(a["src"])
            if self._card is not None and "thumb" not in self._card:
                self._card["thumb"] = a["src"]

    def handle_endtag(self, tag):
        if tag == "figure":
            self._card = None

    def handle_data(self, data):
        self.text.append(data)
        if self._card is not None:
            self._card["caption"] = self._card.get("caption", "") + data


def decode_png(uri: str) -> np.ndarray:
    assert uri.startswith(PNG_URI)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(PNG_URI):]))))


def stub_detector(decision=None):
    """Enough of a Detector for a page without explanations (scores given): no training."""
    return SimpleNamespace(decision=decision, config=SimpleNamespace(score_fusion="sum"),
                           normal_percentile=lambda scores: None)  # no held-out normal images


def random_uint8(n, h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


# ----------------------------------------------------------------------------------- library, no model
def test_ranks_thumbnails_and_no_image_twice():
    x = random_uint8(5)
    scores = np.array([0.3, -1.0, 2.5, 0.3, 1.0])
    page, summary = build_gallery(stub_detector(), x, [f"img{i}.png" for i in range(5)], scores,
                                  top=4, bottom=4, explain=False)
    p = Page(page)
    assert [c["data-id"] for c in p.cards] == ["img2.png", "img4.png", "img0.png", "img3.png", "img1.png"]
    assert [int(c["data-rank"]) for c in p.cards] == [1, 2, 3, 4, 5]  # ties keep the input order
    assert summary["top"] == ["img2.png", "img4.png", "img0.png", "img3.png"] and summary["bottom"] == ["img1.png"]
    for c in p.cards:
        i = int(c["data-id"][3])
        assert float(c["data-score"]) == scores[i]
        assert np.array_equal(decode_png(c["thumb"]), x[i])  # small images: encoded at full size, exactly
    assert "#1 of 5 most anomalous" in " ".join(p.cards[0]["caption"].split())
    assert "#1 of 5 least anomalous" in " ".join(p.cards[4]["caption"].split())
    assert "data-flagged" not in page and "no decision threshold" in page
    assert p.tags.isdisjoint({"script", "link", "iframe"}) and "http" not in page.replace(GALLERY_MARKER, "")


def test_ids_are_escaped():
    ids = ['<script>alert("x")</script>.png', "a&b 'c'.png", '"><img src=x onerror=alert(1)>']
    page, _ = build_gallery(stub_detector(), random_uint8(3), ids, [3.0, 2.0, 1.0], top=3, bottom=0,
                            explain=False, title="<u>title</u>")
    p = Page(page)
    assert "script" not in p.tags and "u" not in p.tags
    assert [c["data-id"] for c in p.cards] == ids  # the parser unescapes attributes back to the ids
    assert len(p.images) == 3 and all(src.startswith(PNG_URI) for src in p.images)
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert any("<u>title</u>" in t for t in p.text)  # shown as text


def test_decision_counts_and_flags():
    decision = {"threshold": 0.5, "rule": "fpr", "target": 0.05, "n_normal": 100, "n_anomalous": 0,
                "bpcer": 0.04, "apcer": None, "f1": None, "fusion": "sum"}
    scores = np.array([0.1, 0.5, 0.9, 0.2, 0.7, 0.4])
    page, summary = build_gallery(stub_detector(decision), random_uint8(6), list("abcdef"), scores,
                                  top=2, bottom=2, explain=False)
    p = Page(page)
    assert summary["n_anomalous"] == 3 and summary["threshold"] == 0.5
    flags = {c["data-id"]: c["data-flagged"] for c in p.cards}
    assert flags == {"c": "1", "e": "1", "a": "0", "d": "0"}  # score >= threshold: anomalous
    assert "3 images are flagged; the 2 most anomalous are shown" in " ".join("".join(p.text).split())


def test_bad_inputs_are_user_errors():
    with pytest.raises(fgad.InputError, match="2 ids"):
        build_gallery(stub_detector(), random_uint8(3), ["a", "b"], [1.0, 2.0, 3.0], explain=False)
    with pytest.raises(fgad.InputError, match="NaN"):
        build_gallery(stub_detector(), random_uint8(2), ["a", "b"], [1.0, np.nan], explain=False)
    with pytest.raises(fgad.InputError, match="top"):
        build_gallery(stub_detector(), random_uint8(2), ["a", "b"], [1.0, 2.0], top=-1, explain=False)


def test_only_a_gallery_is_overwritten_without_asking(tmp_path):
    args = (stub_detector(), random_uint8(2), ["a", "b"], [1.0, 2.0])
    page = tmp_path / "page.html"
    write_gallery(*args, page, explain=False)
    assert is_gallery(page)
    write_gallery(*args, page, top=1, explain=False)  # a gallery: replaced
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    with pytest.raises(OutputError, match="not an fgad gallery"):
        write_gallery(*args, mine, explain=False)
    assert mine.read_text() == "<html>my notes</html>"
    write_gallery(*args, mine, explain=False, overwrite=True)
    assert is_gallery(mine)


def test_cli_refuses_a_foreign_file_before_loading(tmp_path, capsys):
    mine = tmp_path / "index.html"
    mine.write_text("keep me")
    missing = [str(tmp_path / "no-model"), str(tmp_path / "no-images")]
    for extra in ([], ["--overwrite"]):  # the rule of every command: only fgad's own output is replaced
        assert main(["gallery", *missing, "--out", str(mine), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fgad: error:") and "not an fgad gallery" in err[0]
    assert mine.read_text() == "keep me"
    earlier = tmp_path / "earlier.html"
    write_gallery(stub_detector(), random_uint8(2), ["a", "b"], [1.0, 2.0], earlier, explain=False)
    assert main(["gallery", *missing, "--out", str(earlier)]) == 2
    assert "--overwrite" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- a trained model
@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny detector (geometric + jigsaw, 16×16), calibrated, and 12 test images in an .npz."""
    root = tmp_path_factory.mktemp("gallery")
    det = fgad.Detector(preset="tiny", device="cpu", steps=2, image_size=16).fit(random_uint8(6, seed=1),
                                                                                  progress=False)
    model = det.save(root / "model")
    npz = root / "test.npz"
    np.savez(npz, x_test=random_uint8(12, seed=2), x_cal=random_uint8(10, seed=3))
    assert main(["calibrate", str(model), str(npz), "--key", "x_cal", "--target-fpr", "0.3", "--device", "cpu",
                 "--quiet"]) == 0
    return SimpleNamespace(root=root, model=model, npz=npz, x=np.load(npz)["x_test"])


@pytest.mark.slow
def test_page_matches_fgad_score_csv(scored, capsys):
    csv_path, page = scored.root / "scores.csv", scored.root / "page.html"
    common = [str(scored.model), str(scored.npz), "--key", "x_test", "--device", "cpu", "--quiet"]
    assert main(["score", *common, "--out", str(csv_path), "--decide"]) == 0
    assert main(["gallery", *common, "--out", str(page), "--top", "3", "--bottom", "2"]) == 0
    rows = {r["id"]: r for r in csv.DictReader(csv_path.open())}
    p = Page(page.read_text(encoding="utf-8"))
    assert len(p.cards) == 5
    ranked = sorted(rows, key=lambda i: -float(rows[i]["anomaly_score"]))
    assert [c["data-id"] for c in p.cards] == ranked[:3] + ranked[::-1][:2]
    for c in p.cards:
        row = rows[c["data-id"]]
        assert float(c["data-score"]) == pytest.approx(float(row["anomaly_score"]), abs=1e-6)
        assert c["data-flagged"] == row["is_anomaly"]
        assert np.array_equal(decode_png(c["thumb"]), scored.x[int(c["data-id"])])
        assert f"why-{c['data-rank']}" in p.ids  # each shown image has its explanation
    figures = [src for src in p.images if src not in {c["thumb"] for c in p.cards}]
    assert len(figures) == 5 and all(decode_png(f).shape[1] > 600 for f in figures)  # fgad explain's figure
    n_flagged = sum(int(r["is_anomaly"]) for r in rows.values())
    assert f'<td id="n-anomalous">{n_flagged}</td>' in page.read_text(encoding="utf-8")
    assert f'<td id="n-normal">{12 - n_flagged}</td>' in page.read_text(encoding="utf-8")
    text = "".join(p.text)
    assert "jigsaw/permutation" in text and "geometric/rotation" in text  # format_breakdown's table
    err = capsys.readouterr().err
    assert f"{n_flagged} of 12 image(s) anomalous" in err


@pytest.mark.slow
@pytest.mark.subprocess
def test_page_renders_in_a_headless_browser(scored, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("no chromium installed")
    page, shot = tmp_path / "page.html", tmp_path / "shot.png"
    det = fgad.Detector.load(scored.model, device="cpu")
    write_gallery(det, scored.x, [f"test/{i}.png" for i in range(len(scored.x))], None, page, top=2, bottom=1)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   check=True, timeout=180, capture_output=True)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (1600, 1200)
    assert img.std() > 10 and len(np.unique(img)) > 50  # text, thumbnails and figures, not a blank page


# ----------------------------------------------------------------------------------- the improved detector's score
@pytest.mark.slow
def test_cli_gallery_shows_the_fused_score_and_its_normal_percentile(tmp_path, capsys):
    """A model with the improved settings (z-scored log-space and kNN components): the cards carry
    the detector's own fused score and the share of held-out normal images that score lower."""
    from fgad.core.config import IMPROVED

    det = fgad.Detector(preset="tiny", device="cpu", steps=2, image_size=16, **IMPROVED).fit(
        random_uint8(15, seed=4), progress=False)
    model = det.save(tmp_path / "model")
    x = random_uint8(6, seed=5)
    npz = tmp_path / "test.npz"
    np.savez(npz, x_test=x)
    page = tmp_path / "page.html"
    assert main(["gallery", str(model), str(npz), "--key", "x_test", "--device", "cpu", "--quiet", "--out", str(page),
                 "--top", "2", "--bottom", "1"]) == 0
    p = Page(page.read_text(encoding="utf-8"))
    scores = det.score(x)
    pct = det.normal_percentile(scores)
    assert len(p.cards) == 3
    for c in p.cards:
        i = int(c["data-id"])
        assert float(c["data-score"]) == pytest.approx(scores[i], abs=1e-9)
        assert float(c["data-percentile"]) == pytest.approx(pct[i])
        assert f"above {pct[i]:.1f}% of normals" in c["caption"]
    text = "".join(p.text)
    assert "feature_knn" in text and "normal percentile" in text  # fgad explain's components table
    assert "share of held-out normal images that score lower" in text
