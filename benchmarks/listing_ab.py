"""The same folder ingests with the driver's walk and with the executors' listing, alternated in one run.

A local folder of at most ``--driver-listing-max-files`` files is walked by the driver (no listing
job); ``0`` sends it to the executors. This script ingests the same folders both ways, pair after
pair, and prints the seconds of each (and of the list-and-count phase) as a Markdown table; the JSON
goes to ``--out``. Inputs: 12,000 28x28 Fashion-MNIST PNGs and 500 256px JPEGs (the ``small``
benchmark's folders), written once under ``--workdir``.

    python benchmarks/listing_ab.py --workdir /tmp/listing-ab --out benchmarks/results

Runs on: driver (local[2]).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from sparkdl_pipe.bench.data import fashion_arrays, write_jpegs, write_pngs
from sparkdl_pipe.config import IngestImagesConfig
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.driver.session import make_spark_session
from sparkdl_pipe.preprocess.spec import ImageSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/tmp/listing-ab")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    x, y, _ = fashion_arrays(12_000)
    png, jpg = os.path.join(args.workdir, "png"), os.path.join(args.workdir, "jpg")
    if not os.path.exists(png):
        write_pngs(x, y, png)
    if not os.path.exists(jpg):
        write_jpegs(x[:500], y[:500], jpg)
    spark = make_spark_session("local[2]")
    runs = []
    for name, root, spec in (("12,000 PNGs", png, ImageSpec(28, 28, 1)), ("500 JPEGs", jpg, ImageSpec(64, 64, 3))):
        run_ingest_images(spark, IngestImagesConfig(root, os.path.join(args.workdir, "out", "warm-up"), spec,
                                                    overwrite=True))  # untimed: starts the Python workers
        for rep in range(args.repeats):
            for mode, limit in (("driver", 50_000), ("executors", 0)):
                r = run_ingest_images(spark, IngestImagesConfig(root, os.path.join(args.workdir, "out", mode), spec,
                                                                overwrite=True, driver_listing_max_files=limit))
                runs.append({"input": name, "listed_by": mode, "pair": rep, "seconds": r.seconds,
                             "list_and_count": r.phases["list_and_count"]})
    lines = ["| input | listed by | ingest s (median, each pair) | list + count s (median) |", "|---|---|---:|---:|"]
    for name in dict.fromkeys(r["input"] for r in runs):
        for mode in ("driver", "executors"):
            rs = [r for r in runs if r["input"] == name and r["listed_by"] == mode]
            each = " / ".join(f"{r['seconds']:.2f}" for r in rs)
            lines.append(f"| {name} | {mode} | {statistics.median(r['seconds'] for r in rs):.2f} ({each}) | "
                         f"{statistics.median(r['list_and_count'] for r in rs):.2f} |")
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "listing_ab.json"), "w") as f:
        json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
