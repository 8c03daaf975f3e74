"""The facade's :class:`Inspection`: one input's captured attention, with frames and exports.

The data and its exports live on the object; each other concern is a namespace
(:mod:`.namespaces`, :mod:`.explaining`): ``ins.heads`` (metrics, roles, detectors, similarity),
``ins.explain`` (every registered explainer), ``ins.views`` (bertviz's views) and
``ins.generation`` (what a ``generate()`` produced). The data classes of
:mod:`inspector.capture.types` never render or measure themselves.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import frames as _frames
from ..capture.memory import MemoryLimit
from ..capture.options import Selection
from ..capture.types import AttentionStack, Capture, Indexes
from ..errors import InputError
from ..render import report as _report
from ..render.budget import PageBudgetWarning
from ..render.page import Report
from ..render.scan_choice import (
    capture_scan_estimate,
    capture_scan_report,
    scan_page_reason,
    wants_scan_page,
)
from .explaining import REPORT_ADVICE, ExplainNamespace, HasBundle, model_preflight
from .exports import suffixed
from .namespaces import GenerationNamespace, HeadsNamespace, ViewsNamespace
from .results import Comparison, compare
from .tracing import after, why_section


class Inspection:
    """One input's captured attention, with frames and exports, and a namespace per concern:
    ``heads`` (what each head does), ``explain`` (why the model decided), ``views`` (bertviz)
    and ``generation``.

    For self-attention models ``tokens`` / ``attention`` describe the single stack. For
    encoder-decoder models use ``.encoder``, ``.decoder`` and ``.cross``, which are Inspections of
    one stack each (cross attention is ``(layer, head, decoder_query, encoder_key)``).
    """

    def __init__(
        self, capture: Capture, kind: str | None = None, *, model: HasBundle | None = None
    ) -> None:
        if not isinstance(capture, Capture):
            raise InputError("Inspection wraps a Capture; use LoadedModel.inspect(...)")
        if kind is None and not capture.is_encoder_decoder:
            kind = "self"
        if kind is not None and kind not in capture.stacks:
            raise InputError(f"no {kind!r} attention here; available: {list(capture.stacks)}")
        self.capture = capture
        self.kind = kind
        #: the model that made the capture (for the neuron view and the explainers that run it)
        self.model = model

    # ------------------------------------------------------------------ structure
    def _part(self, kind: str) -> Inspection:
        if not self.capture.is_encoder_decoder:
            raise InputError(
                f".{kind} is for encoder-decoder models; this model has self-attention "
                f"only: use .attention and .tokens"
            )
        return Inspection(self.capture, kind, model=self.model)

    @property
    def encoder(self) -> Inspection:
        return self._part("encoder")

    @property
    def decoder(self) -> Inspection:
        return self._part("decoder")

    @property
    def cross(self) -> Inspection:
        return self._part("cross")

    @property
    def stack(self) -> AttentionStack:
        if self.kind is None:
            raise InputError(
                "this is an encoder-decoder inspection: choose .encoder, .decoder or .cross first"
            )
        return self.capture.stacks[self.kind]

    @property
    def is_encoder_decoder(self) -> bool:
        return self.capture.is_encoder_decoder

    # ------------------------------------------------------------------ data
    @property
    def attention(self) -> np.ndarray:
        """float32 ``(layer, head, query, key)``, read-only, rows sum to 1."""
        return self.stack.weights

    @property
    def tokens(self) -> list[str]:
        """Query-side tokens as the tokenizer shows them."""
        return list(self.stack.query.tokens)

    @property
    def readable_tokens(self) -> list[str]:
        """Query-side tokens as the tokenizer decodes them, whitespace made visible
        (``Ġcapital`` → ``␣capital``, ``Ċ`` → ``⏎``); ``tokens`` keeps the raw ones."""
        return list(self.stack.query.readable or self.stack.query.tokens)

    @property
    def token_ids(self) -> np.ndarray:
        return self.stack.query.ids

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.capture.metadata)

    # ------------------------------------------------------------------ namespaces
    @property
    def heads(self) -> HeadsNamespace:
        """What each head does: ``metrics()``, ``roles()``, ``detectors()``, ``similarity()``,
        ``clusters()``, ``embedding()``, ``nearest()``, ``kv_groups``, ``with_kv_head()``."""
        return HeadsNamespace(self)

    @property
    def explain(self) -> ExplainNamespace:
        """Every registered explainer (``ins.explain.rollout()``, ``ins.explain("norms")``);
        ``ins.explain()`` is the "what mattered" summary."""
        return ExplainNamespace(self)

    @property
    def views(self) -> ViewsNamespace:
        """bertviz's ``head()``, ``model()`` and ``neuron()`` views as self-contained pages."""
        return ViewsNamespace(self)

    @property
    def generation(self) -> GenerationNamespace:
        """``prompt_length``, ``generated_mask`` and ``steps()`` of a ``generate()`` inspection."""
        return GenerationNamespace(self)

    # ------------------------------------------------------------------ reports
    def __repr__(self) -> str:
        m = self.capture.metadata
        parts = ", ".join(
            f"{k} {tuple(s.weights.shape)}"
            for k, s in self.capture.stacks.items()
            if self.kind in (None, k)
        )
        return f"Inspection({m.get('model_name')!r}, {parts})"

    # ------------------------------------------------------------------ frames
    def frame(
        self,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        *,
        level: str = "token",
        readable: bool = False,
        max_memory: int | str | None = None,
    ) -> pd.DataFrame:
        """Long tidy frame: ``layer, head, query_pos, key_pos, query_token, key_token, weight``.

        Encoder-decoder inspections (not narrowed to one part) add a leading ``kind`` column.
        ``level="word"`` merges sub-word pieces into words (rows still sum to 1).
        ``readable=True`` names tokens as the tokenizer decodes them (``␣capital``, ``⏎``)
        instead of the raw tokens (``Ġcapital``, ``Ċ``); the token columns are categorical, so
        the frame is no larger (only the category names change). :meth:`tokens_frame` has
        both per position. A frame that would not fit ``max_memory`` (default: the memory
        available) is refused before it is built; :meth:`to_parquet` streams any size.
        """
        spec = self._frame_spec(layers, heads, level, readable)
        return _frames.capture_frame(self.capture, spec, MemoryLimit.of(max_memory))

    def _frame_spec(
        self, layers: Indexes, heads: Indexes, level: str, readable: bool
    ) -> _frames.FrameSpec:
        """What a frame of this inspection holds (its part only, when it is one)."""
        kinds = None if self.kind is None else (self.kind,)
        select = Selection.of(layers, heads)
        return _frames.FrameSpec(kinds, select, level, readable)  # type: ignore[arg-type]

    def tokens_frame(self) -> pd.DataFrame:
        """One row per token: position, token (raw), readable, id, word id, sequence, special,
        offsets."""
        return _frames.tokens_frame(self.stack.query)

    def _write(
        self,
        suffix: str,
        path: str | os.PathLike[str],
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        *,
        level: str = "token",
        readable: bool = False,
        max_memory: int | str | None = None,
    ) -> Path:
        if Path(path).suffix.lower() != suffix:
            raise InputError(f"{path}: expected a file name ending in {suffix}")
        spec = self._frame_spec(layers, heads, level, readable)
        limit = MemoryLimit.of(max_memory)
        with model_preflight(
            self.model,
            lambda: _frames.stream_estimate(self.capture, spec, max_memory=limit),
            "Write fewer layers=[...] / heads=[...], or raise max_memory= if you know more is free",
        ):
            return _frames.write_capture_frame(self.capture, path, spec)

    to_parquet = suffixed(
        _write,
        ".parquet",
        """Write :meth:`frame` with its metadata to Parquet (read back with ``read_parquet``),
        streamed one layer at a time: it never builds the whole frame, at any length
        (``max_memory``: the budget of a piece, :func:`inspector.frames.stream_estimate`).""",
    )
    to_csv = suffixed(
        _write,
        ".csv",
        """Write :meth:`frame` to CSV for spreadsheets (streamed like :meth:`to_parquet`).""",
    )

    def report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        precision: str = "uint8",
        head_view: Mapping[str, Any] | None = None,
        model_view: Mapping[str, Any] | None = None,
        scan: bool | None = None,
        max_memory: int | str | None = None,
        why: bool | None = None,
    ) -> Report:
        """Build the self-contained HTML report; write it to ``path`` when given.

        ``head_view`` / ``model_view``: options of those views (as :meth:`head_view`).
        ``scan``: build the scan page instead (pooled maps, sinks, the last row over the text;
        see :meth:`inspector.LoadedModel.scan`), which any browser draws at any length. ``None``
        (default) does so when the capture holds more than ``LONG_REPORT_CELLS`` (2**25)
        weights, where the full report's every-head maps would stall a browser tab, and says so
        (a :class:`~inspector.render.budget.PageBudgetWarning`, and a banner atop the page);
        ``False`` builds the full report at any size (about 8.5 bytes a weight more memory
        while it builds). ``max_memory``: the budget of building the page (default: what is
        free now); refused with ``ResourceError`` before anything is built when its estimate
        does not fit. ``why``: for an inspection made by ``m.generate(...)``, add a section
        with the heads that wrote each generated token and the tokens they read (direct logit
        attribution; one more forward pass). ``None`` (default): when the model is at hand and
        its architecture is followed; ``True``: always (an error says why it cannot).

        Example:
            >>> ins.report("reports/cat.html")  # doctest: +SKIP
        """
        if wants_scan_page(self.capture, scan):
            if scan is None:  # chosen for the caller: say so (the CLI prints it as one line)
                reason = scan_page_reason(self.capture, page=False)
                warnings.warn(reason or "", PageBudgetWarning, stacklevel=2)
            with model_preflight(
                self.model,
                lambda: capture_scan_estimate(self.capture, MemoryLimit.of(max_memory)),
                REPORT_ADVICE,
            ):
                return capture_scan_report(
                    self.capture, path, title=title, kind=self.kind, say_why=scan is None
                )
        why_builder = None if why is False else why_section(self, required=bool(why))
        with model_preflight(
            self.model,
            lambda: _report.report_estimate(self.capture, precision, MemoryLimit.of(max_memory)),
            REPORT_ADVICE,
        ):
            rendered = _report.build_report(
                self.capture,
                title=title,
                precision=precision,
                head_view=head_view,
                model_view=model_view,
                sections=None if why_builder is None else after("generation", why_builder),
            )
        if path is not None:
            rendered.save(path)
        return rendered

    def compare(self, other: Inspection, *, max_memory: int | str | None = None) -> Comparison:
        """Head-by-head comparison with another inspection; see :func:`inspector.compare`."""
        return compare(self, other, max_memory=max_memory)


__all__ = ["Inspection"]
