"""Model cards: the JSON beside every trained model (what it was trained on, how to feed it).

Runs on: driver (executors get the plain values they need).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sparkdl_pipe import storage
from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.preprocess.spec import spec_from_dict

CARD_FILE = "model_card.json"
MODEL_FILE = "model.keras"
FORMAT = "sparkdl_pipe.model"
FORMAT_VERSION = 1


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model card plus where its model file is."""

    url: str
    card: dict[str, Any]

    @property
    def model_url(self) -> str:
        """URL of the Keras file (any scheme; executors fetch it with :func:`fetch_model`)."""
        return storage.join(self.url, self.card["model_file"])

    @property
    def model_path(self) -> str:
        """Local path of the Keras file (``file://`` models only; see :attr:`model_url`)."""
        return storage.local_path(self.model_url)

    @property
    def model_id(self) -> str:
        return str(self.card["model_id"])

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    @property
    def spec(self) -> Any:
        return spec_from_dict(self.card["preprocess"])

    @property
    def kind(self) -> str:
        return str(self.card.get("kind", "image"))

    @property
    def task(self) -> str:
        """What the model learnt (cards written before tasks existed: classification)."""
        return str(self.card.get("task", "classification"))

    @property
    def vocab_url(self) -> str:
        """URL of the vocabulary a text model was trained with (copied into the model directory)."""
        return storage.join(self.url, self.card["vocabulary_file"])


def load_model_info(url: str) -> ModelInfo:
    """Read a model directory's card; a clear error when it is not a sparkdl_pipe model."""
    u, card = storage.read_metadata(url, CARD_FILE, "model", "sparkdl-pipe train")
    if card.get("format") != FORMAT:
        raise DatasetError("model card format", FORMAT, card.get("format"))
    return ModelInfo(u, card)
