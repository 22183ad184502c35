"""What the text path gained from the one pipeline: per-file reading of <label>/*.txt folders (an
unreadable file, a broken symlink and a FIFO are rejects with reasons), --max-rejects and --labels,
up-front checks, strict UTF-8 with --invalid-utf8, nested folders labelled by their first folder,
and KerasTextClassifier in a Pipeline (fitted, saved, loaded, used on a DataFrame of our own)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline, PipelineModel

from sparkdl_pipe.config import IngestImagesConfig, IngestTextConfig
from sparkdl_pipe.driver.ingest import run_ingest_images, run_ingest_text
from sparkdl_pipe.errors import RejectLimitError
from sparkdl_pipe.preprocess.spec import ImageSpec, TextSpec
from tests.conftest import png_bytes
from tests.test_cli_jobs import CLI, run
from tests.text_corpus import make_docs, write_txt_folder

SPEC = TextSpec(max_len=16, vocab_size=1000, min_count=1)


def _hostile_txt_folder(root: str, docs: pd.DataFrame) -> dict[str, int]:
    """A <label>/*.txt folder with a chmod-000 file, a broken symlink and a FIFO (plus the usual bad files)."""
    want = write_txt_folder(docs, root)
    locked = os.path.join(root, "pos", "locked.txt")
    with open(locked, "w") as f:
        f.write("a fine text nobody may read")
    os.chmod(locked, 0)
    os.symlink(os.path.join(root, "nowhere.txt"), os.path.join(root, "neg", "dangling.txt"))
    os.mkfifo(os.path.join(root, "neg", "pipe.txt"))
    unreadable = 1 if os.geteuid() != 0 else 0  # root reads a chmod-000 file: then it is accepted
    want = {**want, "missing_file": 1, "unreadable_file": 1 + unreadable}
    return want


def test_txt_folder_hostile_files_are_rejects_and_max_rejects_publishes_nothing(spark, tmp_path):
    docs = make_docs(60, seed=3)
    root = str(tmp_path / "txt")
    want = _hostile_txt_folder(root, docs)
    res = run_ingest_text(spark, IngestTextConfig(root, str(tmp_path / "ds"), text=SPEC))
    assert res.rejects_by_reason == want
    accepted_extra = 1 if os.geteuid() == 0 else 0  # the chmod-000 file, read by root
    assert sum(res.counts.values()) == len(docs) + accepted_extra
    assert res.input_records == sum(res.counts.values()) + res.rejected and res.skipped_hidden == 1
    rej = pd.read_parquet(str(tmp_path / "ds" / "rejects"))
    assert {os.path.basename(p): r for p, r in zip(rej["id"], rej["reason"], strict=True)
            if r in ("missing_file", "unreadable_file")} == {"dangling.txt": "missing_file",
                                                             "pipe.txt": "unreadable_file",
                                                             **({} if os.geteuid() == 0 else
                                                                {"locked.txt": "unreadable_file"})}
    with pytest.raises(RejectLimitError):
        run_ingest_text(spark, IngestTextConfig(root, str(tmp_path / "ds0"), text=SPEC, max_rejects=0))
    assert not (tmp_path / "ds0").exists()
    # the same from the command line: exit status 3, one line, nothing published
    r = run([CLI, "ingest-text", "--input", root, "--output", str(tmp_path / "cli"), "--max-rejects", "0",
             "--min-count", "1", "--master", "local[2]"])
    assert r.returncode == 3, r.stderr[-1500:]
    assert "Traceback" not in r.stderr and "exceed --max-rejects 0" in r.stderr
    assert not (tmp_path / "cli").exists()


def test_text_labels_option_and_up_front_checks(spark, tmp_path):
    docs = make_docs(40, seed=4)
    root = str(tmp_path / "txt")
    write_txt_folder(docs, root)
    res = run_ingest_text(spark, IngestTextConfig(root, str(tmp_path / "ds"), text=SPEC, labels=("pos",)))
    assert res.labels == ["pos"] and res.rejects_by_reason["unknown_label"] == int((docs["label"] == "neg").sum()) + 1
    # up-front: a missing input or an existing output is one line, exit 2, before Spark starts
    for args, needle in ((["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")], "does not exist"),
                         (["--input", root, "--output", str(tmp_path / "ds")], "already exists")):
        r = run([CLI, "ingest-text", *args])
        assert r.returncode == 2 and "Traceback" not in r.stderr and "SparkContext" not in r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ": error:" in ln]
        assert len(errors) == 1 and needle in errors[0], errors


def test_valid_utf8_with_replacement_chars_is_kept_and_counted_invalid_bytes_follow_the_policy(spark, tmp_path):
    docs = make_docs(40, seed=5)
    root = tmp_path / "txt"
    write_txt_folder(docs, str(root))
    (root / "pos" / "fffd.txt").write_bytes("a great film \ufffd with a replacement char".encode())
    res = run_ingest_text(spark, IngestTextConfig(str(root), str(tmp_path / "a"), text=SPEC))
    assert res.rejects_by_reason["undecodable_text"] == 1  # latin1.txt: invalid bytes, rejected by default
    assert res.replacement_char == 1 and res.invalid_utf8_replaced == 0
    man = json.load(open(tmp_path / "a" / "_sparkdl_manifest.json"))
    assert man["utf8"] == {"invalid_utf8": "reject", "records_with_replacement_char": 1,
                           "records_with_invalid_bytes_replaced": 0}
    spec = TextSpec(max_len=16, vocab_size=1000, min_count=1, invalid_utf8="replace")
    res = run_ingest_text(spark, IngestTextConfig(str(root), str(tmp_path / "b"), text=spec))
    assert "undecodable_text" not in res.rejects_by_reason and res.invalid_utf8_replaced == 1
    assert res.replacement_char == 1 and sum(res.counts.values()) == len(docs) + 2


def test_nested_folders_take_the_first_folder_as_label_for_images_and_text(spark, tmp_path):
    rng = np.random.default_rng(0)
    img = tmp_path / "photos"
    for label, sub in (("cat", "2019"), ("cat", "2020/summer"), ("dog", "")):
        d = img / "train" / label / sub
        d.mkdir(parents=True, exist_ok=True)
        for i in range(6):
            (d / f"x{i}.png").write_bytes(png_bytes(rng.integers(0, 255, (8, 8), dtype=np.uint8)))
    res = run_ingest_images(spark, IngestImagesConfig(str(img), str(tmp_path / "ids"), ImageSpec(8, 8, 1)))
    assert res.labels == ["cat", "dog"] and res.rejected == 0 and sum(res.counts.values()) == 18
    txt = tmp_path / "texts"
    for label, sub in (("pos", "2019"), ("neg", "a/b")):
        d = txt / label / sub
        d.mkdir(parents=True)
        for i in range(8):
            (d / f"{i}.txt").write_text(f"{label} words number {i}")
    res = run_ingest_text(spark, IngestTextConfig(str(txt), str(tmp_path / "tds"), text=SPEC))
    assert res.labels == ["neg", "pos"] and sum(res.counts.values()) == 16


def test_keras_text_classifier_in_a_pipeline_saved_loaded_and_used(spark, tmp_path):
    from sparkdl_pipe.ml import KerasTextClassifier, KerasTextClassifierModel

    docs = make_docs(400, seed=6)
    train = spark.createDataFrame(docs[["id", "text", "label"]].rename(columns={"label": "sentiment"}))
    clf = KerasTextClassifier(inputCol="text", labelCol="sentiment", pathCol="id", maxLen=24, minCount=1,
                              epochs=4, batchSize=16, learningRate=2e-3, numProc=2, workDir=str(tmp_path / "w"))
    model = Pipeline(stages=[clf]).fit(train)
    stage = model.stages[-1]
    assert isinstance(stage, KerasTextClassifierModel)
    assert stage.trainResult.weights_digests[0] == stage.trainResult.weights_digests[1]
    assert stage.ingestResult.input_records == 400 and stage.trainResult.test_accuracy >= 0.85
    sel = stage.trainResult.selection  # model="auto": the same selection as train --model auto
    assert [c["name"] for c in sel["candidates"]] == ["textcnn", "fasttext"]
    assert stage.modelInfo().name == sel["winner"] and stage.modelInfo().card["selection"] == sel
    path = str(tmp_path / "pipe")
    model.write().overwrite().save(path)
    loaded = PipelineModel.load(path)
    saved = os.path.join(path, "stages", os.listdir(os.path.join(path, "stages"))[0], "model")
    assert os.path.exists(os.path.join(saved, "vocab.json")) and "candidates" not in os.listdir(saved)
    mine = make_docs(60, seed=7)
    new = spark.createDataFrame(pd.concat([mine[["text", "label"]],
                                           pd.DataFrame({"text": ["   "], "label": ["pos"]})], ignore_index=True))
    out = loaded.transform(new).toPandas()
    assert list(out.columns[:2]) == ["text", "label"] and len(out) == 61
    assert out["reject_reason"].tolist().count("empty_text") == 1
    ok = out[out["reject_reason"].isna()]
    assert (ok["predicted_label"] == ok["label"]).mean() >= 0.85
