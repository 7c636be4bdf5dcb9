"""Model adapters: one interface over HF text/vision classifiers, timm ViTs and the built-ins."""

from attnxai.models.base import Batch, ModelAdapter, Recorded, default_device
from attnxai.models.capture import Capture
from attnxai.models.loading import BUILTINS, NEWS_TOPICS, load_model

__all__ = ["BUILTINS", "NEWS_TOPICS", "Batch", "Capture", "ModelAdapter", "Recorded",
           "default_device", "load_model"]
