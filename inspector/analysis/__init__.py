"""Pure analysis of captured attention: metrics, roles, detectors, distances, comparisons, steps.

Every function here takes validated capture objects (:mod:`inspector.capture.types`) or the
frames made from them and returns frames or arrays; nothing imports the model layer (an
import-linter contract checks it), so everything can be tested with random attention.
"""

from .metrics import METRICS, Metric, describe_metric, head_metrics, list_metrics, register_metric

__all__ = [
    "METRICS",
    "Metric",
    "describe_metric",
    "head_metrics",
    "list_metrics",
    "register_metric",
]
