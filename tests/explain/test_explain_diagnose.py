"""Task diagnostics (paper Fig. 1): accuracy per head during training, normal vs anomalies."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

import fgad
from fgad.core.config import PAPER_SETTINGS
from fgad.io.preprocess import to_tensor
from fgad.tools.diagnose import CSV_COLUMNS, diagnose, head_accuracies, parse_task_sets


def random_uint8(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)

SMALL = {"device": "cpu", "image_size": 16, **PAPER_SETTINGS}


@pytest.fixture(scope="module")
def result():
    x = random_uint8(8, 16, 16, seed=3)
    return diagnose(x, x[:3], 255 - x[:4], tasks="rotation,translation+jigsaw", preset="tiny", steps=3,
                    eval_every=2, overrides=SMALL, progress=False, keep_detectors=True)


def test_rows_cover_every_evaluation_head_and_split(result):
    heads = {"rotation": ["rotation/rotation"],
             "translation+jigsaw": ["translation/vertical", "translation/horizontal", "jigsaw/permutation"]}
    for ts, hs in heads.items():
        rows = [r for r in result.rows if r["task_set"] == ts]
        assert sorted({r["step"] for r in rows}) == [0, 2, 3]  # before training, every 2 steps, the end
        assert len(rows) == 3 * len(hs) * 2
        assert {r["head"] for r in rows} == set(hs) and {r["split"] for r in rows} == {"normal", "anomaly"}
    for r in result.rows:
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["epoch"] == pytest.approx(r["step"] / 2)  # 8 images, batch 4: 2 steps per epoch
        views = {"rotation": 4, "translation": 9, "jigsaw": 3}[r["head"].split("/")[0]]
        n = 3 if r["split"] == "normal" else 4
        assert r["accuracy"] * n * views == pytest.approx(round(r["accuracy"] * n * views), abs=1e-6)


def test_final_weights_equal_a_plain_fit():
    """The evaluation loop trains exactly as Detector.fit (batches, views, dropout, schedule)."""
    x = random_uint8(6, 16, 16, seed=4)
    res = diagnose(x, x[:2], None, tasks=["rotation"], preset="tiny", steps=3, eval_every=1, overrides=SMALL,
                   progress=False, keep_detectors=True)
    assert {r["split"] for r in res.rows} == {"normal"}
    det = fgad.Detector("tiny", tasks=("rotation",), steps=3, **SMALL).fit(x, progress=False)
    got = res.detectors["rotation"].net.state_dict()
    for k, v in det.net.state_dict().items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0)


def test_accuracy_against_a_per_view_reference(result):
    det = result.detectors["rotation"]
    x = random_uint8(5, 16, 16, seed=5)
    acc = head_accuracies(det.net, det.tasks, to_tensor(x[..., None], 16), det.config, torch.device("cpu"))
    xt = to_tensor(x[..., None], 16)
    correct = 0
    with torch.inference_mode():
        det.net.eval()
        for i in range(5):
            for r in range(4):
                view = torch.rot90(xt[i], r, dims=(1, 2))[None]
                correct += int(det.net({"rotation": view})["rotation"].argmax(1).item() == r)
    assert acc == {"rotation/rotation": pytest.approx(correct / 20)}


@pytest.mark.slow
def test_csv_and_png_are_written(result, tmp_path):
    csv_path, png_path = result.write(tmp_path / "diag")
    rows = list(csv.reader(io.StringIO(csv_path.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + len(result.rows)
    assert all(0.0 <= float(r[5]) <= 1.0 for r in rows[1:])
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = result.table()
    assert "translation+jigsaw" in table and "jigsaw/permutation" in table


def test_task_set_parsing_and_errors():
    assert parse_task_sets("rotation, geometric+jigsaw") == [("rotation",), ("geometric", "jigsaw")]
    assert parse_task_sets([("jigsaw",), "translation"]) == [("jigsaw",), ("translation",)]
    for bad in ("nope", "rotation+rotation", "rotation,rotation", "", "jigsaw+"):
        with pytest.raises(fgad.ConfigError):
            parse_task_sets(bad)
    x = random_uint8(4, 16, 16)
    with pytest.raises(fgad.InputError, match="training images"):
        diagnose(x, random_uint8(2, 12, 12), None, tasks="rotation", preset="tiny", overrides=SMALL, progress=False)
    with pytest.raises(fgad.ConfigError):
        diagnose(x, x, None, tasks="rotation", preset="tiny", eval_every=0, overrides=SMALL, progress=False)
