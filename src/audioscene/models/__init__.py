"""Models: the Table-1 ResNet variants and Table 2's embedding baselines (`create`), and the protocol
every model family meets (`AudioModel`; `FAMILIES` rebuilds a stored config by its `family`)."""

from .embedding import EmbeddingModel, EmbeddingModelConfig
from .registry import (
                       FAMILIES,
                       AudioModel,
                       AudioResNet,
                       ModelConfig,
                       available,
                       config_for,
                       create,
                       from_config,
                       frontend_for,
)

__all__ = ["FAMILIES", "AudioModel", "AudioResNet", "EmbeddingModel", "EmbeddingModelConfig", "ModelConfig",
           "available", "config_for", "create", "from_config", "frontend_for"]
