"""Spark ML API: Estimators and Transformers that fit into a ``pyspark.ml.Pipeline``.

Runs on: driver.
"""

from sparkdl_pipe.ml.autoencoder import KerasImageAutoencoder, KerasImageAutoencoderModel
from sparkdl_pipe.ml.featurizer import KerasFeaturizer
from sparkdl_pipe.ml.image import (
    KerasImageClassifier,
    KerasImageClassifierModel,
    KerasImageRegressor,
    KerasImageRegressorModel,
)
from sparkdl_pipe.ml.text import (
    KerasTextClassifier,
    KerasTextClassifierModel,
    KerasTextRegressor,
    KerasTextRegressorModel,
)

__all__ = ["KerasFeaturizer", "KerasImageAutoencoder", "KerasImageAutoencoderModel", "KerasImageClassifier",
           "KerasImageClassifierModel", "KerasImageRegressor", "KerasImageRegressorModel", "KerasTextClassifier",
           "KerasTextClassifierModel", "KerasTextRegressor", "KerasTextRegressorModel"]
