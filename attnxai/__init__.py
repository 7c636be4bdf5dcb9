"""attnxai: audit transformer models with attention-weighted TCAV and attention-Shapley."""

from attnxai.errors import ConceptSetError, DataError, ModelLoadError, UserInputError
from attnxai.models import Capture, ModelAdapter, load_model

__version__ = "0.1.0"
__all__ = ["Capture", "ConceptSetError", "DataError", "ModelAdapter", "ModelLoadError",
           "UserInputError", "load_model", "__version__"]
