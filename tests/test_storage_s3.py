"""Models and checkpoints on a real S3 endpoint: moto's S3 server on 127.0.0.1, reached through pyarrow's
S3 filesystem by the driver, both Horovod ranks and the scoring tasks. (Datasets stay on ``file://``:
Spark's ``s3a://`` needs the hadoop-aws jars, which cannot be fetched here.)"""

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

SMALL = {"model": "mlp", "batch_size": 32, "num_proc": 2, "learning_rate": 2e-3}
BUCKET = "sparkdl-test"


@pytest.fixture(scope="module")
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
    # what `--conf spark.executorEnv.AWS_...=` does for a user: the settings reach the scoring tasks
    sc_env = spark.sparkContext.environment
    sc_env.update(env)
    pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
                      allow_bucket_creation=True).create_dir(BUCKET)
    try:
        yield f"s3://{BUCKET}"
    finally:
        for k, v in saved.items():
            sc_env.pop(k, None)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def test_model_and_checkpoints_on_s3_train_resume_score(spark, s3, digits_ds, digits_folder, tmp_path):
    ds = digits_ds[0]
    url = f"{s3}/models/m"
    res = run_training(spark, TrainConfig(ds, url, epochs=1, **SMALL))
    card = storage.read_json(storage.join(url, mc.CARD_FILE))
    local = str(tmp_path / "model.keras")
    storage.download(storage.join(url, mc.MODEL_FILE), local)
    assert card["model_id"] == res.model_id == mc.file_sha256(local)[:16]
    assert {"epoch-001", "epoch-001.weights.h5", "last.json"} <= set(storage.list_names(storage.join(url, "checkpoints")))
    assert "report.md" in storage.list_names(url) and storage.list_names(storage.join(url, "tensorboard"))
    assert storage.list_names(f"{s3}/models") == ["m"]  # published; no staging or work directory left
    assert not storage.exists(work_dir(url))

    # --resume on S3: the checkpoint is copied to the work URL, rank 0 downloads it and continues
    more = run_training(spark, TrainConfig(ds, f"s3a://{BUCKET}/models/m", epochs=2, resume=True, overwrite=True,
                                           **SMALL))
    card2 = storage.read_json(storage.join(url, mc.CARD_FILE))
    assert card2["training"]["resumed_from_epoch"] == 1 and [h["epoch"] for h in card2["history"]] == [1, 2]
    assert card2["history"][0] == card["history"][0]
    assert "epoch-002" in storage.list_names(storage.join(url, "checkpoints"))
    storage.download(storage.join(url, mc.MODEL_FILE), local + "2")
    assert card2["model_id"] == more.model_id == mc.file_sha256(local + "2")[:16]

    # scoring tasks fetch the model from S3: the predictions of the model file itself
    out = str(tmp_path / "scores")
    sc = run_scoring(spark, ScoreConfig(url, os.path.join(digits_folder, "test"), out))
    assert sc.input_rows == sc.scored == 360 and sc.model_id == more.model_id
    assert sc.accuracy == pytest.approx(more.test_accuracy, abs=1e-9)
    got = pd.read_parquet(os.path.join(out, "predictions"))
    assert len(got) == 360 and got["model_id"].eq(more.model_id).all()
    # the cached copy the tasks loaded is the uploaded file, byte for byte
    from sparkdl_pipe.model_fetch import fetch_model

    assert mc.file_sha256(fetch_model(storage.join(url, mc.MODEL_FILE), more.model_id)) == mc.file_sha256(local + "2")
