"""Classic image model bodies: plain functions of validated arguments returning uncompiled tf_keras models.

A body takes the stored uint8 tensor and returns features; the task adds its head on top
(:mod:`sparkdl_pipe.tasks`), as Keras applications separate ``include_top``. Scaling to [0, 1] is
the body's first layer, so raw stored pixels go straight in at training and scoring time.
``build_mlp``/``build_cnn`` are the classifiers (body + softmax head) under their historical names.

Runs on: executors (inside Horovod ranks and scoring workers) and the driver (tests).
TensorFlow is imported inside each function.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparkdl_pipe.errors import UserInputError


def check_shape(input_shape: Sequence[int], ndim: int | None = None) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if any(d < 1 for d in shape) or (ndim is not None and len(shape) != ndim):
        raise UserInputError("model input shape", f"{ndim} positive dimensions" if ndim else
                             "positive dimensions", shape)
    return shape


def mlp_body(input_shape: Sequence[int], hidden: Sequence[int] = (256, 128), dropout: float = 0.2):
    """A multi-layer perceptron over flattened pixels (features: the last hidden layer).

    >>> m = mlp_body((28, 28, 1))  # doctest: +SKIP
    """
    shape = check_shape(input_shape)
    import tf_keras as keras

    inputs = keras.Input(shape=shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    for units in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, x, name="mlp")


def cnn_body(input_shape: Sequence[int], filters: Sequence[int] = (32, 64), dense: int = 128,
             dropout: float = 0.3):
    """A small convolutional network: [Conv3x3 + ReLU + MaxPool] per filter count, then Dense.

    With a softmax head, about 0.91 test accuracy on Fashion-MNIST in a few epochs.
    """
    shape = check_shape(input_shape, ndim=3)
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
    return keras.Model(inputs, x, name="cnn")


def with_head(body, task, n_outputs: int):
    """``body`` with ``task``'s head on top, as one model of the body's name."""
    return task.model(body, n_outputs)


def build_mlp(input_shape: Sequence[int], num_classes: int, **kwargs):
    """The MLP classifier: :func:`mlp_body` + a softmax over ``num_classes``."""
    from sparkdl_pipe.tasks import CLASSIFICATION

    return with_head(mlp_body(input_shape, **kwargs), CLASSIFICATION, num_classes)


def build_cnn(input_shape: Sequence[int], num_classes: int, **kwargs):
    """The CNN classifier: :func:`cnn_body` + a softmax over ``num_classes``."""
    from sparkdl_pipe.tasks import CLASSIFICATION

    return with_head(cnn_body(input_shape, **kwargs), CLASSIFICATION, num_classes)


def conv_encoder_body(input_shape: Sequence[int], filters: Sequence[int] = (32, 64)):
    """A convolutional encoder: [Conv3x3 stride 2 + ReLU] per filter count, flattened (no dropout).

    The body of ``conv_autoencoder``: the autoencoder task puts the bottleneck (``embedding``) and
    the decoder on top; with a softmax head it is a classifier like any body.
    """
    shape = check_shape(input_shape, ndim=3)
    import tf_keras as keras

    inputs = keras.Input(shape=shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for f in filters:
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, x, name="conv_autoencoder")


def build_conv_autoencoder(input_shape: Sequence[int], bottleneck: int = 32, **kwargs):
    """The convolutional autoencoder: :func:`conv_encoder_body` + a ``bottleneck``-sized linear
    ``embedding`` + a transposed-convolution decoder back to ``input_shape`` (sigmoid pixels in [0, 1])."""
    from sparkdl_pipe.tasks import AUTOENCODER

    return with_head(conv_encoder_body(input_shape, **kwargs), AUTOENCODER, bottleneck)
