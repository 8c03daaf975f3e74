"""The facade: ``load`` → :class:`LoadedModel` → ``inspect`` → :class:`Inspection`, plus the
functions over many inputs. The CLI imports nothing but this package.

Every function that needs a model takes a :data:`ModelLike` (a loaded model, a name, a folder, a
``.gguf`` file, a hub id or a ``(model, tokenizer)`` pair).

The public names (what ``import inspector`` exports) are listed once, in :mod:`.public`; this
package adds the helpers the command line and power users take from it.
"""

from ..analysis.roles import ROLES, head_roles, top_heads
from . import public
from .faithfulness_result import faithfulness_methods
from .faithfulness_result import scores_path as faithfulness_scores_path
from .model import as_model
from .paths import (
    check_not_input,
    check_output,
    default_checkpoint,
    distances_path,
    replacing_read_only,
    save_table,
)
from .public import *  # noqa: F403
from .scanning import scan_files

__all__ = [
    "ROLES",
    "as_model",
    "check_not_input",
    "check_output",
    "default_checkpoint",
    "distances_path",
    "faithfulness_methods",
    "faithfulness_scores_path",
    "head_roles",
    "replacing_read_only",
    "save_table",
    "scan_files",
    "top_heads",
]
__all__ += public.__all__
