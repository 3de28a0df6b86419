"""Models: every family registers itself in `registry` (the Table-1 ResNets in `resnet`, Table 2's
embedding baselines in `embedding`, PANNs' CNN14 in `panns`, EfficientAT's MobileNets in `efficientat`, CED's transformers in `ced`); build one with `create(name)` or,
from a stored config, `from_config`, and ask what it can do through the `AudioModel` capabilities."""

# registration order is the order of `available()`: the Table-1 ResNets first
from .resnet import AudioResNet, ModelConfig  # isort: skip
from .embedding import EmbeddingModel, EmbeddingModelConfig  # isort: skip
from .panns import Cnn14, PannsConfig  # isort: skip
from .efficientat import DynamicMobileNet, DynamicMobileNetConfig, MobileNet, MobileNetConfig  # isort: skip
from .ced import CED, CEDConfig  # isort: skip
from .registry import (
    FAMILIES,
    AudioModel,
    Family,
    available,
    create,
    family_of,
    from_config,
    frontend_for,
    register_family,
    run_settings,
    stored_config,
    variant_config,
)

__all__ = ["CED", "CEDConfig", "FAMILIES", "AudioModel", "AudioResNet", "Cnn14", "DynamicMobileNet", "DynamicMobileNetConfig", "EmbeddingModel", "EmbeddingModelConfig", "Family",
           "MobileNet", "MobileNetConfig", "ModelConfig", "PannsConfig", "available", "create", "family_of",
           "from_config", "frontend_for", "register_family", "run_settings", "stored_config", "variant_config"]
