"""Text model bodies: token ids (int32, 0 = padding) in, features out; the task adds the head.

Every text body takes ``(input_shape, vocab_size)``: ``input_shape`` is ``(max_len,)`` and
``vocab_size`` the number of ids including the reserved padding (0) and out-of-vocabulary (1) ids,
both recorded in the dataset manifest (the text modality's ``model_extras``). User text builders
named as ``module:function`` get ``(input_shape, num_classes, vocab_size=...)``.
``build_bilstm``/``build_textcnn`` are the classifiers under their historical names.

Runs on: executors (inside Horovod ranks and scoring workers) and the driver (tests).
TensorFlow is imported inside each function.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.models.builders import check_shape, with_head


def _check_text(input_shape: Sequence[int], vocab_size: int) -> tuple[int, ...]:
    shape = check_shape(input_shape, ndim=1)
    if not isinstance(vocab_size, int) or vocab_size < 3:
        raise UserInputError("vocabulary size", "at least 3 ids (padding, out-of-vocabulary, one token)",
                             vocab_size, "Ingest more text or lower --min-count")
    return shape


def bilstm_body(input_shape: Sequence[int], vocab_size: int, embed_dim: int = 64, units: int = 32,
                dropout: float = 0.5):
    """Embedding (padding masked) -> bidirectional LSTM -> dropout.

    >>> m = bilstm_body((64,), vocab_size=20002)  # doctest: +SKIP
    """
    shape = _check_text(input_shape, vocab_size)
    import tf_keras as keras

    inputs = keras.Input(shape=shape, dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True)(inputs)
    x = keras.layers.Dropout(dropout / 2)(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(units))(x)
    x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, x, name="bilstm")


def textcnn_body(input_shape: Sequence[int], vocab_size: int, embed_dim: int = 64, filters: int = 64,
                 kernel_sizes: Sequence[int] = (3, 4, 5), dropout: float = 0.5):
    """Embedding -> parallel 1-D convolutions (one per kernel size) + global max pooling -> dropout.

    >>> m = textcnn_body((64,), vocab_size=20002)  # doctest: +SKIP
    """
    shape = _check_text(input_shape, vocab_size)
    import tf_keras as keras

    inputs = keras.Input(shape=shape, dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_dim)(inputs)
    x = keras.layers.Dropout(dropout / 2)(x)
    pooled = []
    for k in kernel_sizes:
        c = keras.layers.Conv1D(filters, min(int(k), shape[0]), padding="same", activation="relu")(x)
        pooled.append(keras.layers.GlobalMaxPooling1D()(c))
    x = keras.layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, x, name="textcnn")


def fasttext_body(input_shape: Sequence[int], vocab_size: int, embed_dim: int = 64, bigram_bins: int = 2**16,
                  dropout: float = 0.2):
    """fastText-style bag of n-grams: token embeddings and hashed-bigram embeddings (padding
    masked), each mean-pooled over the whole document, concatenated -> layer normalisation -> dropout.

    Cost per document is linear in its length and nothing is lost to a window or a filter width,
    so it takes long documents whole (store them long: ``--max-len auto``). The bigram ids are
    computed in the model from the token ids (:mod:`sparkdl_pipe.models.layers`), so scoring needs
    nothing but the stored tokens. The softmax head the task adds is the linear classifier of
    fastText.

    >>> m = fasttext_body((512,), vocab_size=20002)  # doctest: +SKIP
    """
    shape = _check_text(input_shape, vocab_size)
    import tf_keras as keras

    from sparkdl_pipe.models.layers import hashed_bigrams_class

    inputs = keras.Input(shape=shape, dtype="int32", name="tokens")
    words = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True, name="token_embedding")(inputs)
    bigram_ids = hashed_bigrams_class()(int(bigram_bins), name="hashed_bigrams")(inputs)
    bigrams = keras.layers.Embedding(int(bigram_bins), embed_dim, mask_zero=True, name="bigram_embedding")(bigram_ids)
    # every stored document has a first token (empty ones are rejects), so neither mean is over nothing
    pooled = [keras.layers.GlobalAveragePooling1D(name="token_mean")(words),
              keras.layers.GlobalAveragePooling1D(name="bigram_mean")(bigrams)]
    x = keras.layers.Concatenate(name="ngram_means")(pooled)
    # the mean of many small embeddings is tiny: normalised, the head learns at the usual learning
    # rate (on the news corpus, validation accuracy 0.76 after one epoch instead of 0.22; NOTES)
    x = keras.layers.LayerNormalization(name="ngram_norm")(x)
    x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, x, name="fasttext")


def build_fasttext(input_shape: Sequence[int], num_classes: int, vocab_size: int, **kwargs):
    """The fastText-style classifier: :func:`fasttext_body` + a softmax over ``num_classes``."""
    from sparkdl_pipe.tasks import CLASSIFICATION

    return with_head(fasttext_body(input_shape, vocab_size, **kwargs), CLASSIFICATION, num_classes)


def build_bilstm(input_shape: Sequence[int], num_classes: int, vocab_size: int, **kwargs):
    """The BiLSTM classifier: :func:`bilstm_body` + a softmax over ``num_classes``."""
    from sparkdl_pipe.tasks import CLASSIFICATION

    return with_head(bilstm_body(input_shape, vocab_size, **kwargs), CLASSIFICATION, num_classes)


def build_textcnn(input_shape: Sequence[int], num_classes: int, vocab_size: int, **kwargs):
    """The TextCNN classifier: :func:`textcnn_body` + a softmax over ``num_classes``."""
    from sparkdl_pipe.tasks import CLASSIFICATION

    return with_head(textcnn_body(input_shape, vocab_size, **kwargs), CLASSIFICATION, num_classes)
