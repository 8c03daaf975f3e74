"""inspector: open up pretrained transformers and look at every head's attention.

>>> import inspector
>>> m = inspector.load("minilm")            # doctest: +SKIP
>>> ins = m.inspect("The cat sat on the mat.")  # doctest: +SKIP
>>> ins.frame().head()                       # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .api import (
    Atlas,
    Comparison,
    Explainer,
    FaithfulnessResult,
    Inspection,
    LoadedModel,
    ModelLike,
    RetrievalHeads,
    Scan,
    Target,
    atlas,
    compare,
    detect_heads,
    estimate_memory,
    faithfulness,
    head_importance,
    head_metrics,
    head_similarity,
    list_embedded,
    list_explainers,
    list_metrics,
    load,
    read_atlas,
    read_parquet,
    register_explainer,
    register_metric,
    retrieval_heads,
    scan,
    syntax_probe,
)
from .errors import (
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

try:
    __version__ = version("attention-inspector")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

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
    "__version__",
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
