"""Keras model builders and their registry."""

from sparkdl_pipe.models.registry import get_builder, list_models

__all__ = ["get_builder", "list_models"]
