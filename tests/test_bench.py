"""The benchmark at a tiny size, so it cannot rot. No timing assertions: rates are only checked to exist."""

import json
import math

from sparkdl_pipe.bench.run import SIZES, BenchResult, BenchRow, run_benchmark, save_result


def test_a_row_of_pairs_shows_median_rates_and_the_median_of_the_pairs_ratios():
    # Rates drift between pairs; each pair's ratio is what is compared, and its range is shown.
    pairs = [(700.0, 500.0), (900.0, 400.0), (400.0, 250.0)]  # ratios 1.4, 2.25, 1.6
    row = BenchRow.from_pairs("3. Horovod", "job", pairs, "solo", 1.7)
    assert (row.product, row.baseline) == (700.0, 400.0)  # median rates
    assert row.ratio == 1.6  # the median pair ratio, not 700 / 400
    assert row.ratio_text() == "1.60x (1.40-2.25, 3 pairs)"
    assert row.to_dict()["met"] is False and row.to_dict()["pairs"] == pairs
    single = BenchRow("4. scoring", "job", 300.0, 100.0, "udf", 10.0)
    assert single.ratio == 3.0 and single.ratio_text() == "3.00x" and single.to_dict()["met"] is False
    # A ratio just under its goal never shows as the goal itself.
    assert BenchRow("3. Horovod", "job", 1.6979, 1.0, "solo", 1.7).ratio_text() == "1.69x"
    assert BenchRow("x", "job", 0.29, 1.0, "b").ratio_text() == "0.29x"
    md = BenchResult({"date": "d", "cpu": "c", "cores": 2, "memory_gib": 24, "size": "s"}, {"repeats": 3},
                     [row, single]).markdown()
    assert "| 1.60x (1.40-2.25, 3 pairs) | ≥ 1.7x ❌ |" in md and "| 3.00x | ≥ 10x ❌ |" in md
    # A goal the machine itself cannot reach says so: the ceiling measured beside it is shown.
    row.ceiling = 1.6649
    assert row.to_dict()["goal_within_ceiling"] is False
    assert "| ≥ 1.7x ❌ (limit here 1.66x) |" in BenchResult(
        {"date": "d", "cpu": "c", "cores": 2, "memory_gib": 24, "size": "s"}, {"repeats": 3}, [row]).markdown()


def test_tiny_benchmark_measures_every_stage_and_writes_json_and_markdown(spark, tmp_path):
    cfg = SIZES["tiny"]
    res = run_benchmark(spark, cfg, str(tmp_path / "work"), size="tiny")
    stages = {r.stage for r in res.rows}
    assert stages == {"1. ingest", "2. input", "3. Horovod", "4. scoring"}
    for r in res.rows:
        assert r.product > 0 and r.baseline > 0 and math.isfinite(r.ratio), r
    assert sorted(r.goal for r in res.rows if r.goal is not None) == [0.6, 0.7, 0.9, 0.9, 1.7, 10.0]
    # Every goal against a baseline run beside it was measured as cfg.repeats side-by-side pairs.
    for r in res.rows:
        if r.goal is not None and r.goal != 10.0:
            assert len(r.pairs) == cfg.repeats, r
    # Growth: three sizes each, and the scoring job saw exactly the train split of each dataset.
    g = res.details["growth"]
    assert g["ingest"]["rows"] == [cfg.rows, cfg.rows * 2, cfg.rows * 4]
    assert len(g["ingest"]["seconds"]) == 3 and len(g["scoring"]["seconds"]) == 3
    assert g["scoring"]["rows"][0] < g["scoring"]["rows"][1] < g["scoring"]["rows"][2] < cfg.rows * 4
    # Both training input modes ran on 2 ranks over MPI (auto, here), the cached one over Gloo too,
    # and two independent 1-thread processes ran beside each other as the ceiling.
    tr = res.details["training"]
    assert set(tr) >= {"mpi, streamed", "mpi, cached, default", "gloo, cached", "in_memory_1_thread",
                       "in_memory_n_threads", "independent_1_thread"}
    for k in ("mpi, streamed", "mpi, cached, default", "gloo, cached"):
        assert len(tr[k]["history"]) == cfg.epochs and tr[k]["paired_1_thread"]["per_s"] > 0  # its own baseline
    assert [len(a) for a in tr["independent_1_thread"]] == [cfg.num_proc] * cfg.repeats
    assert len(tr["ceiling_pairs"]) == cfg.repeats
    # The goal row carries that ceiling (n processes together over one), shown beside its goal.
    hvd_row = next(r for r in res.rows if r.goal == 1.7)
    assert hvd_row.ceiling == next(r for r in res.rows if r.measure.startswith("limit:")).ratio > 0
    assert "(limit here " in res.markdown()
    assert res.details["memory"]["training rank"] > 50  # MiB: the ranks were seen by the sampler
    assert res.details["scoring"]["row_udf"]["rows"] == cfg.udf_rows

    jpath, mpath = save_result(res, str(tmp_path / "out"))
    doc = json.loads(open(jpath).read())
    assert len(doc["rows"]) == len(res.rows) and doc["machine"]["cores"] >= 1
    assert all("ratio" in r and "met" in r for r in doc["rows"])
    md = open(mpath).read()
    assert md.count("\n| ") == len(res.rows) + 1 and "Growth" in md and "Peak resident memory" in md
