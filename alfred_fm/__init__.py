"""alfred_fm: any Hugging Face language model behind one small, fast, correct interface."""
__version__ = "0.1.0"

from .queries import RankedQuery, CompletionQuery
from .responses import RankedResponse, CompletionResponse, to_dataframe
from .model import HuggingFaceModel

_INSPECTORS = ("inspect_candidates", "compare_reductions", "plot_candidates", "plot_reduction")

def __getattr__(name):
    "The inspectors load matplotlib and ipywidgets, so they are imported on first use, not with the package."
    if name in _INSPECTORS:
        from . import inspectors
        return getattr(inspectors, name)
    raise AttributeError(f"module 'alfred_fm' has no attribute {name!r}")

__all__ = ["HuggingFaceModel", "RankedQuery", "CompletionQuery", "RankedResponse", "CompletionResponse", "to_dataframe",
           *_INSPECTORS]
