"""Text end to end: ingest -> Horovod training on 2 real ranks -> scoring raw text, no train/serve skew."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from sparkdl_pipe.config import IngestTextConfig, ScoreConfig, TrainConfig
from sparkdl_pipe.driver.ingest import run_ingest_text
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.preprocess.spec import TextSpec
from tests.text_corpus import expected_table_rejects, make_docs, write_table, write_txt_folder


@pytest.fixture(scope="module")
def text_ds(spark, tmp_path_factory):
    d = tmp_path_factory.mktemp("text-e2e")
    docs = make_docs(640, seed=1)
    src = str(d / "corpus.csv")
    write_table(docs, src, "csv")
    out = str(d / "ds")
    res = run_ingest_text(spark, IngestTextConfig(src, out, text=TextSpec(max_len=24, min_count=2), id_col="id"))
    assert res.rejected == sum(expected_table_rejects("csv").values())
    return docs, src, out, res


@pytest.fixture(scope="module")
def text_model(spark, text_ds, tmp_path_factory):
    _, _, ds, _ = text_ds
    out = str(tmp_path_factory.mktemp("text-model") / "m")
    res = run_training(spark, TrainConfig(ds, out, model="textcnn", epochs=4, batch_size=16, num_proc=2,
                                          learning_rate=2e-3))
    return out, res


def test_textcnn_two_ranks_learn_and_card_carries_the_vocabulary(text_model, text_ds):
    out, res = text_model
    _, _, ds, ing = text_ds
    assert res.num_proc == 2 and res.weights_digests[0] == res.weights_digests[1]
    assert res.test_accuracy is not None and res.test_accuracy >= 0.9 and res.val_accuracy >= 0.9
    card = json.load(open(os.path.join(out, "model_card.json")))
    assert card["name"] == "textcnn" and card["kind"] == "text" and card["input_dtype"] == "int32"
    assert card["preprocess"]["kind"] == "text" and card["preprocess"]["vocab_len"] == ing.vocab_size
    assert card["dataset"]["fingerprint"] == ing.fingerprint
    assert open(os.path.join(out, card["vocabulary_file"])).read() == open(os.path.join(ds, "vocab.json")).read()


def test_raw_text_scores_exactly_like_the_ingested_sequences(spark, text_model, text_ds, tmp_path):
    model, res = text_model
    docs, src, ds, _ = text_ds
    raw = run_scoring(spark, ScoreConfig(model, src, str(tmp_path / "raw"), id_col="id", batch_size=50))
    want_rej = expected_table_rejects("csv")
    want_rej.pop("missing_label")  # a label is not needed to score
    assert raw.input_rows == len(docs) + 4 and raw.scored == len(docs) + 1
    assert raw.rejects_by_reason == want_rej and raw.input_rows == raw.scored + raw.rejected
    assert raw.accuracy is not None and raw.accuracy >= 0.9
    split = run_scoring(spark, ScoreConfig(model, os.path.join(ds, "test"), str(tmp_path / "split")))
    a = pd.read_parquet(str(tmp_path / "raw" / "predictions"))
    b = pd.read_parquet(str(tmp_path / "split" / "predictions"))
    m = a.merge(b, on="id", suffixes=("_raw", "_ingested"))
    assert len(m) == split.input_rows > 30
    assert (m["prediction_raw"] == m["prediction_ingested"]).all()
    assert np.allclose(m["probability_raw"], m["probability_ingested"], atol=1e-6)
    assert split.accuracy == pytest.approx(res.test_accuracy, abs=1e-9)  # what the ranks measured


def test_score_txt_folder_and_unlabelled_jsonl(spark, text_model, tmp_path):
    model, _ = text_model
    docs = make_docs(20, seed=7)
    root = str(tmp_path / "txt")
    write_txt_folder(docs, root)
    sc = run_scoring(spark, ScoreConfig(model, root, str(tmp_path / "s1")))
    assert sc.input_rows == 23 and sc.scored == 21 and sc.skipped_hidden == 1
    assert sc.rejects_by_reason == {"empty_text": 1, "undecodable_text": 1}
    assert sc.labelled_rows == 20 and sc.accuracy >= 0.85  # the orphan file has no label folder
    jl = str(tmp_path / "new.jsonl")
    docs[["text"]].rename(columns={"text": "body"}).to_json(jl, orient="records", lines=True)
    sc = run_scoring(spark, ScoreConfig(model, jl, str(tmp_path / "s2"), text_col="body"))
    assert sc.input_rows == sc.scored == 20 and sc.accuracy is None
    with pytest.raises(UserInputError, match="no column 'review'"):
        run_scoring(spark, ScoreConfig(model, jl, str(tmp_path / "s3"), text_col="review"))


def test_bilstm_trains_on_two_ranks(spark, text_ds, tmp_path):
    _, _, ds, _ = text_ds
    res = run_training(spark, TrainConfig(ds, str(tmp_path / "m"), model="bilstm", epochs=3, batch_size=16,
                                          num_proc=2, learning_rate=3e-3))
    assert res.weights_digests[0] == res.weights_digests[1]
    assert res.test_accuracy is not None and res.test_accuracy >= 0.85


def test_image_model_on_text_dataset_is_refused(spark, text_ds, tmp_path):
    _, _, ds, _ = text_ds
    with pytest.raises(UserInputError, match="model 'cnn' is for image datasets"):
        run_training(spark, TrainConfig(ds, str(tmp_path / "m"), model="cnn"))


def test_auto_trains_both_cheap_models_and_publishes_the_better_on_val(spark, text_ds, tmp_path):
    _, _, ds, _ = text_ds
    out = tmp_path / "auto"
    res = run_training(spark, TrainConfig(ds, str(out), epochs=3, batch_size=16, num_proc=2, learning_rate=2e-3))
    card = json.load(open(out / "model_card.json"))
    sel = card["selection"]
    assert [c["name"] for c in sel["candidates"]] == ["textcnn", "fasttext"]  # both trained, same options
    assert all(c["trained"] == "train" and c["epochs"] == 3 and c["val_accuracy"] is not None
               for c in sel["candidates"])
    best = max(sel["candidates"], key=lambda c: (c["val_accuracy"], -c["val_loss"]))  # the recorded rule
    loser = next(c for c in sel["candidates"] if c is not best)
    assert sel["winner"] == best["name"] == card["name"] == card["training"]["model"] == res.selection["winner"]
    assert card["training"]["model_requested"] == "auto" and card["final"]["val_accuracy"] == best["val_accuracy"]
    assert res.val_accuracy == best["val_accuracy"] and res.model_id == card["model_id"] == best["model_id"]
    # the loser is a complete model directory under candidates/, nothing half-published beside the output
    other = out / "candidates" / loser["name"]
    assert loser["published_as"] == f"candidates/{loser['name']}" and (other / "model.keras").exists()
    assert (out / "checkpoints").exists() and not (other / "checkpoints").exists()  # a runner-up's are dropped
    assert json.load(open(other / "model_card.json"))["name"] == loser["name"]
    assert os.listdir(out / "candidates") == [loser["name"]] and sorted(os.listdir(tmp_path)) == ["auto"]
    assert "Model selection (`--model auto`)" in open(out / "report.md").read()
    # the published model loads and scores, with the accuracy the ranks measured
    sc = run_scoring(spark, ScoreConfig(str(out), os.path.join(ds, "test"), str(tmp_path / "s")))
    assert sc.accuracy == pytest.approx(res.test_accuracy, abs=1e-9) and sc.accuracy >= 0.85
