"""Corpus scale: the head atlas over many texts and the syntactic head probe on a treebank.

* :mod:`.sources` - where texts come from; :mod:`.treebank` - CoNLL-U gold trees.
* :mod:`.aggregate` - mergeable per-head statistics; :mod:`.atlas` - the :class:`Atlas` result
  and its Parquet files; :mod:`.probe` - the probe's scoring and :class:`ProbeResult`.
* :mod:`.engine` - the local engines that run the model (atlas with checkpoints, probe);
  :mod:`.ray_engine` - the atlas on Ray Data.
"""

from .atlas import Atlas, read_atlas, write_atlas
from .engine import run_atlas, syntax_probe
from .probe import ProbeResult
from .sources import TextSource, text_source

__all__ = [
    "Atlas",
    "ProbeResult",
    "TextSource",
    "read_atlas",
    "run_atlas",
    "syntax_probe",
    "text_source",
    "write_atlas",
]
