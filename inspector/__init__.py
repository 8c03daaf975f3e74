"""inspector: open up pretrained transformers and look at every head's attention.

>>> import inspector
>>> m = inspector.load("minilm")            # doctest: +SKIP
>>> ins = m.inspect("The cat sat on the mat.")  # doctest: +SKIP
>>> ins.frame().head()                       # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .api import public as _public
from .api.public import *  # noqa: F403

try:
    __version__ = version("attention-inspector")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
__all__ += _public.__all__  # the public names, listed once in inspector.api.public
