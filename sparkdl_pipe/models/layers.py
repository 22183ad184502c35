"""The package's own Keras layers, registered by name so that saved models load in Keras' safe mode.

``HashedBigrams`` turns a row of token ids into the hashed ids of its adjacent token pairs (the
fastText bigram trick) with integer ops only, so the bigram ids are computed inside the model, at
training and at scoring, from the stored token ids alone. :func:`ensure_registered` is called
before any model file is loaded (:mod:`sparkdl_pipe.safe_model`): a layer of this module loads from
the package's own code, never from the file; any other unknown class is still refused.

Runs on: executors (ranks, scoring workers) and the driver. TensorFlow is imported on first use.
"""

from __future__ import annotations

import functools

#: Odd 31-bit multipliers of the bigram hash (Knuth's multiplicative constants, reduced).
_MUL_A, _MUL_B = 0x9E3779B1 & 0x7FFFFFFF, 0x85EBCA77 & 0x7FFFFFFF
#: The id standing before a document's first token in its first bigram (no token has it).
_START = 2**30 + 7


@functools.cache
def hashed_bigrams_class():
    """The ``HashedBigrams`` layer class (registered as ``sparkdl_pipe>HashedBigrams``)."""
    import tensorflow as tf
    import tf_keras as keras

    @keras.saving.register_keras_serializable(package="sparkdl_pipe", name="HashedBigrams")
    class HashedBigrams(keras.layers.Layer):
        """(batch, L) int token ids -> (batch, L) int32 bigram ids in ``[1, num_bins)``: position i
        holds the pair (token i - 1, token i), with a start-of-document mark before token 0, so a
        document of one token still has one bigram (a masked mean over none would be 0/0). 0 where
        token i is padding (0), so padding stays masked.

        >>> HashedBigrams(1000)(tf.constant([[5, 7, 0]])).shape  # doctest: +SKIP
        TensorShape([1, 3])
        """

        def __init__(self, num_bins: int, **kwargs):
            super().__init__(**kwargs)
            if int(num_bins) < 2:
                raise ValueError(f"num_bins must be at least 2, got {num_bins}")
            self.num_bins = int(num_bins)

        def call(self, tokens):
            b = tf.cast(tokens, tf.int64)
            start = tf.fill(tf.stack([tf.shape(b)[0], 1]), tf.constant(_START, tf.int64))
            a = tf.concat([start, b[:, :-1]], axis=1)
            h = (a * _MUL_A + b * _MUL_B + (a * b) % 65521) % (self.num_bins - 1) + 1
            return tf.cast(tf.where(b > 0, h, tf.zeros_like(h)), tf.int32)

        def compute_output_shape(self, input_shape):
            return tuple(input_shape)

        def get_config(self):
            return {**super().get_config(), "num_bins": self.num_bins}

    return HashedBigrams


def ensure_registered() -> None:
    """Register the package's layers with Keras (idempotent); call before loading a model file."""
    hashed_bigrams_class()
