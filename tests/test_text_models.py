"""Text model builders and the registry's dataset-kind rules."""

import numpy as np
import pytest

from sparkdl_pipe.errors import UserInputError
from sparkdl_pipe.models import get_builder, list_models
from sparkdl_pipe.models.registry import resolve_model


@pytest.mark.parametrize("name", ["textcnn", "bilstm", "fasttext"])
def test_text_builders_make_softmax_models_that_survive_a_safe_reload(name, tmp_path):
    m = get_builder(name)((10,), 3, vocab_size=50)
    x = np.zeros((4, 10), dtype=np.int32)
    x[:, :3] = [[5, 6, 1], [7, 2, 3], [1, 1, 1], [49, 4, 2]]  # padded with 0 at the end
    p = np.asarray(m(x))
    assert p.shape == (4, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    import tf_keras as keras

    path = str(tmp_path / "m.keras")
    m.save(path)
    again = keras.models.load_model(path, compile=False, safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(x)), p, rtol=1e-5)


def test_text_builder_validation_and_kinds():
    with pytest.raises(UserInputError, match="vocabulary size"):
        get_builder("textcnn")((10,), 2, vocab_size=2)
    with pytest.raises(UserInputError, match="1 positive"):
        get_builder("bilstm")((10, 4), 2, vocab_size=50)
    assert list_models("text") == ["bilstm", "fasttext", "textcnn"] and \
        list_models("image") == ["cnn", "conv_autoencoder", "mlp"]
    assert resolve_model("auto", "image") == "cnn" and resolve_model("auto", "text") == "textcnn"
    assert resolve_model("mypkg:build", "text") == "mypkg:build"
    with pytest.raises(UserInputError, match="is for text datasets"):
        resolve_model("bilstm", "image")
