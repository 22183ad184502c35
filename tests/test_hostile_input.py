"""Hostile input through real ingest and scoring jobs: every file is accepted, rejected with a reason,
or (hidden) skipped and counted; input = accepted + rejected + hidden, for ingest and for scoring."""

import json
import os

import pandas as pd
import pytest

from sparkdl_pipe.config import IngestImagesConfig, ScoreConfig
from sparkdl_pipe.driver.ingest import run_ingest_images
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.errors import DatasetError, RejectLimitError
from sparkdl_pipe.preprocess.spec import ImageSpec
from tests.hostile import count_entries, make_hostile_folder

SPEC = ImageSpec(8, 8, 3, max_pixels=1_000_000)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("hostile") / "in")
    expect = make_hostile_folder(root)
    yield root, expect
    os.chmod(os.path.join(root, "a", "locked.png"), 0o644)


def save_model_dir(out: str, model, labels: list[str], spec: ImageSpec, name: str = "tiny") -> str:
    """A model directory as `train` writes it (model.keras + model card), for a given Keras model."""
    from sparkdl_pipe import model_card as mc

    os.makedirs(out)
    path = os.path.join(out, mc.MODEL_FILE)
    model.save(path)
    card = {"format": mc.FORMAT, "format_version": mc.FORMAT_VERSION, "name": name, "model_file": mc.MODEL_FILE,
            "model_id": mc.file_sha256(path)[:16], "labels": labels, "preprocess": spec.to_dict(),
            "preprocess_fingerprint": spec.fingerprint(), "input_shape": list(spec.shape)}
    with open(os.path.join(out, mc.CARD_FILE), "w") as f:
        json.dump(card, f)
    return out


def _tiny_model(spec: ImageSpec, lambda_layer: bool = False):
    import tf_keras as keras

    inp = keras.Input(shape=spec.shape)
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0)(x)  # arbitrary Python code in the model file
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))


def test_ingest_hostile_folder_every_file_accounted_for(spark, hostile, tmp_path):
    root, expect = hostile
    out = str(tmp_path / "ds")
    res = run_ingest_images(spark, IngestImagesConfig(root, out, SPEC))
    assert res.rejects_by_reason == expect["ingest_rejects"]
    assert sum(res.counts.values()) == expect["accepted"]
    assert res.skipped_hidden == expect["hidden"]
    # the invariant, against an independent count of the directory entries
    assert res.input_records == sum(res.counts.values()) + res.rejected
    assert count_entries(root) == res.input_records + res.skipped_hidden
    man = json.load(open(os.path.join(out, "_sparkdl_manifest.json")))
    assert man["rejects"]["per_reason"] == expect["ingest_rejects"] and man["skipped"]["hidden"] == 4
    assert man["files_seen"] == count_entries(root)
    rej = pd.read_parquet(os.path.join(out, "rejects"))
    assert len(rej) == res.rejected and rej["message"].str.len().gt(0).all()
    by_name = dict(zip([os.path.basename(p.replace("%20", " ")) for p in rej["path"]], rej["reason"], strict=True))
    assert by_name["pipe.png"] == "unreadable_file" and by_name["dangling%20link.png".replace("%20", " ")] == \
        "missing_file"
    assert by_name["bomb.png"] == "image_too_large" and by_name["notes.png"] == "undecodable_image"
    assert "locked.png" in by_name if not expect["root"] else "locked.png" not in by_name
    # accepted records include the converted ones, Unicode names and the wrong extension
    paths = pd.concat([pd.read_parquet(os.path.join(out, s), columns=["path"]) for s in ("train", "val", "test")
                       if os.path.exists(os.path.join(out, s))])["path"]
    from sparkdl_pipe.executor.reading import path_of

    names = {os.path.basename(path_of(p)) for p in paths}
    assert {"png named as.jpg", "sixteen-bit.png", "palette.gif", "cmyk.jpg", "alpha.png", "tiny 1x1.png",
            "café au lait ü 名前.png"} <= names


def test_max_rejects_fails_the_job_and_publishes_nothing(spark, hostile, tmp_path):
    root, _ = hostile
    out = tmp_path / "ds"
    with pytest.raises(RejectLimitError, match=r"exceed --max-rejects 0 \(empty_file 1"):
        run_ingest_images(spark, IngestImagesConfig(root, str(out), SPEC, max_rejects=0))
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if "staging" in p]
    res = run_ingest_images(spark, IngestImagesConfig(root, str(out), SPEC, max_rejects=20))
    assert res.rejected < 20 and out.exists()


def test_manifest_missing_file_unknown_label_and_removed_file(spark, hostile, tmp_path):
    root, _ = hostile
    rows = [{"path": f"a/good {i:02d}.png", "label": "a"} for i in range(6)]
    rows += [{"path": f"b/good {i:02d}.png", "label": "b"} for i in range(6)]
    rows += [{"path": "a/not there.png", "label": "a"},            # missing_file
             {"path": "b/good 07.png", "label": "zebra"},          # unknown_label (not in --labels)
             {"path": "b/good 08.png", "label": " "}]              # missing_label
    man = str(tmp_path / "m.csv")
    pd.DataFrame(rows).to_csv(man, index=False)
    # paths in a manifest are relative to the manifest's folder: point them at the hostile folder
    os.symlink(os.path.join(root, "a"), tmp_path / "a")
    os.symlink(os.path.join(root, "b"), tmp_path / "b")
    res = run_ingest_images(spark, IngestImagesConfig(man, str(tmp_path / "ds"), SPEC, labels=("a", "b")))
    assert res.input_records == 15 == sum(res.counts.values()) + res.rejected
    assert res.rejects_by_reason == {"missing_file": 1, "unknown_label": 1, "missing_label": 1}
    assert res.labels == ["a", "b"]


def test_file_removed_between_listing_and_reading_is_a_reject(tmp_path):
    from sparkdl_pipe.driver.sources import list_input_files
    from sparkdl_pipe.executor.ingest import key_records, write_records
    from tests.hostile import _img

    (tmp_path / "x").mkdir()
    for n in ("keep.png", "vanish.png"):
        (tmp_path / "x" / n).write_bytes(_img("RGB"))
    listing = list_input_files(str(tmp_path))
    os.remove(tmp_path / "x" / "vanish.png")  # after listing, before the executor reads it
    keyed = pd.concat(key_records(iter([pd.DataFrame({"path": listing.files})]), 1, "file://" + str(tmp_path),
                                  False))
    keyed["split"], keyed["label"] = "train", 0
    staging = tmp_path / "staging"
    summary = pd.concat(write_records(iter([keyed]), "sparkdl_pipe.modalities.image:IMAGE", SPEC.to_dict(),
                                      "file://" + str(staging), {"train": 8}))
    assert summary.set_index("kind").loc[["file", "class"], "n"].tolist() == [1, 1, 1]  # train, rejects; x: 1
    rej = pd.read_parquet(staging / "rejects")
    assert rej["path"].str.rsplit("/", n=1).str[-1].tolist() == ["vanish.png"]
    assert rej["reason"].tolist() == ["missing_file"] and rej["stage"].tolist() == ["ingest"]
    kept = pd.read_parquet(staging / "train")
    assert kept["path"].str.rsplit("/", n=1).str[-1].tolist() == ["keep.png"]
    assert len(kept["image"][0]) == SPEC.height * SPEC.width * SPEC.channels


def test_read_ahead_keeps_row_order_reads_in_path_order_and_holds_its_budget(tmp_path, monkeypatch):
    from sparkdl_pipe.executor import ingest
    from sparkdl_pipe.executor.reading import read_bytes
    from sparkdl_pipe.modalities.image import IMAGE
    from tests.hostile import _img

    spec = ImageSpec(8, 8, 3)
    names = [f"{c}/{i:03d}.png" for i in range(40) for c in "zyx"]  # rows jump between folders
    for n in names:
        (tmp_path / n).parent.mkdir(exist_ok=True)
        (tmp_path / n).write_bytes(_img("RGB"))
    (tmp_path / "x" / "005.png").write_bytes(b"")  # empty: decoded to a reject
    os.remove(tmp_path / "y" / "007.png")  # missing: a read reject
    paths = ["file:" + str(tmp_path / n) for n in names] + [None]
    reasons = [None] * len(paths)
    reasons[3] = "unknown_label"  # rejected before reading: not read, None
    size = len(_img("RGB"))
    order: list[str] = []

    def spy(url, *a):
        order.append(url)
        return read_bytes(url, *a)

    monkeypatch.setattr(ingest, "read_bytes", spy)
    monkeypatch.setattr(ingest, "FIRST_WINDOW", 16)
    monkeypatch.setattr(ingest, "READ_AHEAD_BYTES", 10 * size)  # windows of 10 files, the first cut at 10
    got = list(ingest.prepared_by_path(IMAGE, spec, paths, reasons, False))
    assert len(got) == len(paths) and got[3] is None
    for i, (name, g) in enumerate(zip(names + ["(null)"], got, strict=True)):
        if i == 3:
            continue
        value, reason, _, _ = g
        want = {"x/005.png": "empty_file", "y/007.png": "missing_file", "(null)": "missing_file"}.get(name)
        assert reason == want, (name, g)
        assert (value is None) == (want is not None) and (value is None or value.shape == (8, 8, 3))
    assert sorted(order) == sorted(p for i, p in enumerate(paths) if i != 3 and p is not None)  # each read once
    # the first window (16 rows) reads its files in path order until the budget (10 files), the rest on demand
    first = [p for i, p in enumerate(paths[:16]) if i != 3]
    assert order[:10] == sorted(first)[:10] and order[10:15] == [p for p in first if p not in order[:10]]
    # later windows are sized from the files' mean size: 10 rows each, read in path order
    assert order[15:25] == sorted(paths[16:26])


def test_local_read_whole_file_in_one_read_and_files_that_change(tmp_path):
    from sparkdl_pipe.executor.reading import read_bytes

    for data in (b"x" * 3, b"y" * 70_000, b""):
        (tmp_path / "f").write_bytes(data)
        assert read_bytes("file:" + str(tmp_path / "f")) == (data, None, None)
    assert read_bytes("/proc/self/status")[0].startswith(b"Name:")  # reports size 0, read to its end
    os.mkfifo(tmp_path / "fifo")
    assert read_bytes(str(tmp_path / "fifo"))[1] == "unreadable_file"
    assert read_bytes(str(tmp_path / "f"), max_bytes=-1)[1] == "file_too_large"


def test_score_hostile_folder_reconciles(spark, hostile, tmp_path):
    root, expect = hostile
    model = save_model_dir(str(tmp_path / "model"), _tiny_model(SPEC), ["a", "b"], SPEC)
    res = run_scoring(spark, ScoreConfig(model, root, str(tmp_path / "s")))
    assert res.rejects_by_reason == expect["score_rejects"]
    assert res.scored == expect["accepted"] + 1  # the file outside a label folder is scored too
    assert res.input_rows == res.scored + res.rejected
    assert count_entries(root) == res.input_rows + res.skipped_hidden == expect["accepted"] + 1 + \
        sum(expect["score_rejects"].values()) + expect["hidden"]
    summary = json.load(open(os.path.join(tmp_path, "s", "_sparkdl_score.json")))
    assert summary["rejects_by_reason"] == expect["score_rejects"] and summary["files_seen"] == count_entries(root)
    with pytest.raises(RejectLimitError):
        run_scoring(spark, ScoreConfig(model, root, str(tmp_path / "s2"), max_rejects=3))
    assert not (tmp_path / "s2").exists()


def test_model_with_lambda_layer_is_refused_at_scoring(spark, hostile, tmp_path):
    root, _ = hostile
    model = save_model_dir(str(tmp_path / "evil"), _tiny_model(SPEC, lambda_layer=True), ["a", "b"], SPEC)
    with pytest.raises(DatasetError, match="refused: it contains a Lambda layer"):
        run_scoring(spark, ScoreConfig(model, root, str(tmp_path / "s")))
    assert not (tmp_path / "s").exists()
