"""The scale benchmark at a tiny size, so it cannot rot: real generated PNG folders (hidden and bad
files included), real ingests whose counts are checked against what was written, the decode-only
baseline, the driver's memory sampled. No timing assertions."""

import json
import os

import pytest

from sparkdl_pipe.bench.scale import ScaleConfig, parse_sizes, run_scale_benchmark, save_scale_result
from sparkdl_pipe.errors import UserInputError


def test_sizes_parse_and_bad_sizes_are_one_line():
    assert parse_sizes("1M,100k, 300000") == (100_000, 300_000, 1_000_000)
    with pytest.raises(UserInputError, match="--scale-sizes"):
        parse_sizes("a lot")
    with pytest.raises(UserInputError, match="at least 1000 files"):
        ScaleConfig(sizes=(10,))


def test_tiny_scale_benchmark_reconciles_and_writes_json_and_markdown(spark, tmp_path):
    cfg = ScaleConfig(sizes=(400, 800), folders=40, labels=4, hidden_every=4, repeats=2)
    res = run_scale_benchmark(spark, cfg, str(tmp_path / "work"))
    sizes = res.details["sizes"]
    assert list(sizes) == ["400", "800"] and len(res.rows) == 2
    for n, s in sizes.items():
        # 40 folders / 4 = 10 .DS_Store + _SUCCESS + .cache/class-0/thumb.png; 10 of each bad kind
        assert s["counts"] == {"accepted": int(n), "hidden": 12, "files_seen": int(n) + 30 + 12,
                               "rejects": {"empty_file": 10, "missing_file": 10, "undecodable_image": 10}}
        assert s["hidden_table"] is None and s["manifest_examples"] == 12  # 20 or fewer: all named, no table
        assert s["ingest_seconds"] > s["list_and_count_seconds"] > 0 and s["decode_only_per_s"] > 0
        assert len(s["pairs"]) == 2 and s["ratio_range"][0] <= s["ratio"] <= s["ratio_range"][1]
        assert s["driver_peak_rss_mb"]["python"] > 50 and s["driver_peak_rss_mb"]["jvm"] > 100  # both sampled
    assert res.rows[-1].goal == 0.8 and res.rows[0].goal is None
    assert set(res.details["goals"]) >= {"memory_growth_mb", "time_growth", "ratio_at_largest", "memory_met"}
    # the generated folders are kept and reused (generation reported once)
    again = run_scale_benchmark(spark, ScaleConfig(sizes=(400,), folders=40, labels=4, hidden_every=4, repeats=1),
                                str(tmp_path / "work"))
    assert again.details["sizes"]["400"]["generated_before"] is True
    jpath, mpath = save_scale_result(res, str(tmp_path / "out"))
    assert json.load(open(jpath))["details"]["sizes"]["800"]["counts"]["files_seen"] == 842
    md = open(mpath).read()
    assert md.count("\n| ") == 3 and "Goals:" in md and os.path.basename(mpath) == "bench-scale.md"
