"""A user's own model builder, named as tests.user_models:build_tiny in tests."""


def build_tiny(input_shape, num_classes):
    import tf_keras as keras

    inp = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="tiny")
