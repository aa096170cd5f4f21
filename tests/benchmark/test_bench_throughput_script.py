"""``benchmarks/throughput.py`` runs (tiny network, CPU, one step) and counts FLOPs right.

Not a timing test: it checks the script's arithmetic and output, not the machine's speed.
"""

from __future__ import annotations

import json

import pytest

from bench_helpers import load_script


@pytest.fixture(scope="module")
def throughput():
    return load_script("throughput")


def conv(cin: int, cout: int, k: int, side: int) -> int:
    """FLOPs (2 per multiply-add) of a k×k convolution with a side×side output."""
    return 2 * cin * cout * k * k * side * side


def wrn10_1_flops(channels: int, side: int) -> int:
    """Backbone of WRN-10-1 (one block per group: widths 16, 32, 64; strides 1, 2, 2)."""
    s1, s2, s3 = side, side // 2, side // 4
    return (conv(channels, 16, 3, s1)
            + conv(16, 16, 3, s1) + conv(16, 16, 3, s1)
            + conv(16, 32, 3, s2) + conv(32, 32, 3, s2) + conv(16, 32, 1, s2)
            + conv(32, 64, 3, s3) + conv(64, 64, 3, s3) + conv(32, 64, 1, s3))


@pytest.mark.slow
def test_throughput_script_measures_and_writes_json(throughput, tmp_path, capsys):
    out = tmp_path / "tp.json"
    rc = throughput.main(["--preset", "tiny", "--image-size", "16", "--channels", "1", "--device", "cpu",
                          "--batch", "2", "--score-batch", "2", "--score-images", "2", "--score-repeat", "1",
                          "--steps", "1", "--warmup", "0", "--threads", "1", "--peak-size", "64",
                          "--peak-repeat", "1", "--channels-last", "--cpu-bf16-probe", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    for row in ("train throughput", "pretext views of a batch", "scoring throughput", "FLOPs per view",
                "matmul peak (measured)", "utilisation vs fp32 peak", "load average", "bf16 autocast on this CPU"):
        assert row in printed
    r = json.loads(out.read_text())
    assert r["network"] == "WRN-10-1" and r["views_per_image"] == 39 and r["batch_views"] == 78
    assert r["channels_last"] is True and r["precision"] == "fp32"
    # Forward FLOPs per view: the backbone plus the average dense layer (2 views of each task).
    heads = (2 * 64 * 10 + 2 * 64 * 3) * 2 / 4
    assert r["flops_per_view_forward"] == pytest.approx(wrn10_1_flops(1, 16) + heads)
    # Backward ≈ twice the forward (no input gradient for the first convolution).
    assert 2.9 < r["flops_per_view_train"] / r["flops_per_view_forward"] <= 3.0
    assert r["train_views_per_s"] == pytest.approx(78 / r["train_step_s"])
    assert r["achieved_train_flops_per_s"] == pytest.approx(r["flops_per_view_train"] * r["train_views_per_s"])
    assert r["utilisation_train"] == pytest.approx(r["achieved_train_flops_per_s"] / r["peak_flops_per_s"]["fp32"])
    assert r["score_views_per_s"] == pytest.approx(39 * r["score_images_per_s"])
    assert 0 < r["views_share_of_step"] < 1
    # The table script turns the JSON into one Markdown row.
    table_mod = load_script("throughput_table")
    capsys.readouterr()
    assert table_mod.main([str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| WRN-10-1, 1 | after: channels-last, eager | ")
    assert f"{r['utilisation_train']:.0%} / {r['utilisation_score']:.0%}" in lines[2]
    probe = r["cpu_bf16_probe"]
    assert probe["views"] == 2 * 4 * 2 and probe["fp32_s"] > 0 and probe["bf16_s"] > 0  # 2 tasks × 4 batches of 2


def test_quick_preset_shortcut_takes_the_presets_network(throughput):
    from fgad.core.config import PRESETS

    args = throughput.build_parser().parse_args(["--preset", "quick", "--device", "cpu", "--no-peak"])
    det, cfg, _ = throughput.build(args)
    assert (cfg.depth, cfg.width, cfg.batch_size, cfg.channels_last) == (
        PRESETS["quick"]["depth"], PRESETS["quick"]["width"], PRESETS["quick"]["batch_size"],
        PRESETS["quick"]["channels_last"])
    args = throughput.build_parser().parse_args(["--device", "cpu"])
    _, cfg, _ = throughput.build(args)
    assert (cfg.depth, cfg.width, cfg.batch_size, cfg.image_size) == (16, 4, 32, 32)  # the paper's
