"""alfred_fm: any Hugging Face language model behind one small, fast, correct interface."""
__version__ = "0.1.0"

from .queries import RankedQuery, CompletionQuery
from .responses import RankedResponse, CompletionResponse
from .model import HuggingFaceModel
# each of these adds its methods to HuggingFaceModel
from . import hidden_states, scoring, generation, run

__all__ = ["HuggingFaceModel", "RankedQuery", "CompletionQuery", "RankedResponse", "CompletionResponse"]
