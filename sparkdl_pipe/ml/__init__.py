"""Spark ML API: Estimators and Transformers that fit into a ``pyspark.ml.Pipeline``.

Runs on: driver.
"""

from sparkdl_pipe.ml.featurizer import KerasFeaturizer
from sparkdl_pipe.ml.image import KerasImageClassifier, KerasImageClassifierModel
from sparkdl_pipe.ml.text import KerasTextClassifier, KerasTextClassifierModel

__all__ = ["KerasFeaturizer", "KerasImageClassifier", "KerasImageClassifierModel", "KerasTextClassifier",
           "KerasTextClassifierModel"]
