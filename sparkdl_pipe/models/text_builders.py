"""Text model builders: token ids (int32, 0 = padding) in, class probabilities out.

Every text builder takes ``(input_shape, num_classes, vocab_size)``: ``input_shape`` is
``(max_len,)`` and ``vocab_size`` the number of ids including the reserved padding (0) and
out-of-vocabulary (1) ids, both recorded in the dataset manifest. User text builders named as
``module:function`` get the same three arguments.

Runs on: executors (inside Horovod ranks and scoring workers) and the driver (tests).
TensorFlow is imported inside each function.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.models.builders import _check


def _check_text(input_shape: Sequence[int], num_classes: int, vocab_size: int) -> tuple[int, ...]:
    shape = _check(input_shape, num_classes, ndim=1)
    if not isinstance(vocab_size, int) or vocab_size < 3:
        raise UserInputError("vocabulary size", "at least 3 ids (padding, out-of-vocabulary, one token)",
                             vocab_size, "Ingest more text or lower --min-count")
    return shape


def build_bilstm(input_shape: Sequence[int], num_classes: int, vocab_size: int, embed_dim: int = 64,
                 units: int = 32, dropout: float = 0.5):
    """Embedding (padding masked) -> bidirectional LSTM -> dropout -> softmax.

    >>> m = build_bilstm((64,), 2, vocab_size=20002)  # doctest: +SKIP
    """
    shape = _check_text(input_shape, num_classes, vocab_size)
    import tf_keras as keras

    inputs = keras.Input(shape=shape, dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=True)(inputs)
    x = keras.layers.Dropout(dropout / 2)(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(units))(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="bilstm")


def build_textcnn(input_shape: Sequence[int], num_classes: int, vocab_size: int, embed_dim: int = 64,
                  filters: int = 64, kernel_sizes: Sequence[int] = (3, 4, 5), dropout: float = 0.5):
    """Embedding -> parallel 1-D convolutions (one per kernel size) + global max pooling -> softmax.

    >>> m = build_textcnn((64,), 2, vocab_size=20002)  # doctest: +SKIP
    """
    shape = _check_text(input_shape, num_classes, vocab_size)
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
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="textcnn")
