"""Spark ML API: Estimators and Transformers that fit into a ``pyspark.ml.Pipeline``.

Runs on: driver.
"""

from sparkdl_pipe.ml.image import KerasImageClassifier, KerasImageClassifierModel

__all__ = ["KerasImageClassifier", "KerasImageClassifierModel"]
