"""TF_USE_LEGACY_KERAS reaches every process that may import TensorFlow, without the user setting it."""

import os


def _env_in_task(_):
    import os

    yield os.environ.get("TF_USE_LEGACY_KERAS")


def test_driver_and_executors_use_keras_2(spark):
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    import tensorflow as tf

    assert tf.keras.__name__.startswith("tf_keras") or "tf_keras" in tf.keras.__file__
    seen = spark.sparkContext.parallelize(range(4), 4).mapPartitions(_env_in_task).collect()
    assert seen == ["1"] * 4
