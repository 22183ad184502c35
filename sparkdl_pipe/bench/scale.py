"""The scale benchmark (``sparkdl-pipe bench --size scale``): folder inputs of 100,000 to 1,000,000
tiny real images, listed and ingested, with the driver's memory watched.

For each size it reports the listing time, the ingest time and rate, the ingest rate over the
decode-only loop on the same files (one process per core), and the peak resident memory of the
driver: the Python process and its JVM (in local mode the JVM is also the executor), sampled from
``/proc``. The generator's cost is reported apart; generated folders are kept and reused.

Inputs: Fashion-MNIST training images (or scikit-learn's digits without the Debian package), each
distinct image PNG-encoded once and its bytes written under many names, in ``folders`` leaf
folders ``class-<label>/shard-<k>/``, by one process per core. Every input also holds hidden files
(more than a manifest names, so the full list is written), empty files, broken symlinks and
truncated PNGs, and the ingest's counts are checked against what was written, exactly.

Runs on: driver (generation in child processes; the baseline in child processes).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context

import numpy as np

from sparkdl_pipe.errors import UserInputError

log = logging.getLogger(__name__)

#: Bumped when the generated layout changes (a folder of another version is written again).
LAYOUT_VERSION = 1
#: Files of each bad kind per input, and the reject reason each must get.
BAD_FILES = {"empty": "empty_file", "dangling": "missing_file", "truncated": "undecodable_image"}


@dataclass(frozen=True)
class ScaleConfig:
    """Sizes (good image files per input), leaf folders, labels, and the extras of every input."""

    sizes: tuple[int, ...] = (100_000, 300_000, 1_000_000)
    folders: int = 1000
    labels: int = 10
    bad_each: int = 10
    #: one ``.DS_Store`` in every ``hidden_every``-th folder, plus ``_SUCCESS`` and ``.cache/`` at the root
    hidden_every: int = 10
    goal_ratio: float = 0.8
    goal_memory_mb: float = 200.0
    goal_time_growth: float = 11.0
    #: (ingest, decode-only) pairs per size, measured back to back: the ratio is the pairs' median,
    #: so a change in the machine's load between the two halves of one pair moves one pair, not the result
    repeats: int = 3

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < self.folders:
            raise UserInputError("--scale-sizes", f"sizes of at least {self.folders} files", self.sizes)
        if self.folders % self.labels:
            raise UserInputError("scale folders", f"a multiple of {self.labels} labels", self.folders)


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"100000,300000"`` (or ``100k,1M``) -> (100000, 300000)."""
    out = []
    for part in str(text).split(","):
        p = part.strip().lower()
        mult = 1_000_000 if p.endswith("m") else 1_000 if p.endswith("k") else 1
        try:
            out.append(int(float(p.rstrip("mk")) * mult))
        except ValueError:
            raise UserInputError("--scale-sizes", "comma-separated file counts (100000,300000 or 100k,1M)",
                                 text) from None
    return tuple(sorted(set(out)))


# --- generation ----------------------------------------------------------------------------------

def _source_images() -> tuple[np.ndarray, np.ndarray, str]:
    from sparkdl_pipe.bench.data import fashion_arrays
    from sparkdl_pipe.driver.demo_data import fashion_mnist_available, load_fashion_mnist

    if fashion_mnist_available():
        x, y = load_fashion_mnist()["train"]
        return x, y, "fashion-mnist"
    x, y, name = fashion_arrays(1797)
    return x, y, name


def _png(a: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _folder_of(f: int, cfg_folders: int, labels: int) -> str:
    per_label = cfg_folders // labels
    return os.path.join(f"class-{f // per_label}", f"shard-{f % per_label:03d}")


def _write_folders(args: tuple[str, int, int, int, int, list[int]]) -> int:
    """Child process: write the image files of the leaf folders ``todo``; returns files written."""
    root, n, folders, labels, per_label_seed, todo = args
    x, y, _ = _source_images()
    pools = [np.flatnonzero(y == lab) for lab in range(labels)]
    cache: dict[int, bytes] = {}
    per, extra = divmod(n, folders)
    written = 0
    for f in todo:
        lab = f // (folders // labels)
        d = os.path.join(root, _folder_of(f, folders, labels))
        os.makedirs(d, exist_ok=True)
        count = per + (1 if f < extra else 0)
        start = f * per + min(f, extra)  # this folder's first global index
        pool = pools[lab % len(pools)]
        for k in range(count):
            i = int(pool[(start + k + per_label_seed) % len(pool)])
            data = cache.get(i)
            if data is None:
                data = cache[i] = _png(x[i])
            fd = os.open(os.path.join(d, f"img-{start + k:07d}.png"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            written += 1
    return written


def generate(root: str, n: int, cfg: ScaleConfig, processes: int) -> dict:
    """Write (once) ``n`` good PNGs plus the hidden and bad files under ``root``; return what ingest
    must report (``expected``) and the generation's seconds (0 when the folder was reused).

    A finished folder has ``<root>.json`` beside it; an unfinished one is written again.
    """
    import shutil

    marker = root.rstrip("/") + ".json"
    if os.path.exists(marker):
        with open(marker) as f:
            doc = json.load(f)
        if doc.get("layout") == LAYOUT_VERSION and doc.get("n") == n and doc.get("folders") == cfg.folders:
            return {**doc, "seconds": 0.0, "reused": True}
    if os.path.exists(root):
        shutil.rmtree(root)
    t0 = time.perf_counter()
    chunks = [list(range(i, cfg.folders, processes * 4)) for i in range(processes * 4)]
    with get_context("spawn").Pool(processes) as pool:
        good = sum(pool.map(_write_folders, [(root, n, cfg.folders, cfg.labels, 0, c) for c in chunks]))
    # bad files, in the first folders (each in a label folder: a reason other than missing_label)
    x, _, source = _source_images()
    png = _png(x[0])
    for j in range(cfg.bad_each):
        d = os.path.join(root, _folder_of(j % cfg.folders, cfg.folders, cfg.labels))
        open(os.path.join(d, f"empty-{j}.png"), "wb").close()
        os.symlink(os.path.join(root, f"gone-{j}.png"), os.path.join(d, f"dangling-{j}.png"))
        with open(os.path.join(d, f"truncated-{j}.png"), "wb") as fh:
            fh.write(png[: len(png) // 2])
    hidden = 0
    for k in range(0, cfg.folders, cfg.hidden_every):
        with open(os.path.join(root, _folder_of(k, cfg.folders, cfg.labels), ".DS_Store"), "wb") as fh:
            fh.write(b"\x00\x00\x00\x01Bud1")
        hidden += 1
    open(os.path.join(root, "_SUCCESS"), "wb").close()
    os.makedirs(os.path.join(root, ".cache", "class-0"), exist_ok=True)
    with open(os.path.join(root, ".cache", "class-0", "thumb.png"), "wb") as fh:
        fh.write(png)
    hidden += 2
    bad = {reason: cfg.bad_each for reason in BAD_FILES.values()}
    doc = {"layout": LAYOUT_VERSION, "n": n, "folders": cfg.folders, "source": source, "accepted": good,
           "rejects": dict(sorted(bad.items())), "hidden": hidden,
           "files_seen": good + sum(bad.values()) + hidden, "generate_seconds": time.perf_counter() - t0}
    with open(marker, "w") as out:
        json.dump(doc, out, indent=2)
    return {**doc, "seconds": doc["generate_seconds"], "reused": False}


# --- the driver's memory -------------------------------------------------------------------------

def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def driver_jvm_pid(spark) -> int | None:
    """The PID of the driver's JVM: the one PySpark started, or (under spark-submit) this process's parent."""
    from pyspark import SparkContext

    gw = SparkContext._gateway
    proc = getattr(gw, "proc", None) if gw is not None else None
    if proc is not None:
        return int(proc.pid)
    try:
        with open(f"/proc/{os.getppid()}/comm") as f:
            return os.getppid() if f.read().strip() == "java" else None
    except OSError:
        return None


@dataclass
class DriverMemory:
    """Samples, every ``interval`` s, the resident memory of the Python driver and its JVM (/proc).

    >>> with DriverMemory(jvm_pid) as mem:  # doctest: +SKIP
    ...     run_ingest(spark, cfg)
    >>> mem.peak  # doctest: +SKIP
    {'python': 412.0, 'jvm': 1630.5}
    """

    jvm_pid: int | None
    interval: float = 0.1
    peak: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="driver-rss", daemon=True)

    def _sample(self) -> None:
        for name, pid in (("python", os.getpid()), ("jvm", self.jvm_pid)):
            rss = _rss_mb(pid) if pid else None
            if rss is not None:
                self.peak[name] = max(self.peak.get(name, 0.0), rss)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> DriverMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# --- the benchmark -------------------------------------------------------------------------------

def jvm_live_heap_mb(spark) -> float | None:
    """The driver JVM's heap in use right after a full GC (its live data), in MiB; None if unknown."""
    try:
        jvm = spark.sparkContext._jvm
        jvm.java.lang.System.gc()
        return float(jvm.java.lang.management.ManagementFactory.getMemoryMXBean().getHeapMemoryUsage()
                     .getUsed()) / 2**20
    except Exception:  # noqa: BLE001 - a diagnostic only; py4j or the JVM may not offer it
        return None


def _check_counts(res, expected: dict) -> dict:
    """What the ingest reported against what was written; raises when any count differs."""
    got = {"accepted": sum(res.counts.values()), "rejects": dict(sorted(res.rejects_by_reason.items())),
           "hidden": res.skipped_hidden, "files_seen": res.input_records + res.skipped_hidden}
    want = {k: expected[k] for k in got}
    if got != want:
        raise AssertionError(f"scale ingest counts differ from the generated input: got {got}, wrote {want}")
    if res.input_records != got["accepted"] + res.rejected:
        raise AssertionError("input records != accepted + rejected")
    return got


def run_scale_benchmark(spark, cfg: ScaleConfig, workdir: str):
    """Generate (or reuse) each size, ingest it watched, and run the decode-only loop beside it. Driver.

    Returns a :class:`~sparkdl_pipe.bench.run.BenchResult` (one row per size; per-size figures,
    memory and the goals in ``details``).
    """
    from sparkdl_pipe.bench import data as bdata
    from sparkdl_pipe.bench.baselines import run_baseline
    from sparkdl_pipe.bench.run import BenchResult, BenchRow, machine_info
    from sparkdl_pipe.config import IngestImagesConfig
    from sparkdl_pipe.driver.ingest import run_ingest_images
    from sparkdl_pipe.preprocess.spec import ImageSpec

    t_all = time.time()
    base = os.path.join(workdir, "scale")
    os.makedirs(base, exist_ok=True)
    res = BenchResult(machine_info("scale"), asdict(cfg))
    cores = int(res.machine["cores"] or 1)
    spec = ImageSpec(28, 28, 1)
    jvm = driver_jvm_pid(spark)
    res.details["jvm_pid_found"] = jvm is not None
    # local mode: the driver's JVM is also the executor, so its memory includes the tasks'
    res.details["master"] = spark.sparkContext.master
    res.details["repeats"] = cfg.repeats
    # an untimed small ingest first starts the Python workers, so no timed line pays for that
    warm = os.path.join(base, "images-warm-up")
    generate(warm, cfg.folders * 2, cfg, cores)
    run_ingest_images(spark, IngestImagesConfig(warm, os.path.join(base, "out-warm-up"), spec, overwrite=True))
    with DriverMemory(jvm) as idle:
        time.sleep(0.5)
    res.details["driver_rss_before_mb"] = idle.peak
    res.details["jvm_live_heap_before_mb"] = jvm_live_heap_mb(spark)
    per_size: dict[str, dict] = {}
    for n in cfg.sizes:
        root = os.path.join(base, f"images-{n}")
        log.info("bench scale: %d files under %s", n, root)
        gen = generate(root, n, cfg, cores)
        t = time.perf_counter()
        bdata.read_all(root)  # into the page cache: neither the job nor its baseline pays a cold disk
        os.sync()
        warm_s = time.perf_counter() - t
        out = os.path.join(base, f"out-{n}")
        pairs: list[dict] = []
        peak: dict[str, float] = {}
        samples = 0
        for _ in range(cfg.repeats):
            with DriverMemory(jvm) as mem:
                ing = run_ingest_images(spark, IngestImagesConfig(root, out, spec, overwrite=True))
            counts = _check_counts(ing, gen)  # every repeat's counts, exactly
            peak = {k: max(v, peak.get(k, 0.0)) for k, v in mem.peak.items()}
            samples += mem.samples
            dec = run_baseline("decode_only", root=root, spec=spec.to_dict(), processes=cores)
            # read by the job: accepted + rejected (hidden files are never read)
            pairs.append({"ingest_seconds": ing.seconds, "phases": ing.phases,
                          "images_per_s": ing.input_records / ing.seconds, "decode_only_per_s": dec["per_s"]})
        with open(os.path.join(out, "_sparkdl_manifest.json")) as f:
            man = json.load(f)
        rate = statistics.median(p["images_per_s"] for p in pairs)
        base_rate = statistics.median(p["decode_only_per_s"] for p in pairs)
        ratios = [p["images_per_s"] / p["decode_only_per_s"] for p in pairs]
        res.rows.append(BenchRow("scale", f"ingest job, {n:,} 28x28 PNGs in {cfg.folders:,} folders", rate,
                                 base_rate, f"read+decode only, {cores} processes",
                                 cfg.goal_ratio if n == max(cfg.sizes) else None, "images/s"))
        per_size[str(n)] = {
            "files": n, "files_seen": counts["files_seen"], "generate_seconds": gen["seconds"],
            "generated_before": gen["reused"], "warm_read_seconds": warm_s,
            "list_and_count_seconds": statistics.median(p["phases"].get("list_and_count", 0.0) for p in pairs),
            "ingest_seconds": statistics.median(p["ingest_seconds"] for p in pairs),
            "pairs": pairs, "images_per_s": rate, "decode_only_per_s": base_rate,
            "ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)],
            "driver_peak_rss_mb": peak, "samples": samples,
            "jvm_live_heap_after_mb": jvm_live_heap_mb(spark),
            "counts": counts, "splits": ing.counts, "hidden_table": man["skipped"].get("path"),
            "manifest_examples": len(man["skipped"]["examples"]),
        }
        log.info("bench scale %d: %s", n, per_size[str(n)])
        import shutil

        shutil.rmtree(out, ignore_errors=True)  # the dataset itself is not needed again
    res.details["sizes"] = per_size
    lo, hi = per_size[str(min(cfg.sizes))], per_size[str(max(cfg.sizes))]
    growth = {k: hi["driver_peak_rss_mb"].get(k, 0.0) - lo["driver_peak_rss_mb"].get(k, 0.0)
              for k in ("python", "jvm")}
    res.details["goals"] = {
        "memory_growth_mb": growth, "memory_goal_mb": cfg.goal_memory_mb,
        "memory_met": all(v < cfg.goal_memory_mb for v in growth.values()),
        "time_growth": hi["ingest_seconds"] / lo["ingest_seconds"], "size_growth": max(cfg.sizes) / min(cfg.sizes),
        "time_goal": cfg.goal_time_growth * max(cfg.sizes) / min(cfg.sizes) / 10,
        "ratio_at_largest": hi["ratio"], "ratio_goal": cfg.goal_ratio,
    }
    g = res.details["goals"]
    g["time_met"] = g["time_growth"] <= g["time_goal"]
    g["ratio_met"] = g["ratio_at_largest"] >= cfg.goal_ratio
    res.seconds = time.time() - t_all
    return res


def scale_markdown(res) -> str:
    """The scale benchmark's table and goals, as Markdown."""
    m = res.machine
    d = res.details
    master = d.get("master", "local")
    where = ("local mode: the driver's JVM is also the executor, its memory includes the tasks'"
             if master.startswith("local") else f"on {master}: the executors are other JVMs")
    lines = [f"Scale benchmark, {m['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), "
             f"{res.seconds:.0f} s in all (generation included); {where}.", "",
             f"Each size: {d.get('repeats', 1)} (ingest, decode-only) pairs back to back; medians, the ratio "
             "the median of the pairs' ratios (their range in brackets); peak memory over all of them.", "",
             "| files | generate (s, once) | list + count (s) | ingest (s) | ingest images/s | decode-only "
             "images/s | ratio | driver Python peak RSS (MiB) | driver JVM peak RSS (MiB) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, s in d["sizes"].items():
        gen = f"{s['generate_seconds']:.0f}" if not s["generated_before"] else "reused"
        lo_r, hi_r = s.get("ratio_range", [s["ratio"], s["ratio"]])
        lines.append(f"| {int(n):,} | {gen} | {s['list_and_count_seconds']:.1f} | {s['ingest_seconds']:.1f} | "
                     f"{s['images_per_s']:,.0f} | {s['decode_only_per_s']:,.0f} | {s['ratio']:.2f}x "
                     f"({lo_r:.2f}-{hi_r:.2f}) | "
                     f"{s['driver_peak_rss_mb'].get('python', 0):,.0f} | {s['driver_peak_rss_mb'].get('jvm', 0):,.0f} |")
    g = d["goals"]
    ok = {True: "✅", False: "❌"}
    lines += ["", f"Goals: driver memory growth from the smallest to the largest size < {g['memory_goal_mb']:.0f} MB: "
              f"Python {g['memory_growth_mb']['python']:+.0f} MiB, JVM {g['memory_growth_mb']['jvm']:+.0f} MiB "
              f"{ok[g['memory_met']]}; ingest time {g['time_growth']:.2f}x for {g['size_growth']:.0f}x the files "
              f"(goal ≤ {g['time_goal']:.1f}x) {ok[g['time_met']]}; ingest / decode-only at the largest size "
              f"{g['ratio_at_largest']:.2f}x (goal ≥ {g['ratio_goal']}x) {ok[g['ratio_met']]}.",
              "The JVM's live heap (in use right after a full GC) after each size, MiB: "
              + ", ".join(f"{int(n):,} files {s['jvm_live_heap_after_mb']:,.0f}" for n, s in d["sizes"].items()
                          if s.get("jvm_live_heap_after_mb") is not None) + ".",
              "Every size's counts were checked exactly against what was written: files seen = accepted + "
              "rejected (empty files, broken symlinks, truncated PNGs) + hidden."]
    return "\n".join(lines)


def save_scale_result(res, out_dir: str) -> tuple[str, str]:
    """Write ``bench-scale.json`` and ``bench-scale.md`` into ``out_dir``; returns both paths. Driver."""
    os.makedirs(out_dir, exist_ok=True)
    jpath, mpath = os.path.join(out_dir, "bench-scale.json"), os.path.join(out_dir, "bench-scale.md")
    with open(jpath, "w") as f:
        json.dump(res.to_dict(), f, indent=2, default=float)
    with open(mpath, "w") as f:
        f.write(scale_markdown(res) + "\n")
    return jpath, mpath
