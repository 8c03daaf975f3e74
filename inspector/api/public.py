"""The names ``import inspector`` exports, listed once: ``inspector/__init__.py`` and
:mod:`inspector.api` re-export this module's ``__all__``. It defines nothing itself."""

from ..analysis.metrics import list_metrics, register_metric
from ..errors import (
    AttentionUnavailableError,
    CaptureError,
    InputError,
    InputTooLongError,
    InspectorError,
    InspectorWarning,
    ModelLoadError,
    ResourceError,
    UnsupportedModelError,
)
from ..explain.registry import Explainer, list_explainers, register_explainer
from ..explain.target import Target
from ..models.loading import list_embedded
from .corpus import (
    atlas,
    head_importance,
    head_metrics,
    head_similarity,
    read_atlas,
    read_parquet,
    syntax_probe,
)
from .faithfulness_corpus import faithfulness
from .faithfulness_result import FaithfulnessResult
from .inspection import Inspection
from .model import LoadedModel, ModelLike, detect_heads, load
from .results import Atlas, Comparison, compare
from .retrieval import RetrievalHeads, retrieval_heads
from .scanning import Scan, estimate_memory, scan

__all__ = [
    "Atlas",
    "AttentionUnavailableError",
    "CaptureError",
    "Comparison",
    "Explainer",
    "FaithfulnessResult",
    "InputError",
    "InputTooLongError",
    "Inspection",
    "InspectorError",
    "InspectorWarning",
    "LoadedModel",
    "ModelLike",
    "ModelLoadError",
    "ResourceError",
    "RetrievalHeads",
    "Scan",
    "Target",
    "UnsupportedModelError",
    "atlas",
    "compare",
    "detect_heads",
    "estimate_memory",
    "faithfulness",
    "head_importance",
    "head_metrics",
    "head_similarity",
    "list_embedded",
    "list_explainers",
    "list_metrics",
    "load",
    "read_atlas",
    "read_parquet",
    "register_explainer",
    "register_metric",
    "retrieval_heads",
    "scan",
    "syntax_probe",
]
