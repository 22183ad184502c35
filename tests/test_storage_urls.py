"""Models and checkpoints on a storage URL: rank 0 writes on its own disk and uploads through pyarrow,
``--resume`` downloads the checkpoint, scoring tasks fetch the model once per node.

``file://`` URLs take the same code path as ``hdfs://`` and ``s3://``; the last test runs it against a
real S3 endpoint (moto's S3 server on 127.0.0.1, reached through pyarrow's S3 filesystem by the driver,
both Horovod ranks and the scoring tasks). Datasets stay on ``file://``: Spark's ``s3a://`` needs the
hadoop-aws jars, which cannot be fetched here. Real Spark, 2 real Horovod ranks, scikit-learn's digits.
"""

import logging
import os

import pandas as pd
import pytest

from sparkdl_pipe import model_card as mc
from sparkdl_pipe import storage
from sparkdl_pipe.config import ScoreConfig, TrainConfig
from sparkdl_pipe.driver.resume import work_dir
from sparkdl_pipe.driver.score import run_scoring
from sparkdl_pipe.driver.train import run_training
from sparkdl_pipe.errors import UserInputError

SMALL = {"model": "mlp", "batch_size": 32, "num_proc": 2, "learning_rate": 2e-3}
BUCKET = "sparkdl-test"


@pytest.fixture(scope="module")
def url_model(spark, digits_ds, tmp_path_factory):
    """An MLP trained for 2 epochs with ``--output file://...``: (path, url, TrainResult, card)."""
    path = str(tmp_path_factory.mktemp("url-models") / "m")
    url = "file://" + path
    res = run_training(spark, TrainConfig(digits_ds[0], url, epochs=2, **SMALL))
    return path, url, res, storage.read_json(storage.join(url, mc.CARD_FILE))


def test_train_to_a_url_publishes_model_checkpoints_and_logs(url_model):
    path, url, res, card = url_model
    # the model rank 0 uploaded is the one the card names (its sha256), and it loads in safe mode
    assert card["model_id"] == res.model_id == mc.file_sha256(os.path.join(path, mc.MODEL_FILE))[:16]
    from sparkdl_pipe.safe_model import check_model_file

    check_model_file(os.path.join(path, mc.MODEL_FILE), (8, 8, 1), 10)
    ck = set(storage.list_names(storage.join(url, "checkpoints")))
    assert {"epoch-001.weights.h5", "epoch-002.weights.h5", "epoch-001", "epoch-002", "last.json"} <= ck
    assert storage.read_json(storage.join(url, "checkpoints", "last.json"))["epoch"] == 2
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(path, "tensorboard")))
    assert os.path.exists(os.path.join(path, "report.md")) and os.listdir(os.path.join(path, "plots"))
    assert not storage.exists(work_dir(url))  # checkpoints moved into the model, heartbeats gone
    assert os.listdir(os.path.dirname(path)) == ["m"]  # no staging directory left either
    assert res.test_accuracy is not None and res.test_accuracy > 0.6


def test_score_from_the_model_url_matches_the_plain_path(spark, url_model, digits_folder, tmp_path):
    path, url, res, _ = url_model
    test_dir = os.path.join(digits_folder, "test")
    s_url = run_scoring(spark, ScoreConfig(url, "file://" + test_dir, "file://" + str(tmp_path / "s1")))
    s_path = run_scoring(spark, ScoreConfig(path, test_dir, str(tmp_path / "s2")))
    assert s_url.input_rows == s_path.input_rows == 360 and s_url.scored == 360
    assert s_url.model_id == res.model_id
    assert s_url.accuracy == pytest.approx(res.test_accuracy, abs=1e-9)  # what the ranks measured
    a = pd.read_parquet(str(tmp_path / "s1" / "predictions"))
    b = pd.read_parquet(str(tmp_path / "s2" / "predictions"))
    m = a.merge(b, on="path", suffixes=("", "_p"))
    assert len(m) == 360 and (m["prediction"] == m["prediction_p"]).all()
    assert (m["probability"] - m["probability_p"]).abs().max() < 1e-6


def test_resume_from_a_url_work_directory(spark, url_model, digits_ds, tmp_path):
    _, src, res, card = url_model
    url = "file://" + str(tmp_path / "m")
    storage.copy(src, url)  # a copy, so the fixture's model stays as trained
    # --resume: the checkpoints go to the work URL, rank 0 downloads epoch 2 and continues to 3
    more = run_training(spark, TrainConfig(digits_ds[0], url, epochs=3, resume=True, overwrite=True, **SMALL))
    card3 = storage.read_json(storage.join(url, mc.CARD_FILE))
    assert card3["training"]["resumed_from_epoch"] == 2
    assert [h["epoch"] for h in card3["history"]] == [1, 2, 3]
    assert card3["history"][:2] == card["history"]  # restored from the checkpoint, not retrained
    assert "epoch-003" in storage.list_names(storage.join(url, "checkpoints"))
    assert card3["model_id"] == more.model_id == mc.file_sha256(storage.local_path(url) + "/model.keras")[:16]
    assert more.model_id != res.model_id and not storage.exists(work_dir(url))


def test_unsupported_storage_scheme_is_one_clear_error(spark, digits_ds):
    with pytest.raises(UserInputError, match="expected a path or a file://, hdfs://, s3:// or s3a:// URL"):
        run_training(spark, TrainConfig(digits_ds[0], "gs://bucket/m", **SMALL))


@pytest.fixture()
def s3(spark):
    """An S3 endpoint with an empty bucket; the AWS_* settings in this process and in the executors."""
    from moto.server import ThreadedMotoServer
    from pyarrow import fs as pafs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the driver, and the Horovod ranks (they get the driver's environment)
    sc_env = spark.sparkContext.environment  # what `--conf spark.executorEnv.AWS_...=` gives the scoring tasks
    sc_env.update(env)
    try:
        pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
                          allow_bucket_creation=True).create_dir(BUCKET)
        yield f"s3://{BUCKET}"
    finally:
        for k, v in saved.items():
            sc_env.pop(k, None)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def test_model_and_checkpoints_on_s3_resume_and_score(spark, s3, url_model, digits_ds, digits_folder, tmp_path):
    _, src, res, card = url_model
    url = f"{s3}/models/m"
    storage.copy(src, url)  # the trained model directory, checkpoints included, now on S3
    # --resume on S3 (given as s3a://): checkpoints copied to the work URL, rank 0 downloads epoch 2,
    # trains epoch 3 and uploads checkpoint, model and logs; heartbeats go through S3; publish copies
    more = run_training(spark, TrainConfig(digits_ds[0], f"s3a://{BUCKET}/models/m", epochs=3, resume=True,
                                           overwrite=True, **SMALL))
    card3 = storage.read_json(storage.join(url, mc.CARD_FILE))
    assert card3["training"]["resumed_from_epoch"] == 2 and [h["epoch"] for h in card3["history"]] == [1, 2, 3]
    assert card3["history"][:2] == card["history"]
    local = str(tmp_path / "model.keras")
    storage.download(storage.join(url, mc.MODEL_FILE), local)
    assert card3["model_id"] == more.model_id == mc.file_sha256(local)[:16] != res.model_id
    assert {"epoch-001", "epoch-003", "epoch-003.weights.h5", "last.json"} <= \
        set(storage.list_names(storage.join(url, "checkpoints")))
    assert storage.read_json(storage.join(url, "checkpoints", "last.json"))["epoch"] == 3
    assert "report.md" in storage.list_names(url) and storage.list_names(storage.join(url, "tensorboard"))
    assert storage.list_names(f"{s3}/models") == ["m"]  # published; no staging or work directory left

    # scoring tasks fetch the model from S3 into their node's cache: the ranks' test accuracy exactly
    out = str(tmp_path / "scores")
    sc = run_scoring(spark, ScoreConfig(url, os.path.join(digits_folder, "test"), out))
    assert sc.input_rows == sc.scored == 360 and sc.model_id == more.model_id
    assert sc.accuracy == pytest.approx(more.test_accuracy, abs=1e-9)
    got = pd.read_parquet(os.path.join(out, "predictions"))
    assert len(got) == 360 and got["model_id"].eq(more.model_id).all()
    from sparkdl_pipe.model_fetch import fetch_model

    assert mc.file_sha256(fetch_model(storage.join(url, mc.MODEL_FILE), more.model_id)) == mc.file_sha256(local)
