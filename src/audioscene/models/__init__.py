"""Table-1 ResNet variants for audio tagging; see `registry.create`."""

from .registry import AudioResNet, ModelConfig, available, config_for, create, from_config

__all__ = ["AudioResNet", "ModelConfig", "available", "config_for", "create", "from_config"]
