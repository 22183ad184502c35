"""Classic model builders: plain functions of validated arguments returning uncompiled tf_keras models.

Every builder takes ``(input_shape, num_classes)`` and returns a model whose input is the stored
uint8 tensor and whose output is class probabilities (softmax). Scaling to [0, 1] is the model's
first layer, so raw stored pixels go straight in at training and scoring time.

Runs on: executors (inside Horovod ranks and scoring workers) and the driver (tests).
TensorFlow is imported inside each function.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparkdl_pipe.errors import UserInputError


def _check(input_shape: Sequence[int], num_classes: int, ndim: int | None = None) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if any(d < 1 for d in shape) or (ndim is not None and len(shape) != ndim):
        raise UserInputError("model input shape", f"{ndim} positive dimensions" if ndim else
                             "positive dimensions", shape)
    if num_classes < 2:
        raise UserInputError("number of classes", "at least 2", num_classes,
                             "The dataset needs at least two labels")
    return shape


def build_mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 128),
              dropout: float = 0.2):
    """A multi-layer perceptron over flattened pixels.

    >>> m = build_mlp((28, 28, 1), 10)  # doctest: +SKIP
    """
    shape = _check(input_shape, num_classes)
    import tf_keras as keras

    inputs = keras.Input(shape=shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    for units in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mlp")


def build_cnn(input_shape: Sequence[int], num_classes: int, filters: Sequence[int] = (32, 64),
              dense: int = 128, dropout: float = 0.3):
    """A small convolutional network: [Conv3x3 + ReLU + MaxPool] per filter count, then Dense.

    About 0.91 test accuracy on Fashion-MNIST in a few epochs.
    """
    shape = _check(input_shape, num_classes, ndim=3)
    import tf_keras as keras

    inputs = keras.Input(shape=shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for f in filters:
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(dense, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn")
