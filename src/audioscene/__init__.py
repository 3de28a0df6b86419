"""audioscene: audio tagging and weakly-supervised sound event detection with residual networks."""

__version__ = "0.1.0"
