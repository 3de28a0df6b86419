"""Models: the Table-1 ResNet variants (`registry.create`) and the protocol every model family meets
(`AudioModel`; `FAMILIES` rebuilds a stored config by its `family`)."""

from .registry import FAMILIES, AudioModel, AudioResNet, ModelConfig, available, config_for, create, from_config

__all__ = ["FAMILIES", "AudioModel", "AudioResNet", "ModelConfig", "available", "config_for", "create", "from_config"]
