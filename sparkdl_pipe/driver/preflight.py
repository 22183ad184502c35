"""Checks of a job's configuration that need no SparkSession, run before one is started.

A user mistake (a missing dataset, an unknown model, an existing output, a model card that does not
match the data to score) then costs a second, not a JVM start, and is one line with exit status 2.
The ``run_*`` functions make the same checks again (they are the API), so this is only about speed.

Runs on: driver.
"""

from __future__ import annotations

from sparkdl_pipe import storage
from sparkdl_pipe.config import (
    BaselineTextConfig,
    IngestConfig,
    IngestImagesConfig,
    IngestTextConfig,
    ScoreConfig,
    TrainConfig,
    as_ingest_config,
)
from sparkdl_pipe.errors import DatasetError, UserInputError


def preflight(cfg: IngestConfig | IngestImagesConfig | IngestTextConfig | TrainConfig | ScoreConfig
              | BaselineTextConfig) -> None:
    """Raise the error the job would raise for a mistake that is visible without Spark."""
    if isinstance(cfg, BaselineTextConfig):
        from sparkdl_pipe.manifest import load_dataset_info

        if load_dataset_info(cfg.dataset).kind != "text":
            raise UserInputError(f"baseline-text needs a text dataset, {cfg.dataset} is not one",
                                 fix="Give the output of ingest-text")
        return
    if isinstance(cfg, TrainConfig):
        from sparkdl_pipe.manifest import load_dataset_info
        from sparkdl_pipe.models.registry import get_builder, resolve_model

        info = load_dataset_info(cfg.dataset)
        get_builder(resolve_model(cfg.model, info.kind))
        if not cfg.resume:
            storage.check_output(storage.to_url(cfg.output), cfg.overwrite)
        return
    if isinstance(cfg, ScoreConfig):
        from sparkdl_pipe.manifest import load_dataset_info
        from sparkdl_pipe.model_card import load_model_info

        model = load_model_info(cfg.model)
        inp = storage.to_url(cfg.input)
        if not storage.exists(inp):
            raise DatasetError(f"input {cfg.input} does not exist")
        parent = inp.rsplit("/", 1)[0]
        if storage.exists(storage.join(parent, storage.MANIFEST_FILE)) and inp.rsplit("/", 1)[1] in storage.SPLITS:
            info = load_dataset_info(parent)
            if info.spec.fingerprint() != model.spec.fingerprint():
                raise DatasetError("the data's preprocessing does not match the model's",
                                   f"{model.spec.to_dict()} (model card)", info.spec.to_dict(),
                                   "Re-ingest the data with the model's image size and channels, or score raw files")
        storage.check_output(storage.to_url(cfg.output), cfg.overwrite)
        return
    from sparkdl_pipe import modalities
    from sparkdl_pipe.driver.sources import detect_format

    icfg = as_ingest_config(cfg)
    modality = modalities.get(icfg.kind)
    inp = storage.to_url(icfg.input)
    if not storage.exists(inp):
        raise DatasetError(f"input {icfg.input} does not exist", fix=f"Give {modality.describe_input()}")
    detect_format(inp, icfg.input_format, modality.describe_input())  # an unknown format: one line here
    storage.check_output(storage.to_url(icfg.output), icfg.overwrite)
