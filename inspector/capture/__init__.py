"""Running models and capturing their attention: the only layer that runs a model.

* :mod:`.types` - the validated data (:class:`Tokens`, :class:`AttentionStack`,
  :class:`Capture`) everything right of this layer works on; pure numpy.
* :mod:`.tokenize` - the one tokenization path (:func:`encode`, :func:`model_inputs`); images
  through :mod:`.image` (a vision model's image processor), captured by :mod:`.vision`.
* :mod:`.local` - local attention (LED's windows, LongT5's blocks) as full matrices.
* :mod:`.hooks` - the one place hooks are registered (:func:`hooked`) and the recorder.
* :mod:`.options` - options as values (:class:`~.options.Selection` of layers and heads,
  :class:`~.options.InputOptions`), built once at the facade and passed down unchanged;
  :mod:`.inputs` - the one input preparation of :func:`capture` and the scan.
* :mod:`.run` - one input (:func:`capture`), plain passes (:func:`forward`).
* :mod:`.batch` - padded batches; :mod:`.generate` - generation, step by step.
* :mod:`.memory` - the memory pre-flight (estimates, budgets from MemAvailable and cgroups).
* :mod:`.scan` - bounded scans: each layer's attention handed to a consumer by blocks of rows,
  from eager hooks or recomputed from q/k under sdpa (:mod:`.blockwise`).

Modules of other layers import the submodule they need (``inspector.capture.types``), so that
using a data type never pulls in the code that runs models.
"""

from .batch import capture_batch, forward_batch
from .generation import generate
from .run import capture, forward
from .tokenize import Encoded, encode
from .types import AttentionStack, Capture, Tokens, kv_groups, kv_head_map, verify_weights

__all__ = [
    "AttentionStack",
    "Capture",
    "Encoded",
    "Tokens",
    "capture",
    "capture_batch",
    "encode",
    "forward",
    "forward_batch",
    "generate",
    "kv_groups",
    "kv_head_map",
    "verify_weights",
]
