"""The malloc settings the product's TensorFlow processes start with (benchmarks/NOTES.md, change 22)."""

import glob
import subprocess

from sparkdl_pipe._env import WORKER_MALLOC_TUNABLES, worker_env


def test_workers_get_the_malloc_settings_unless_the_user_set_their_own():
    env = worker_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": WORKER_MALLOC_TUNABLES}
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert worker_env(mine) == mine


def test_glibc_reads_the_settings_as_meant():
    # The dynamic loader lists the tunables it parsed from the environment: the string must be valid.
    loaders = sorted(glob.glob("/lib64/ld-linux-x86-64.so.2") + glob.glob("/lib/ld-linux-aarch64.so.1"))
    assert loaders, "no glibc dynamic loader found"
    out = subprocess.run([loaders[0], "--list-tunables"], env={"GLIBC_TUNABLES": WORKER_MALLOC_TUNABLES},
                         capture_output=True, text=True, check=True).stdout
    values = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert values["glibc.malloc.mmap_max"].startswith("0 ")
    assert values["glibc.malloc.trim_threshold"].startswith(hex(128 * 2**20) + " ")
    assert values["glibc.malloc.top_pad"].startswith(hex(16 * 2**20) + " ")


def test_spark_python_workers_start_with_them(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.executorEnv.GLIBC_TUNABLES") == WORKER_MALLOC_TUNABLES
    seen = spark.sparkContext.parallelize(range(2), 2).map(
        lambda _: __import__("os").environ.get("GLIBC_TUNABLES")).collect()
    assert seen == [WORKER_MALLOC_TUNABLES] * 2
