"""``benchmarks/decoding.py`` runs on a few files and reports both readers (not a timing test)."""

from __future__ import annotations

import json

from bench_helpers import load_script


def test_decoding_script_prints_a_table_and_writes_json(tmp_path, capsys):
    mod = load_script("decoding")
    out = tmp_path / "dec.json"
    assert mod.main(["--files", "5", "--side", "20", "--size", "8", "--workers", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| read_images (own size) |" in printed and "| read_files (resize to 8) |" in printed
    rows = json.loads(out.read_text())["rows"]
    assert [r["files"] for r in rows] == [5, 5] and all(r["threads"] == 2 and r["speed_up"] > 0 for r in rows)
    assert mod.main(["--files", "0"]) == 2
