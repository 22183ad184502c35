"""run_benchmark: every stage of the product measured side by side with its limit or a baseline.

Each table row is a ratio of two rates measured in the same run, on the same data and the same
cores; absolute rates are in the JSON for reference only (these machines are shared and noisy).

Runs on: driver. Baselines run in child processes (:mod:`sparkdl_pipe.bench.baselines`), the
product through its own ``run_*`` entry points on the given SparkSession.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from sparkdl_pipe._env import worker_env
from sparkdl_pipe.bench import data as bdata
from sparkdl_pipe.bench.baselines import run_baseline, run_baselines_together
from sparkdl_pipe.bench.memory import PythonWorkerMemory
from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig, TrainConfig
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.preprocess.spec import ImageSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    """How big the benchmark is. ``rows`` is the 1x PNG input; growth runs use 2x and 4x of it."""

    rows: int = 10_000
    jpegs: int = 16_000
    jpeg_size: int = 256
    jpeg_target: int = 64
    steps: int = 150
    epochs: int = 4
    batch_size: int = 64
    udf_rows: int = 2_000
    num_proc: int = 2
    seed: int = 0
    #: Side-by-side pairs (product, then its baseline) measured for each row with a goal; the row
    #: shows the median rates and the median of the pairs' ratios, and the JSON keeps every pair.
    repeats: int = 3

    def __post_init__(self) -> None:
        for k in ("rows", "jpegs", "steps", "batch_size", "udf_rows", "num_proc", "repeats"):
            if getattr(self, k) < 1:
                raise UserInputError(f"bench {k}", "at least 1", getattr(self, k))
        if self.epochs < 2:
            raise UserInputError("bench epochs", "at least 2 (the first epoch is warm-up)", self.epochs)


SIZES = {
    "tiny": BenchConfig(rows=160, jpegs=24, steps=2, epochs=2, udf_rows=40, repeats=1),
    "small": BenchConfig(rows=3_000, jpegs=500, steps=60, epochs=3, udf_rows=500, repeats=2),
    "full": BenchConfig(),
}


def _cut(ratio: float) -> str:
    """A ratio cut (not rounded) to two decimals: ``1.69`` for 1.6979."""
    return f"{math.floor(ratio * 100 + 1e-9) / 100:.2f}" if math.isfinite(ratio) else "n/a"


@dataclass
class BenchRow:
    stage: str
    measure: str
    product: float
    baseline: float
    baseline_name: str
    goal: float | None = None
    unit: str = "rows/s"
    #: (product, baseline) rates of each side-by-side pair, when the row was measured more than once
    pairs: list[tuple[float, float]] = field(default_factory=list)
    #: The most any product could reach in this run (for Horovod: n independent processes over one,
    #: measured beside it); shown next to the goal so a miss the machine forces reads as such.
    ceiling: float | None = None

    @classmethod
    def from_pairs(cls, stage: str, measure: str, pairs: list[tuple[float, float]], baseline_name: str,
                   goal: float | None = None, unit: str = "rows/s") -> BenchRow:
        """A row of the median rates of ``pairs``; its ratio is the median of the pairs' ratios."""
        return cls(stage, measure, float(np.median([p for p, _ in pairs])), float(np.median([b for _, b in pairs])),
                   baseline_name, goal, unit, list(pairs))

    @property
    def ratio(self) -> float:
        if self.pairs:
            return float(np.median([p / b if b else float("nan") for p, b in self.pairs]))
        return self.product / self.baseline if self.baseline else float("nan")

    def ratio_text(self) -> str:
        """``1.74x``, and for several pairs their range: ``1.74x (1.62-1.80, 3 pairs)``.

        Cut, not rounded, to two decimals: 1.698 shows as 1.69x, not as a 1.70x that misses 1.7.
        """
        if len(self.pairs) < 2:
            return f"{_cut(self.ratio)}x"
        each = [p / b for p, b in self.pairs if b]
        return f"{_cut(self.ratio)}x ({_cut(min(each))}-{_cut(max(each))}, {len(self.pairs)} pairs)"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["met"] = None if self.goal is None else bool(self.ratio >= self.goal)
        if self.goal is not None and self.ceiling is not None:
            d["goal_within_ceiling"] = bool(self.ceiling >= self.goal)
        return d


@dataclass
class BenchResult:
    machine: dict
    config: dict
    rows: list[BenchRow] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"machine": self.machine, "config": self.config, "rows": [r.to_dict() for r in self.rows],
                "details": self.details, "seconds": self.seconds}

    def markdown(self) -> str:
        m = self.machine
        lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB, no GPU), "
                 f"size `{m['size']}`, {self.seconds:.0f} s in all. A row with a goal is measured as "
                 f"{self.config.get('repeats', 1)} pairs, the product and its baseline run back to back: its "
                 "rates are the medians, its ratio the median of the pairs' ratios, with their range.", "",
                 "| stage | product | baseline (same run) | product rate | baseline rate | ratio | goal |",
                 "|---|---|---|---:|---:|---:|---|"]
        for r in self.rows:
            d = r.to_dict()
            goal = "" if r.goal is None else f"≥ {r.goal:g}x {'✅' if d['met'] else '❌'}"
            if goal and r.ceiling is not None:
                goal += f" (limit here {_cut(r.ceiling)}x)"
            lines.append(f"| {r.stage} | {r.measure} | {r.baseline_name} | {r.product:,.0f} {r.unit} | "
                         f"{r.baseline:,.0f} {r.unit} | {r.ratio_text()} | {goal} |")
        mem = self.details.get("memory", {})
        if mem:
            lines += ["", "Peak resident memory of one Python worker / rank (MiB): " + ", ".join(
                f"{k} {v:,.0f}" for k, v in mem.items())]
        growth = self.details.get("growth", {})
        if growth:
            lines += ["", "Growth (seconds at 1x / 2x / 4x input; linear cost would be 1 : 2 : 4): " + "; ".join(
                f"{k} {' / '.join(f'{s:.1f}' for s in v['seconds'])} (4x/1x = {v['seconds'][-1] / v['seconds'][0]:.2f})"
                for k, v in growth.items())]
        return "\n".join(lines)


def machine_info(size: str) -> dict:
    import psutil

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from sparkdl_pipe.manifest import versions

    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30),
            "python": platform.python_version(), "size": size, "versions": versions()}


def side_by_side(repeats: int, product: Callable[[], float], baseline: Callable[[], float],
                 baseline_first: bool = False) -> list[tuple[float, float]]:
    """``repeats`` (product, baseline) rate pairs, the two measured back to back each time."""
    pairs = []
    for _ in range(repeats):
        if baseline_first:
            b = baseline()
            p = product()
        else:
            p = product()
            b = baseline()
        pairs.append((p, b))
    return pairs


def _steady_rate(history: list[dict]) -> float:
    rates = [h["samples_per_s"] for h in history[1:]] or [h["samples_per_s"] for h in history]
    return float(np.median(rates))


def run_benchmark(spark, cfg: BenchConfig, workdir: str, size: str = "custom") -> BenchResult:
    """Measure ingest, input pipeline, Horovod scaling, scoring, memory and growth. Driver.

    >>> res = run_benchmark(spark, SIZES["small"], "/tmp/bench")  # doctest: +SKIP
    >>> print(res.markdown())  # doctest: +SKIP
    """
    from sparkdl_pipe.bench.row_udf import row_udf_scoring_seconds
    from sparkdl_pipe.driver.ingest import run_ingest_images
    from sparkdl_pipe.driver.score import run_scoring
    from sparkdl_pipe.driver.train import run_training
    from sparkdl_pipe.executor.data import read_split
    from sparkdl_pipe.model_card import load_model_info

    t_all = time.time()
    os.makedirs(workdir, exist_ok=True)
    res = BenchResult(machine_info(size), asdict(cfg))
    cores = int(res.machine["cores"] or 1)
    png_spec = ImageSpec(28, 28, 1)
    jpg_spec = ImageSpec(cfg.jpeg_target, cfg.jpeg_target, 3)

    # Inputs: PNG folders at 1x, 2x, 4x (each a superset of the previous) and the JPEG folder.
    x, y, source = bdata.fashion_arrays(cfg.rows * 4, seed=cfg.seed)
    res.details["data"] = source
    log.info("bench: writing %d PNGs and %d JPEGs under %s", cfg.rows * 4, cfg.jpegs, workdir)
    png_dirs = {}
    for mult in (1, 2, 4):
        d = os.path.join(workdir, f"png-{mult}x")
        if not os.path.isdir(d):
            bdata.write_pngs(x[: cfg.rows * mult], y[: cfg.rows * mult], d)
        png_dirs[mult] = d
    jpg_dir = os.path.join(workdir, "jpeg")
    if not os.path.isdir(jpg_dir):
        bdata.write_jpegs(x[: cfg.jpegs], y[: cfg.jpegs], jpg_dir, size=cfg.jpeg_size, seed=cfg.seed)

    # 1. Ingest vs decode + resize alone (one process per core), and growth. An untimed ingest
    # first starts the Python workers, so no timed line pays for that cold start, and every folder
    # is read once so no timed line pays for the disk either.
    for d in (*png_dirs.values(), jpg_dir):
        bdata.read_all(d)
    # Freshly written inputs (about 1 GB at size full) are flushed first: otherwise the kernel's
    # writeback of them can throttle the Parquet writes of the first timed ingests (NOTES change 25).
    t_sync = time.perf_counter()
    os.sync()
    log.info("bench: inputs flushed to disk in %.1fs", time.perf_counter() - t_sync)
    run_ingest_images(spark, IngestImagesConfig(png_dirs[1], os.path.join(workdir, "out", "warm-up"), png_spec,
                                                overwrite=True))
    jpeg_pairs = side_by_side(
        cfg.repeats,
        lambda: cfg.jpegs / run_ingest_images(spark, IngestImagesConfig(
            jpg_dir, os.path.join(workdir, "out", "ds-jpeg"), jpg_spec, overwrite=True)).seconds,
        lambda: run_baseline("decode_only", root=jpg_dir, spec=jpg_spec.to_dict(), processes=cores)["per_s"])
    res.rows.append(BenchRow.from_pairs("1. ingest", f"ingest job, {cfg.jpegs:,} {cfg.jpeg_size}px JPEGs -> "
                                        f"{cfg.jpeg_target}px", jpeg_pairs, f"read+decode+resize only, {cores} "
                                        "processes", 0.6, "images/s"))
    ingest_s = []
    datasets = {}
    for mult in (1, 2, 4):
        out = os.path.join(workdir, "out", f"ds-{mult}x")
        r = run_ingest_images(spark, IngestImagesConfig(png_dirs[mult], out, png_spec, overwrite=True))
        ingest_s.append(r.seconds)
        datasets[mult] = out
    n4 = cfg.rows * 4
    dec = run_baseline("decode_only", root=png_dirs[4], spec=png_spec.to_dict(),
                       processes=cores)
    res.rows.insert(0, BenchRow("1. ingest", f"ingest job, {n4:,} 28x28 PNGs", n4 / ingest_s[-1],
                                dec["per_s"], f"read+decode only, {cores} processes", None, "images/s"))

    # The training data: the 4x dataset's train split, also as an in-memory array.
    from sparkdl_pipe.manifest import load_dataset_info

    info = load_dataset_info(datasets[4])
    train_url = info.split_url("train")
    xs, ys = zip(*read_split(train_url, png_spec.shape), strict=True)
    arr_x, arr_y = np.concatenate(xs), np.concatenate(ys)
    npz = os.path.join(workdir, "train.npz")
    np.savez(npz, x=arr_x, y=arr_y)
    common: dict[str, Any] = {"model": "cnn", "batch_size": cfg.batch_size, "steps": cfg.steps, "epochs": cfg.epochs}

    # 2. Input pipeline.
    product_env = worker_env(dict(os.environ))  # what the product's ranks and workers start with
    rd = run_baseline("read_petastorm", env=product_env, url=train_url, shape=list(png_spec.shape),
                      batch_size=cfg.batch_size, steps=cfg.steps * 2, buffer=4096)
    mem1 = run_baseline("train_in_memory", data=npz, threads=1, **common)
    res.rows.append(BenchRow("2. input", "Petastorm -> tf.data, no model, 1 rank", rd["per_s"], mem1["per_s"],
                             "CNN training step rate it must feed (1 thread)", None, "samples/s"))
    for cached, how in ((False, "streamed every epoch"), (True, "shard cached after 1st read (default)")):
        def petastorm_rate(cached: bool = cached) -> float:
            return run_baseline("train_petastorm", env=product_env, url=train_url, shape=list(png_spec.shape),
                                cached=cached, num_classes=len(info.labels), threads=1, buffer=4096,
                                **common)["per_s"]

        pairs = side_by_side(cfg.repeats, petastorm_rate, lambda: run_baseline(
            "train_in_memory", data=npz, threads=1, **common)["per_s"], baseline_first=True)
        res.rows.append(BenchRow.from_pairs("2. input", f"CNN training, 1 thread, Petastorm {how}", pairs,
                                            "same model fed from in-memory arrays, run just before", 0.9,
                                            "samples/s"))
        res.details.setdefault("input", {})["cached" if cached else "streamed"] = {"pairs": pairs}

    # 3. Horovod scaling: the product's training job with num_proc ranks, one thread each, over the
    # default transport (auto: MPI here) and over Gloo. Beside the default job, each time: num_proc
    # independent 1-thread processes at once, which is what the ranks could do if exchanging
    # gradients cost nothing (the cores' own ceiling for data parallelism), then the 1-thread run.
    mem2 = run_baseline("train_in_memory", data=npz, threads=cores, **common)
    train_mem = 0.0
    ceiling: list[tuple[float, float]] = []  # (num_proc independent 1-thread processes, 1 thread)
    together: list[list[dict]] = []  # each of those runs, one result per process
    for cache_mb, transport, how, default in ((0, "auto", "streamed", False),
                                              (TrainConfig.cache_mb, "auto", "cached, default", True),
                                              (TrainConfig.cache_mb, "gloo", "cached", False)):
        # Each job is paired with a 1-thread run just before it: the rates of these shared machines
        # drift by tens of percent within minutes, the ratio of neighbours much less.
        pairs = []
        for _ in range(cfg.repeats if default else 1):
            if default:
                alone = run_baselines_together(cfg.num_proc, "train_in_memory", data=npz, threads=1, **common)
            solo = run_baseline("train_in_memory", data=npz, threads=1, **common)
            with PythonWorkerMemory() as tm:
                tr = run_training(spark, TrainConfig(
                    datasets[4], os.path.join(workdir, "out", "model"), model="cnn", epochs=cfg.epochs,
                    batch_size=cfg.batch_size, num_proc=cfg.num_proc, steps_per_epoch=cfg.steps,
                    threads_per_rank=1, warmup_epochs=0, seed=cfg.seed, overwrite=True, cache_mb=cache_mb,
                    transport=transport))
            train_mem = max(train_mem, tm.peak_process_mb)
            pairs.append((_steady_rate(tr.history), solo["per_s"]))
            if default:
                together.append(alone)
                ceiling.append((sum(a["per_s"] for a in alone), solo["per_s"]))
        row = BenchRow.from_pairs("3. Horovod", f"training job, {cfg.num_proc} ranks x 1 thread, {tr.transport}, "
                                  f"input {how}", pairs, "1 process, 1 thread, in-memory, run just before",
                                  1.7 if default else None, "samples/s")
        res.rows.append(row)
        what, hvd_rate = row.measure, row.product
        if default:
            lim = BenchRow.from_pairs("3. Horovod", f"limit: {cfg.num_proc} independent 1-thread processes at once, "
                                      "no exchange", ceiling, "1 process, 1 thread, in-memory, run just after",
                                      None, "samples/s")
            row.ceiling = lim.ratio
            res.rows.append(lim)
            of_ceiling = [(job, lim_rate) for (job, _), (lim_rate, _) in zip(pairs, ceiling, strict=True)]
            res.rows.append(BenchRow.from_pairs("3. Horovod", what, of_ceiling, "that limit, measured beside it",
                                                None, "samples/s"))
            res.rows.append(BenchRow("3. Horovod", what, hvd_rate, mem2["per_s"], f"1 process, {cores} threads, "
                                     "in-memory", None, "samples/s"))
        res.details.setdefault("training", {})[f"{tr.transport}, {how}"] = {
            "history": tr.history, "test_accuracy": tr.test_accuracy, "paired_1_thread": solo, "pairs": pairs}
    res.details["training"].update({"independent_1_thread": together, "ceiling_pairs": ceiling})
    res.details["training"].update({"in_memory_1_thread": mem1, "in_memory_n_threads": mem2})

    # 4. Scoring: the product's job over preprocessed splits at 1x, 2x, 4x vs model.predict and a row UDF.
    model = load_model_info(os.path.join(workdir, "out", "model"))
    score_s, score_rows, score_mem = [], [], []

    def score(mult: int, name: str):
        split = load_dataset_info(datasets[max(mult, 1)]).split_url("train")
        with PythonWorkerMemory() as smem:
            s = run_scoring(spark, ScoreConfig(model.url, split, os.path.join(workdir, "out", name), overwrite=True))
        return s, smem.peak_process_mb

    for mult in (0, 1, 2, 4):  # 0: a first, untimed 1x run that starts the workers and loads the model
        s, peak = score(mult, f"scores-{mult}x")
        if mult == 0:
            res.details["scoring_cold_start"] = {"rows": s.input_rows, "seconds": s.seconds}
            continue
        score_s.append(s.seconds)
        score_rows.append(s.input_rows)
        score_mem.append(peak)

    def scoring_rate() -> float:
        again = score(4, "scores-4x-again")[0]
        return again.input_rows / again.seconds

    score_pairs = side_by_side(cfg.repeats, scoring_rate, lambda: run_baseline(
        "predict_in_memory", model_path=model.model_path, data=npz, threads=cores, batch_size=1024)["per_s"])
    pred1 = run_baseline("predict_in_memory", model_path=model.model_path, data=npz, threads=1, batch_size=1024)
    srow = BenchRow.from_pairs("4. scoring", f"scoring job, {score_rows[-1]:,} stored rows", score_pairs,
                               f"model.predict in memory, 1 process, {cores} threads, run just after", 0.7)
    res.rows.append(srow)
    score_rate = srow.product
    udf_rows, udf_warm = cfg.udf_rows, max(2, cores * 2)
    row_udf_scoring_seconds(spark, train_url, model.model_path, model.model_id, png_spec.shape, udf_warm)
    n_udf, udf_secs = row_udf_scoring_seconds(spark, train_url, model.model_path, model.model_id,
                                              png_spec.shape, udf_rows)
    res.rows.append(BenchRow("4. scoring", f"scoring job, {score_rows[-1]:,} stored rows", score_rate,
                             n_udf / udf_secs, f"row-at-a-time Spark UDF ({n_udf:,} rows)", 10.0))
    res.details["scoring"] = {"predict_1_thread": pred1, "pairs": score_pairs,
                              "row_udf": {"rows": n_udf, "seconds": udf_secs}}

    # 5. Memory and 6. growth.
    res.details["memory"] = {"training rank": train_mem,
                             "scoring worker 1x": score_mem[0], "scoring worker 4x": score_mem[-1]}
    res.details["growth"] = {
        "ingest": {"rows": [cfg.rows * m for m in (1, 2, 4)], "seconds": ingest_s},
        "scoring": {"rows": score_rows, "seconds": score_s},
    }
    res.seconds = time.time() - t_all
    return res


def save_result(res: BenchResult, out_dir: str) -> tuple[str, str]:
    """Write ``bench.json`` and ``bench.md`` into ``out_dir``; returns both paths. Driver."""
    os.makedirs(out_dir, exist_ok=True)
    jpath, mpath = os.path.join(out_dir, "bench.json"), os.path.join(out_dir, "bench.md")
    with open(jpath, "w") as f:
        json.dump(res.to_dict(), f, indent=2, default=float)
    with open(mpath, "w") as f:
        f.write(res.markdown() + "\n")
    return jpath, mpath

