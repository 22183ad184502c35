"""Keeping a reused Spark Python worker cheap to start tasks in.

PySpark's worker calls ``importlib.invalidate_caches()`` at the start of every task. Since Python
3.10 that makes every ``zipimporter`` in ``sys.path_importer_cache`` read its archive's whole
directory again, and a worker has many: Spark puts ``pyspark.zip``, py4j's zip and spark-core's jar
(5,264 entries, no Python in it) on the worker's path, and one importer is cached per package
imported from ``pyspark.zip``. Measured in a scoring worker: about a third of its samples were that
re-reading (benchmarks/NOTES.md). :func:`prune_zip_importers` drops the jar from the path and the
per-package importers from the cache (one importer per archive stays; a package imported later
gets a new one from Python's own directory cache).

Runs on: executors (called at the start of every batch function).
"""

from __future__ import annotations

import sys
import zipimport


def prune_zip_importers() -> int:
    """Remove jar path entries and per-package zip importers; returns how many importers went."""
    if any(p.endswith(".jar") for p in sys.path):
        sys.path[:] = [p for p in sys.path if not p.endswith(".jar")]
    gone = 0
    for key, finder in list(sys.path_importer_cache.items()):
        if isinstance(finder, zipimport.zipimporter) and (finder.prefix or finder.archive.endswith(".jar")):
            del sys.path_importer_cache[key]
            gone += 1
    return gone


_HEAP_SETTLED = False


def settle_heap() -> None:
    """Once per worker process, when its imports are done: exempt every object alive now from the
    cyclic garbage collector's full collections (:func:`gc.freeze`).

    PySpark's daemon runs ``gc.collect()`` after every task of a reused worker; with pandas, pyarrow
    and Pillow loaded that walked about 77,000 long-lived objects (40 ms) each time, about 6% of an
    ingest worker's samples at 1M small files. Frozen objects are still freed by reference counting.
    """
    global _HEAP_SETTLED
    if not _HEAP_SETTLED:
        import gc

        gc.collect()
        gc.freeze()
        _HEAP_SETTLED = True
