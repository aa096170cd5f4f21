"""``benchmarks/scoring_speed.py`` runs each detector on a few images and says which components and
mirrors each row timed (not a timing test)."""

from __future__ import annotations

import json

from bench_helpers import load_script


def test_scoring_speed_rows_name_what_each_detector_scores(tmp_path, capsys):
    mod = load_script("scoring_speed")
    out = tmp_path / "speed.json"
    args = ["--preset", "tiny", "--side", "16", "--train", "10", "--test", "4", "--fit-steps", "1",
            "--repeat", "1", "--json", str(out)]
    assert mod.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("| grey |") == 4 and printed.count("| colour |") == 4
    rows = json.loads(out.read_text())["rows"]
    by = {(r["channels"], r["config"]): r for r in rows}
    paper, bare, pixel, default = (name for name, _ in mod.CONFIGS)
    assert by[(3, paper)]["components"] == ["geometric", "jigsaw"] and by[(3, paper)]["bank"] == 0
    assert by[(3, pixel)]["components"][-1] == "pixel_knn" and "pixel_knn" not in by[(3, bare)]["components"]
    # The mirror applies to colour only, and then the bank holds each training normal twice.
    assert by[(3, default)]["mirrors"] and not by[(1, default)]["mirrors"]
    assert by[(3, default)]["bank"] == 2 * by[(3, pixel)]["bank"] == 2 * 8
    assert all(r["images_per_s"] > 0 and r["test_images"] == 4 for r in rows)
