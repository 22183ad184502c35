"""Folder inputs listed in the executors (issue 26): the driver reads folder names only, Spark tasks
walk the folders (a small local folder: the driver walks it with the same functions, below
--driver-listing-max-files; both paths are checked against the same expectations); hidden files counted and listed in full, empty files and broken symlinks rejected
with reasons, nested and symlinked folders, loops; files seen = accepted + rejected + hidden, exactly.
Real local[2] Spark, real files, real Parquet; scoring uses the same listing; an S3 prefix too."""

import json
import os

import pandas as pd
import pytest

from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig
from sparkdl_pipe.driver import listing as lst
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.executor.reading import path_of
from sparkdl_pipe.preprocess.spec import ImageSpec
from tests.hostile import _img
from tests.test_hostile_input import _tiny_model, save_model_dir
from tests.test_storage_urls import s3  # noqa: F401  (the S3 endpoint fixture)

SPEC = ImageSpec(8, 8, 3)


def _write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A folder with nested label folders, 26 hidden files, empty files, broken symlinks, a symlink
    loop, a symlinked folder inside the root, two links to one folder outside it (with a loop of its
    own). Returns (root, what ingest must find)."""
    base = tmp_path_factory.mktemp("lake")
    root = str(base / "in")
    good: set[str] = set()
    for lab in ("cat", "dog"):
        for sub in ("2019", "2020/jan", ""):
            for i in range(5):
                good.add(_write(os.path.join(root, lab, sub, f"img {i}.png"), _img("RGB", seed=i + len(good))))
    hidden = {_write(os.path.join(root, "cat", "2019", f".thumb-{i}.png"), b"x") for i in range(10)}
    hidden |= {_write(os.path.join(root, "dog", f"._img {i}.png"), b"AppleDouble") for i in range(10)}
    hidden |= {_write(os.path.join(root, "_SUCCESS"), b""), _write(os.path.join(root, ".git", "config"), b"[core]"),
               _write(os.path.join(root, ".git", "objects", "ab", "cdef"), b"blob"),
               _write(os.path.join(root, "_tmp", "cat", "x.png"), _img("RGB")),
               _write(os.path.join(root, "dog", ".DS_Store"), b"Bud1"),
               _write(os.path.join(root, "cat", "2020", "_partial.png"), b"x")}
    empty = {_write(os.path.join(root, "cat", "empty.png"), b""), _write(os.path.join(root, "dog", "2019", "e.png"), b"")}
    broken = {os.path.join(root, "cat", "gone.png"), os.path.join(root, "dog", "2020", "jan", "gone too.png")}
    for b in broken:
        os.symlink(os.path.join(root, "never-there.png"), b)
    os.symlink(root, os.path.join(root, "cat", "2019", "loop"))  # a loop back to the root: not followed
    os.symlink(os.path.join(root, "dog"), os.path.join(root, "dog-again"))  # inside the root: listed once, as dog/
    outside = str(base / "outside")
    extra = {_write(os.path.join(outside, f"far {i}.png"), _img("RGB", seed=50 + i)) for i in range(3)}
    os.symlink(outside, os.path.join(outside, "self"))  # its own loop
    os.symlink(outside, os.path.join(root, "cat", "far"))  # two links to one outside folder:
    os.symlink(outside, os.path.join(root, "dog", "2020", "far"))  # walked once, named by the first link
    good |= {os.path.join(root, "cat", "far", os.path.basename(p)) for p in extra}
    return root, {"good": good, "hidden": hidden, "empty": empty, "broken": broken}


def test_plan_units_reads_folder_names_only(lake):
    root, _ = lake
    units, links = lst.plan_units("file://" + root, root, target_units=1000)
    # two levels read by the driver (its files are the tasks' work), everything below handed out whole
    assert {k for k, _, _ in units} == {"files", "tree"}
    assert all(os.path.isdir(d) for _, d, _ in units)
    assert ("files", root, None) in units and ("tree", os.path.join(root, "cat", "2019"), None) in units
    assert sorted(os.path.relpath(link, root) for link, _ in links) == ["cat/far", "dog-again"]
    # a big target: the root alone is one tree, nothing read below it
    assert lst.plan_units("file://" + root, root, target_units=1) == ([("tree", root, None)], [])


@pytest.mark.parametrize(("max_files", "hidden_max"), [(0, None), (1000, None), (0, 21)],
                         ids=["executors", "driver", "executors-hidden-table-by-tasks"])
def test_distributed_listing_accounts_for_every_file(spark, lake, tmp_path, monkeypatch, max_files, hidden_max):
    root, want = lake
    if hidden_max is not None:  # more hidden files than the driver writes itself: Python tasks write the table
        monkeypatch.setattr(lst, "DRIVER_HIDDEN_MAX", hidden_max)
    out = str(tmp_path / "ds")
    res = run_ingest_images(spark, IngestImagesConfig(root, out, SPEC, driver_listing_max_files=max_files))
    assert res.rejects_by_reason == {"empty_file": 2, "missing_file": 2}
    assert sum(res.counts.values()) == len(want["good"]) == 33 and res.labels == ["cat", "dog"]
    assert res.skipped_hidden == len(want["hidden"]) == 26
    assert res.input_records + res.skipped_hidden == 33 + 4 + 26
    assert res.phases["list_and_count"] > 0 and res.phases["write"] > 0
    paths = pd.concat([pd.read_parquet(os.path.join(out, s), columns=["path"]) for s in ("train", "val", "test")])
    assert {path_of(p) for p in paths["path"]} == want["good"]  # each file once, under the name expected
    rej = pd.read_parquet(os.path.join(out, "rejects"))
    assert dict(zip(map(path_of, rej["path"]), rej["reason"], strict=True)) == {
        **{p: "empty_file" for p in want["empty"]}, **{p: "missing_file" for p in want["broken"]}}
    man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
    assert man["files_seen"] == 63 and man["skipped"]["hidden"] == 26 and man["skipped"]["path"] == "skipped"
    assert man["skipped"]["examples"] == sorted(want["hidden"])[:20]  # the first 20, in path order
    table = pd.read_parquet(os.path.join(out, "skipped"))  # more than 20: the full list beside the manifest
    assert sorted(map(path_of, table["path"])) == sorted(want["hidden"])
    written_by_driver = [f.endswith("-driver.parquet") for f in os.listdir(os.path.join(out, "skipped"))
                         if f.endswith(".parquet")]
    assert written_by_driver == ([True] if hidden_max is None else [False] * len(written_by_driver))
    # the same input scored: the same listing, the same counts
    model = save_model_dir(str(tmp_path / "model"), _tiny_model(SPEC), ["cat", "dog"], SPEC)
    sc = run_scoring(spark, ScoreConfig(model, root, str(tmp_path / "scores"), driver_listing_max_files=max_files))
    assert (sc.scored, sc.rejects_by_reason, sc.skipped_hidden) == (33, {"empty_file": 2, "missing_file": 2}, 26)
    summary = json.load(open(os.path.join(tmp_path, "scores", "_sparkdl_score.json")))
    assert summary["files_seen"] == 63 and summary["skipped"]["path"] == "skipped"
    assert len(pd.read_parquet(os.path.join(tmp_path, "scores", "skipped"))) == 26
    scored = pd.read_parquet(os.path.join(tmp_path, "scores", "predictions"))
    assert {path_of(p) for p in scored["path"]} == want["good"]


def test_many_folders_listed_by_many_tasks_match_a_walk(spark, tmp_path):
    # 120 leaf folders: the driver hands them to the tasks as 'tree' units; a few hidden (no table)
    root = tmp_path / "many"
    png = _img("RGB")
    names = set()
    for f in range(120):
        for i in range(3):
            names.add(_write(str(root / f"l{f % 3}" / f"shard-{f:03d}" / f"{i}.png"), png))
    hidden = {_write(str(root / f"l{f}" / ".DS_Store"), b"x") for f in range(3)}
    # names a URL quotes: the tasks send a record's relative path, the URL is made again from it
    names |= {_write(str(root / "l1" / "shard-001" / n), png) for n in ("a b.png", "ü%41#.png", "x;y?.png")}
    key = {"seed": 1, "allowed_labels": None}
    listing = lst.list_folder(spark, "file://" + str(root), key, driver_max_files=0)
    cols = ["path", "rel_path", "label_name", "split_hint", "u", "order_key", "reason", "message", "entry"]
    try:
        assert listing.by == "executors" and listing.units == 1 + 3 + 120
        assert sum(f.rdd.getNumPartitions() for f in listing.frames) >= 2
        rows = listing.union().select(*cols).collect()
        assert {path_of(r["path"]) for r in rows if r["entry"] == "record"} == names
        assert {path_of(r["path"]) for r in rows if r["entry"] == "hidden"} == hidden
        assert all(r["label_name"] == r["rel_path"].split("/")[0] for r in rows if r["entry"] == "record")
    finally:
        listing.unpersist()
    # the driver's walk: the same rows, keys included (exact 63-bit order keys on both paths); one
    # file over its limit and the executors list the folder instead
    small = lst.list_folder(spark, "file://" + str(root), key, driver_max_files=366)
    assert small.by == "driver" and sorted(small.union().select(*cols).collect()) == sorted(rows)
    assert any(r["order_key"] % 2**11 for r in rows if r["entry"] == "record")  # not rounded to a float's 53 bits
    big = lst.list_folder(spark, "file://" + str(root), key, driver_max_files=365)
    assert big.by == "executors" and big.union().count() == 366
    big.unpersist()
    # with --labels: the same reasons on both paths (the tasks' records carry no reason: made again)
    key = {"seed": 1, "allowed_labels": ["l0", "l1"]}
    walked, listed = (lst.list_folder(spark, "file://" + str(root), key, driver_max_files=m) for m in (366, 0))
    rows = sorted(listed.union().select(*cols).collect())
    assert sorted(walked.union().select(*cols).collect()) == rows
    unknown = [r for r in rows if r["reason"] == "unknown_label"]
    assert len(unknown) == 120 and all(r["label_name"] == "l2" and "['l0', 'l1']" in r["message"] for r in unknown)
    listed.unpersist()
    res = run_ingest_images(spark, IngestImagesConfig(str(root), str(tmp_path / "ds"), SPEC, labels=("l0", "l1")))
    assert res.rejects_by_reason == {"unknown_label": 120} and sum(res.counts.values()) == 243
    man = json.load(open(tmp_path / "ds" / "_sparkdl_manifest.json"))
    assert man["skipped"] == {"hidden": 3, "examples": sorted(hidden)} and not (tmp_path / "ds" / "skipped").exists()


def test_an_s3_prefix_is_listed_by_the_tasks(spark, s3, tmp_path):  # noqa: F811
    from sparkdl_pipe import storage

    fs, base = storage.filesystem(f"{s3}/lake")
    for lab in ("cat", "dog"):
        for sub in ("", "2019/"):
            for i in range(4):
                with fs.open_output_stream(f"{base}/{lab}/{sub}img-{i}.png") as f:
                    f.write(_img("RGB", seed=i))
    for name in ("_SUCCESS", "cat/.DS_Store"):
        with fs.open_output_stream(f"{base}/{name}") as f:
            f.write(b"x")
    with fs.open_output_stream(f"{base}/dog/empty.png") as f:
        f.write(b"")
    res = run_ingest_images(spark, IngestImagesConfig(f"{s3}/lake", str(tmp_path / "ds"), SPEC))
    assert sum(res.counts.values()) == 16 and res.rejects_by_reason == {"empty_file": 1}
    assert res.skipped_hidden == 2 and res.labels == ["cat", "dog"]
    paths = pd.concat([pd.read_parquet(str(tmp_path / "ds" / s), columns=["path"]) for s in ("train", "val", "test")])
    assert paths["path"].str.startswith("s3a://").all() and paths["path"].nunique() == 16


def test_a_folder_of_hidden_files_only_is_one_clear_error(spark, tmp_path):
    from sparkdl_pipe.errors import DatasetError

    for name in (".DS_Store", "_SUCCESS", "cat/.thumbs"):
        _write(str(tmp_path / "in" / name), b"x")
    with pytest.raises(DatasetError, match=r"no records found .*hidden files \(3\) are skipped"):
        run_ingest_images(spark, IngestImagesConfig(str(tmp_path / "in"), str(tmp_path / "ds"), SPEC))
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("layout", ["split folders", "unlabeled"])
def test_executor_listing_writes_the_dataset_the_driver_walk_writes(spark, tmp_path, layout):
    # records travel to the write tasks in buckets and get their split and label there: the same
    # records land in the same splits with the same labels as on the driver's path (split hints kept,
    # val carved out of train; an unlabeled folder: every file a record, label -1)
    root = tmp_path / "in"
    names = set()
    for i in range(240):
        sub = f"{('train', 'test')[i % 2]}/{('cat', 'dog', 'eel')[i % 3]}/" if layout == "split folders" else ""
        names.add(_write(str(root / f"{sub}{i}.png"), _img("RGB", seed=i)))
    _write(str(root / "cat-empty.png" if layout == "unlabeled" else root / "train" / "cat" / "empty.png"), b"")
    got = {}
    for name, limit in (("driver", 50_000), ("executors", 0)):
        out = str(tmp_path / name)
        res = run_ingest_images(spark, IngestImagesConfig(str(root), out, SPEC, driver_listing_max_files=limit))
        man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
        rows = {s: sorted((r["path"], r["label"], r["label_name"]) for r in
                          spark.read.parquet(os.path.join(out, s)).select("path", "label", "label_name").collect())
                for s in ("train", "val", "test") if os.path.exists(os.path.join(out, s))}
        splits = {s: {k: v for k, v in d.items() if k != "row_groups"} for s, d in man["splits"].items()}  # files differ
        got[name] = (res.counts, res.rejects_by_reason, splits, man["labels"], man["task"], rows)
    assert got["executors"] == got["driver"]
    counts, rejects, splits, labels, task, rows = got["driver"]
    assert rejects == {"empty_file": 1} and {path_of(p) for r in rows.values() for p, _, _ in r} == names
    if layout == "split folders":
        assert labels == ["cat", "dog", "eel"] and counts["val"] > 0 and counts["test"] == 120
    else:
        assert task == "autoencoder" and {lab for r in rows.values() for _, lab, _ in r} == {-1}


def test_input_format_of_a_folder_without_walking_all_of_it(tmp_path, monkeypatch):
    from sparkdl_pipe.driver import sources

    def folder(name: str, files: list[str]) -> str:
        for f in files:
            (tmp_path / name / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / f).write_bytes(b"x")
        return str(tmp_path / name)

    assert sources.detect_format(folder("parts", ["part-0.parquet", "part-1.parquet", "_SUCCESS",
                                                  ".hidden/x.png", "_tmp/y.csv"])) == "parquet"
    assert sources.detect_format(folder("csv", ["a.csv.gz", "b.csv"])) == "csv"
    assert sources.detect_format(folder("mixed", ["a.csv", "b.parquet"])) == "folder"
    assert sources.detect_format(folder("nested", ["a.parquet", "sub/b.parquet"])) == "folder"
    assert sources.detect_format(folder("images", ["cat/1.png", "dog/2.png"])) == "folder"
    assert sources.detect_format(folder("empty", [".keep"])) == "folder"
    # a folder of image folders is known from its first file below the top: the rest is not listed
    root = folder("lake", [f"class-{k}/shard-{s}/{i}.png" for k in range(3) for s in range(3) for i in range(3)])
    walked: list[str] = []
    real_walk = sources.os.walk

    def walk(top, *a, **kw):
        for entry in real_walk(top, *a, **kw):
            walked.append(entry[0])
            yield entry

    monkeypatch.setattr(sources.os, "walk", walk)
    assert sources.detect_format(root) == "folder" and len(walked) == 3  # the root, class-0, its first shard
