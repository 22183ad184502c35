import numpy as np
import pytest

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.models import get_builder, list_models


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_builders_make_softmax_models_on_uint8(name):
    m = get_builder(name)((12, 10, 3), 4)
    x = np.random.default_rng(0).integers(0, 255, (5, 12, 10, 3), dtype=np.uint8)
    p = np.asarray(m(x))
    assert p.shape == (5, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_handles_tiny_images():
    m = get_builder("cnn")((2, 2, 1), 3)
    assert m.output_shape == (None, 3)


def test_registry_errors_and_user_builders():
    assert {"mlp", "cnn"} <= set(list_models())
    with pytest.raises(UserInputError, match="one of"):
        get_builder("resnet9000")
    with pytest.raises(UserInputError, match="cannot import"):
        get_builder("no_such_module_xyz:build")
    with pytest.raises(UserInputError, match="builder"):
        get_builder("tests.user_models:missing")
    m = get_builder("tests.user_models:build_tiny")((8, 8, 1), 3)
    assert m.output_shape == (None, 3)


def test_builder_argument_validation():
    with pytest.raises(UserInputError, match="at least 2"):
        get_builder("mlp")((8, 8, 1), 1)
    with pytest.raises(UserInputError, match="3 positive"):
        get_builder("cnn")((8, 8), 3)
