"""The facade: ``load`` → :class:`LoadedModel` → ``inspect`` → :class:`Inspection`, plus the
functions over many inputs. The CLI imports nothing but this package.

Every function that needs a model takes a :data:`ModelLike` (a loaded model, a name, a folder, a
``.gguf`` file, a hub id or a ``(model, tokenizer)`` pair).
"""

from ..analysis.metrics import list_metrics, register_metric
from ..analysis.roles import ROLES, head_roles, top_heads
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
    check_not_input,
    check_output,
    default_checkpoint,
    distances_path,
    head_importance,
    head_metrics,
    head_similarity,
    read_atlas,
    read_parquet,
    replacing_read_only,
    save_table,
    syntax_probe,
)
from .faithfulness_corpus import faithfulness
from .faithfulness_result import FaithfulnessResult, faithfulness_methods
from .faithfulness_result import scores_path as faithfulness_scores_path
from .inspection import Inspection
from .model import LoadedModel, ModelLike, as_model, detect_heads, load
from .results import Atlas, Comparison, compare
from .retrieval import RetrievalHeads, retrieval_heads
from .scanning import Scan, estimate_memory, scan, scan_files

__all__ = [
    "ROLES",
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
    "as_model",
    "atlas",
    "check_not_input",
    "check_output",
    "compare",
    "default_checkpoint",
    "detect_heads",
    "distances_path",
    "estimate_memory",
    "faithfulness",
    "faithfulness_methods",
    "faithfulness_scores_path",
    "head_importance",
    "head_metrics",
    "head_roles",
    "head_similarity",
    "list_embedded",
    "list_explainers",
    "list_metrics",
    "load",
    "read_atlas",
    "read_parquet",
    "register_explainer",
    "register_metric",
    "replacing_read_only",
    "retrieval_heads",
    "save_table",
    "scan",
    "scan_files",
    "syntax_probe",
    "top_heads",
]
