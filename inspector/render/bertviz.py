"""bertviz head and model views as self-contained HTML, built from a :class:`Capture`.

The views run bertviz's own JavaScript unchanged. Its ``requirejs(['jquery', 'd3'], ...)`` call is
answered by a small shim in ``static/inspector.js`` with the d3 5.7.0 and jQuery 2.2.4 files
shipped as package data, and its ``PYTHON_PARAMS`` / ``window.bertviz_params`` are set by that
runtime just before each view draws. Attention is embedded once per page, compactly (see
:mod:`inspector.render.encode`), and expanded into bertviz's nested arrays in the browser.

Pure functions of a capture (and, for the neuron view, of query/key vectors computed by
:func:`inspector.capture.vectors.query_key_vectors`): nothing here runs a model or touches the
network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from ..capture.types import AttentionStack, Capture
from ..errors import InputError
from . import _assets
from .budget import VIEW_LINES, view_window, warn_budgets
from .data import PageData
from .encode import encode_float16
from .names import model_label
from .page import RenderedHTML, assemble

#: bertviz draws one SVG line per (head, query, key) of a layer (head view) or of every head
#: (model view); beyond :data:`~inspector.render.budget.VIEW_LINES` lines a view shows a window
#: of tokens that the reader moves (``spec["window"]``), so every page draws in seconds.
#: ``lazy=True`` still defers a view until it is scrolled into sight (or clicked).
LAZY_LINES = VIEW_LINES

#: Display labels of the stacks of encoder-decoder models, as bertviz names them.
KIND_LABELS = {"self": "Self", "encoder": "Encoder", "decoder": "Decoder", "cross": "Cross"}


def prettify(tokens: Sequence[str]) -> list[str]:
    """bertviz's own token prettifying: byte-level and sentencepiece markers become spaces."""
    return [t.replace("Ġ", " ").replace("▁", " ").replace("</w>", "") for t in tokens]


@dataclass(frozen=True)
class ViewPart:
    """One entry of bertviz's attention dropdown: a block of one stack."""

    name: str | None
    stack: str
    rows: tuple[int, int]
    cols: tuple[int, int]
    left_text: list[str]
    right_text: list[str]
    key: str = ""

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "stack": self.stack,
            "rows": list(self.rows),
            "cols": list(self.cols),
            "left_text": self.left_text,
            "right_text": self.right_text,
        }


def _kinds(capture: Capture, kind: str | Sequence[str] | None) -> list[str]:
    if kind is None:
        return list(capture.stacks)
    kinds = [kind] if isinstance(kind, str) else list(kind)
    for k in kinds:
        if k not in capture.stacks:
            raise InputError(
                f"no {k!r} attention in this capture; available: {list(capture.stacks)}"
            )
    if not kinds:
        raise InputError("choose at least one attention kind")
    return kinds


def _shown(tokens: Any, readable: bool) -> list[str]:
    return list(tokens.readable or tokens.tokens) if readable else list(tokens.tokens)


def view_parts(
    capture: Capture,
    kinds: Sequence[str],
    *,
    sentence_b_start: int | bool | None = True,
    prettify_tokens: bool = True,
) -> list[ViewPart]:
    """The dropdown entries bertviz would build: sentence-pair blocks or encoder/decoder/cross.

    ``sentence_b_start=True`` reads the pair boundary from the tokens (``text_pair``); an int
    overrides it; ``None`` / ``False`` shows the whole sequence only. ``prettify_tokens`` shows
    the readable tokens (``Tokens.readable``: ``␣capital``, ``⏎``) instead of the raw ones.
    """
    parts: list[ViewPart] = []
    if len(kinds) == 1 and kinds[0] == "self":
        s = capture.stacks["self"]
        toks = _shown(s.query, prettify_tokens)
        n = len(toks)
        b: int | None
        if sentence_b_start is True:
            b = s.query.sentence_b_start
        elif sentence_b_start is False or sentence_b_start is None:
            b = None
        else:
            b = int(sentence_b_start)
            if not 0 < b < n:
                raise InputError(f"sentence_b_start must be between 1 and {n - 1}, got {b}")
        if b is None:
            return [ViewPart(None, "self", (0, n), (0, n), toks, toks, "all")]
        a_, b_ = (0, b), (b, n)
        blocks = [
            ("All", (0, n), (0, n), "all"),
            ("Sentence A -> Sentence A", a_, a_, "aa"),
            ("Sentence B -> Sentence B", b_, b_, "bb"),
            ("Sentence A -> Sentence B", a_, b_, "ab"),
            ("Sentence B -> Sentence A", b_, a_, "ba"),
        ]
        for name, r, c, key in blocks:
            parts.append(ViewPart(name, "self", r, c, toks[r[0] : r[1]], toks[c[0] : c[1]], key))
        return parts
    for kind in kinds:
        s = capture.stacks[kind]
        q, k = _shown(s.query, prettify_tokens), _shown(s.key, prettify_tokens)
        parts.append(
            ViewPart(KIND_LABELS[kind], kind, (0, len(q)), (0, len(k)), q, k, kind.lower())
        )
    return parts


def _page_capture(page: PageData) -> Capture:
    if page.capture is None:
        raise InputError("a bertviz view needs a page that embeds a capture")
    return page.capture


def _layer_positions(stack: AttentionStack, include_layers: Sequence[int] | None) -> list[int]:
    """Positions along the stack's layer axis of the model layers to show."""
    if include_layers is None:
        return list(range(len(stack.layers)))
    wanted = [int(x) for x in include_layers]
    missing = [x for x in wanted if x not in stack.layers]
    if missing or not wanted:
        raise InputError(
            f"include_layers {wanted} must be a non-empty subset of the captured layers "
            f"{list(stack.layers)}"
        )
    return [stack.layers.index(x) for x in sorted(set(wanted))]


def _n_lines(parts: list[ViewPart], n_layers: int, n_heads: int) -> int:
    rows = max(p.rows[1] - p.rows[0] for p in parts)
    cols = max(p.cols[1] - p.cols[0] for p in parts)
    return n_layers * n_heads * rows * cols


def _window(page: PageData, spec: dict[str, Any], parts: list[ViewPart], panels: int) -> None:
    """Give the view a token window when drawing it whole would pass the line budget."""
    rows = max(p.rows[1] - p.rows[0] for p in parts)
    cols = max(p.cols[1] - p.cols[0] for p in parts)
    window = view_window(rows, cols, panels)
    if window is not None:
        spec["window"] = window.spec()
        page.notes.append(
            f"the {spec['label']} shows {window.size} of {window.n} tokens at a time "
            f"({window.full_lines:,} lines in full)"
        )


def _selection(
    page: PageData, kind: str | Sequence[str] | None, include_layers: Sequence[int] | None
) -> tuple[list[str], AttentionStack, list[int]]:
    """The stacks a head or model view shows (``kind``), the first of them, and the positions
    along its layer axis of the layers shown."""
    capture = _page_capture(page)
    kinds = _kinds(capture, kind)
    first = capture.stacks[kinds[0]]
    return kinds, first, _layer_positions(first, include_layers)


def _add_spec(
    page: PageData,
    view: str,
    kinds: Sequence[str],
    *,
    sentence_b_start: int | bool | None,
    prettify_tokens: bool,
    layer_positions: list[int],
    head_positions: list[int] | None,
    lazy: bool | None,
    params: dict[str, Any],
    panels: int | None = None,
) -> dict[str, Any]:
    """Add the spec of a ``view`` (``"head"``, ``"model"``, ``"neuron"``) of ``kinds`` to
    ``page``, which embeds those stacks; ``panels``: the maps the view draws at once, to give it
    a token window past the line budget (``None``: never windowed)."""
    parts = view_parts(
        _page_capture(page),
        kinds,
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
    )
    for k in kinds:
        page.stack(k)
    spec = {
        "id": page.next_id(view),
        "kind": view,
        "label": f"{view} view",
        "layer_positions": layer_positions,
        "head_positions": head_positions,
        "lazy": bool(lazy),
        "parts": [p.spec() for p in parts],
        "params": params,
    }
    if panels is not None:
        _window(page, spec, parts, panels)
    page.views.append(spec)
    return spec


def add_head_view(
    page: PageData,
    *,
    kind: str | Sequence[str] | None = None,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    include_layers: Sequence[int] | None = None,
    sentence_b_start: int | bool | None = True,
    prettify_tokens: bool = True,
    lazy: bool | None = None,
) -> dict[str, Any]:
    """Add a bertviz head view to ``page``; returns its spec (``id`` names its container)."""
    kinds, first, positions = _selection(page, kind, include_layers)
    shown_layers = [first.layers[i] for i in positions]
    if layer is not None and layer not in shown_layers:
        raise InputError(f"layer {layer} is not among the shown layers {shown_layers}")
    head_sel = None
    if heads is not None:
        head_sel = [first.heads.index(h) for h in _model_heads(first, heads)]
    return _add_spec(
        page,
        "head",
        kinds,
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
        layer_positions=positions,
        head_positions=None,
        lazy=lazy,
        params={
            "default_filter": "0",
            "layer": layer,
            "heads": head_sel,
            "include_layers": shown_layers,
        },
        panels=len(first.heads),
    )


def _model_heads(stack: AttentionStack, heads: Sequence[int] | int) -> list[int]:
    wanted = [int(heads)] if isinstance(heads, int) else [int(h) for h in heads]
    missing = [h for h in wanted if h not in stack.heads]
    if missing or not wanted:
        raise InputError(
            f"heads {wanted} must be a non-empty subset of the captured heads {list(stack.heads)}"
        )
    return wanted


def add_model_view(
    page: PageData,
    *,
    kind: str | Sequence[str] | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    sentence_b_start: int | bool | None = True,
    display_mode: str = "light",
    prettify_tokens: bool = True,
    lazy: bool | None = None,
) -> dict[str, Any]:
    """Add a bertviz model view (every layer x head thumbnail) to ``page``."""
    if display_mode not in ("light", "dark"):
        raise InputError(f"display_mode must be 'light' or 'dark', got {display_mode!r}")
    kinds, first, positions = _selection(page, kind, include_layers)
    model_heads = list(first.heads) if include_heads is None else _model_heads(first, include_heads)
    head_positions = [first.heads.index(h) for h in sorted(set(model_heads))]
    return _add_spec(
        page,
        "model",
        kinds,
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
        layer_positions=positions,
        head_positions=head_positions,
        lazy=lazy,
        params={
            "default_filter": "0",
            "display_mode": display_mode,
            "include_layers": [first.layers[i] for i in positions],
            "include_heads": [first.heads[i] for i in head_positions],
            "total_heads": len(first.heads),
        },
        panels=len(positions) * len(head_positions),
    )


def render_view_container(spec: dict[str, Any]) -> Markup:
    """The HTML bertviz expects around a view (selects + ``#vis``), from a template."""
    env = _assets.environment()
    return Markup(env.get_template("bertviz_view.html.j2").render(view=spec))


def _estimate_height(page: PageData, spec: dict[str, Any]) -> int:
    n = max(max(len(p["left_text"]), len(p["right_text"])) for p in spec["parts"])
    if "window" in spec:
        n = min(n, spec["window"]["size"])
    if spec["kind"] == "head":
        return int(n * 22.5 + 30 + 120)
    if spec["kind"] == "model":
        heads = len(spec["head_positions"]) or 1
        box = 7 * (12 / spec["params"]["total_heads"])
        thumb = n * box + 10
        return int(max(len(spec["layer_positions"]) * thumb + 38, n * 18 + 55) + 120) + heads
    return int(n * 26 + 300)


def _single_view(page: PageData, spec: dict[str, Any], title: str) -> RenderedHTML:
    body = Markup('<main class="ins-view">') + render_view_container(spec) + Markup("</main>")
    warn_budgets(page.notes)
    html = assemble(title=title, body=body, data=page)
    return RenderedHTML(html, title=title, height=_estimate_height(page, spec))


def head_view(
    capture: Capture,
    *,
    kind: str | Sequence[str] | None = None,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    include_layers: Sequence[int] | None = None,
    sentence_b_start: int | bool | None = True,
    prettify_tokens: bool = True,
    precision: str = "uint8",
) -> RenderedHTML:
    """bertviz's head view of a capture, as a self-contained page.

    Args:
        capture: the captured attention.
        kind: ``"self"``, or for encoder-decoder models any of ``"encoder"``, ``"decoder"``,
            ``"cross"`` (default: all, chosen in the view's dropdown).
        layer: model layer selected at first (default: the first shown).
        heads: model heads selected at first (default: all).
        include_layers: model layers to include (fewer layers make long inputs responsive).
        sentence_b_start: True reads the pair boundary from ``text_pair``; an int overrides it;
            None shows the whole sequence only.
        prettify_tokens: show readable tokens (``Tokens.readable``: ``␣capital``, ``⏎``)
            instead of the raw ones (``Ġcapital``).
        precision: ``"uint8"`` (error <= 0.002) or ``"uint16"`` (error <= 7.6e-6).

    Example:
        >>> view = head_view(ins.capture, layer=2)  # doctest: +SKIP
        >>> view.save("reports/head.html")  # doctest: +SKIP
    """
    page = PageData(capture, precision)
    spec = add_head_view(
        page,
        kind=kind,
        layer=layer,
        heads=heads,
        include_layers=include_layers,
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
        lazy=False,
    )
    return _single_view(page, spec, _title(capture, "head view"))


def model_view(
    capture: Capture,
    *,
    kind: str | Sequence[str] | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    sentence_b_start: int | bool | None = True,
    display_mode: str = "light",
    prettify_tokens: bool = True,
    precision: str = "uint8",
) -> RenderedHTML:
    """bertviz's model view (a thumbnail per layer x head), as a self-contained page.

    Arguments as in :func:`head_view`, plus ``include_heads`` and ``display_mode``
    (``"light"`` or ``"dark"``).
    """
    page = PageData(capture, precision)
    spec = add_model_view(
        page,
        kind=kind,
        include_layers=include_layers,
        include_heads=include_heads,
        sentence_b_start=sentence_b_start,
        display_mode=display_mode,
        prettify_tokens=prettify_tokens,
        lazy=False,
    )
    return _single_view(page, spec, _title(capture, "model view"))


def _title(capture: Capture, what: str) -> str:
    return f"{model_label(capture.metadata)} — {what}"


def neuron_view(
    capture: Capture,
    queries: Any,
    keys: Any,
    *,
    layer: int | None = None,
    head: int | None = None,
    sentence_b_start: int | bool | None = True,
    display_mode: str = "light",
    prettify_tokens: bool = True,
    precision: str = "uint8",
) -> RenderedHTML:
    """bertviz's neuron view of a capture: the query and key vectors behind each weight.

    Args:
        capture: a self-attention capture.
        queries, keys: ``(layer, head, position, head_dim)`` vectors of the capture's kept layers
            and heads (:func:`inspector.capture.vectors.query_key_vectors` computes them).
        layer, head: model layer / head selected at first.
        sentence_b_start, prettify_tokens, precision: as in :func:`~.views.head_view`.
        display_mode: ``"light"`` or ``"dark"``.

    """
    if display_mode not in ("light", "dark"):
        raise InputError(f"display_mode must be 'light' or 'dark', got {display_mode!r}")
    if "self" not in capture.stacks:
        raise InputError("the neuron view needs a self-attention capture")
    stack = capture.stacks["self"]
    expected = (len(stack.layers), len(stack.heads), len(stack.query))
    for name, vectors in (("queries", queries), ("keys", keys)):
        if getattr(vectors, "ndim", 0) != 4 or tuple(vectors.shape[:3]) != expected:
            raise InputError(
                f"{name} must have shape (layer, head, position, head_dim) = {expected} + (d,), "
                f"got {getattr(vectors, 'shape', type(vectors).__name__)}"
            )
    page = PageData(capture, precision)
    spec = _add_spec(
        page,
        "neuron",
        ["self"],
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
        layer_positions=list(range(len(stack.layers))),
        head_positions=None,
        lazy=False,
        params={
            "default_filter": "all",
            "bidirectional": not stack.causal,
            "display_mode": display_mode,
            "layer": _position(stack.layers, layer, "layer"),
            "head": _position(stack.heads, head, "head"),
        },
    )
    page.vectors[spec["id"]] = {"queries": encode_float16(queries), "keys": encode_float16(keys)}
    return _single_view(page, spec, _title(capture, "neuron view"))


def _position(indexes: Sequence[int], value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if value not in indexes:
        raise InputError(f"{what} {value} was not captured; captured {what}s: {list(indexes)}")
    return list(indexes).index(value)
