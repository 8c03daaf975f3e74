"""What :func:`.routes.information_flow` returns: the walked route graph as tables, a networkx
graph, and the numbers behind every edge on demand.

Pure data plus the state needed to recompute a node's contributions
(:meth:`Routes.attention_contributions`); the page is drawn by the render layer, which
registers its builder in :data:`PAGES` (render sits above explain, so this module never imports
it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._io import atomic_path
from .._registry import Registry
from ..capture.types import Tokens
from ..errors import InputError, UnsupportedModelError

#: Page builders for results of this module, registered by :mod:`inspector.render.trace`:
#: ``PAGES["trace"](routes, path=None, **options) -> rendered page``.
PAGES: Registry[Callable[..., Any]] = Registry("trace page")

#: What each row of a logit attribution is, by its ``kind``.
KINDS = {
    "embed": "token embedding",
    "pos_embed": "position embedding",
    "embeddings": "embeddings",
    "embed_norm_bias": "embedding norm bias",
    "head": "head",
    "head_bias": "attention output bias",
    "head_norm_bias": "attention post-norm bias",
    "cross_head": "cross-attention head",
    "cross_head_bias": "cross-attention output bias",
    "cross_head_norm_bias": "cross-attention post-norm bias",
    "mlp": "MLP",
    "norm_bias": "residual norm bias",
    "final_norm_bias": "final norm bias",
    "head_transform_bias": "LM head dense bias",
    "head_activation_offset": "LM head activation offset",
}

#: Heads named in the answer.
TOP_HEADS = 3
#: Tokens named in an encoder route's answer.
ANSWER_TOKENS = 3
#: The node of an encoder's mean-pooled embedding.
EMBEDDING_NODE = "E"
#: Consecutive MLP layers the answer groups.
MLP_WINDOW = 4

EDGE_COLUMNS = ["layer", "block", "source", "target", "source_pos", "target_pos", "weight"]
HEAD_COLUMNS = ["layer", "source_pos", "target_pos", "head", "weight"]


def node_name(kind: str, layer: int, pos: int) -> str:
    """The reference's node names: ``X0_k``, ``A{l}_{q}``, ``M{l}_{q}``, ``I{l}_{q}``
    (``I{-1}`` is ``X0``)."""
    if (kind == "I" and layer < 0) or kind == "X":
        return f"X0_{pos}"
    return f"{kind}{layer}_{pos}"


@dataclass(eq=False)
class Routes:
    """The route graph of one prediction (Ferrando & Voita 2024).

    Attributes:
        edges: the walked edges: ``layer, block`` (``attention``, ``mlp`` or ``residual``),
            ``source, target`` (node names), ``source_pos, target_pos, weight`` (the
            thresholded, renormalised contribution; an attention edge sums its heads).
        heads: the per-head split of every attention edge (``layer, source_pos, target_pos,
            head, weight``).
        nodes: every node of the walk: ``node, kind`` (``X``, ``A``, ``M``, ``I``), ``layer,
            pos, token``, and its logit lens: the traced token's ``rank`` and ``logit``, the
            ``top`` tokens.
        tokens: the input tokens.
        token / token_id: the token the lens reports (the prediction by default).
        position / threshold: what was traced and the cut.
        attribution: the direct logit attribution of the same prediction
            (:class:`~.attribution.Attribution`), computed from the same forward pass.
        attention_rows: ``(layer, query_pos, head) -> [(key_pos, weight), ...]``: the heaviest
            keys (up to 64) of the attention row of every head on a walked attention edge.
        target: ``position`` (the prediction, or an encoder position's final representation)
            or ``embedding`` (an encoder's mean-pooled embedding: the output node ``E``, with
            a ``pool`` edge from every position's last block output above the threshold).
        biases: an encoder's attention bias share (after the threshold) of each walked ``A``
            node (it comes from no token, so no edge carries it).
    """

    edges: pd.DataFrame
    heads: pd.DataFrame
    nodes: pd.DataFrame
    tokens: Tokens
    token: str
    token_id: int
    position: int
    threshold: float
    n_layers: int
    model_name: str = "model"
    attribution: Any = None
    attention_rows: dict[tuple[int, int, int], list[tuple[int, float]]] = field(
        default_factory=dict, repr=False
    )
    _state: Any = field(default=None, repr=False)
    target: str = "position"
    biases: dict[str, float] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        what = (
            "the mean-pooled embedding"
            if self.target == "embedding"
            else f"{self.token!r} at position {self.position}"
            if self.token
            else f"position {self.position}"
        )
        return (
            f"Routes({self.model_name}: {what}, "
            f"{len(self.nodes)} nodes, {len(self.edges)} edges above {self.threshold})"
        )

    @property
    def output_node(self) -> str:
        if self.target == "embedding":
            return EMBEDDING_NODE
        return node_name("I", self.n_layers - 1, self.position)

    @property
    def graph(self) -> Any:
        """The walked graph as a ``networkx.DiGraph`` (edges point up, from source to target;
        a token's attention edge to itself and its residual edge share one edge whose weight is
        their sum, as in the reference); nodes carry their lens and ``pos``/``layer``."""
        import networkx as nx

        g = nx.DiGraph()
        for row in self.nodes.itertuples(index=False):
            g.add_node(row.node, kind=row.kind, layer=row.layer, pos=row.pos, token=row.token,
                       rank=row.rank, logit=row.logit)  # fmt: skip
        for e in self.edges.itertuples(index=False):
            if g.has_edge(e.source, e.target):
                g[e.source][e.target]["weight"] += e.weight
                g[e.source][e.target]["blocks"].append(e.block)
            else:
                g.add_edge(e.source, e.target, weight=e.weight, blocks=[e.block], layer=e.layer)
        return g

    def token_scores(self) -> np.ndarray:
        """Each input token's share of the output node through the walked graph, ``(n,)``: the
        output node's mass of 1 flows down every walked edge in proportion to its weight (an
        MLP node passes all of its mass to the residual it reads), and what reaches ``X0_k``
        is token ``k``'s score. The scores sum to at most 1 (edges below the threshold
        lose their share)."""
        mass: dict[str, float] = {self.output_node: 1.0}
        g = self.graph
        order = list(reversed(list(_topological(g))))
        for node in order:
            m = mass.get(node, 0.0)
            if m == 0.0:
                continue
            for src, _dst, data in g.in_edges(node, data=True):
                share = 1.0 if node.startswith("M") else data["weight"]
                mass[src] = mass.get(src, 0.0) + m * share
        out = np.zeros(len(self.tokens), dtype=np.float64)
        for node, m in mass.items():
            if node.startswith("X0_"):
                out[int(node[3:])] += m
        return out

    def answer(self) -> str:
        """The prediction in one sentence: "' Paris' (logit 17.4, p 0.77): 82% from layer
        26-29 MLPs, heads 23.4, 29.1, 29.2 write it, reading ' France' (pos 3)": the MLPs of the
        (up to 4) consecutive layers that add the most, as a share of the logit; the three
        heads with the largest attribution (``layer.head``); the source token that gave those
        heads the most, other than the traced position itself. An encoder's route (no logit):
        the tokens with the largest share of the output node through the graph."""
        attribution = self.attribution
        if attribution is None:
            return self._route_answer()
        frame: pd.DataFrame = attribution.frame
        a = frame.attrs
        token = fmt_token(str(a["token"]))
        if a.get("against") is not None:
            head = (
                f"{token} over {fmt_token(str(a['against']))} (logit difference {a['logit']:.1f})"
            )
        else:
            head = f"{token} (logit {a['logit']:.1f}, p {a['probability']:.2f})"
        clauses = []
        logit = float(a["logit"]) or 1.0
        window = _mlp_window(frame)
        if window is not None and window[0] > 0:
            lo, hi = window[1], window[2]
            where = f"layer {lo} MLP" if lo == hi else f"layer {lo}-{hi} MLPs"
            clauses.append(f"{100 * window[0] / logit:.0f}% from {where}")
        heads = frame[frame["kind"] == "head"].sort_values("attribution", ascending=False)
        top = head_keys(heads.index[:TOP_HEADS])
        if top:
            clause = f"heads {', '.join(f'{layer}.{head}' for layer, head in top)} write it"
            sources = top_sources(attribution.per_token, top)
            # what the heads move in from elsewhere (the traced position reads itself too)
            moved = [p for p in sources if p != self.position] or sources
            if moved:
                pos = moved[0]
                readable = self.tokens.readable or self.tokens.tokens
                clause += f", reading {fmt_token(readable[pos].replace('␣', ' '))} (pos {pos})"
            clauses.append(clause)
        return head + (": " + ", ".join(clauses) if clauses else "")

    def _route_answer(self) -> str:
        readable = self.tokens.readable or self.tokens.tokens
        if self.target == "embedding":
            head = f"the mean-pooled embedding ({len(readable)} tokens)"
        else:
            head = (
                f"the final representation of {fmt_token(readable[self.position])} "
                f"(pos {self.position})"
            )
        scores = self.token_scores()
        top = [int(p) for p in np.argsort(-scores, kind="stable")[:ANSWER_TOKENS] if scores[p]]
        shares = ", ".join(
            f"{fmt_token(readable[p])} (pos {p}) {100 * scores[p]:.0f}%" for p in top
        )
        layers = self.edges[self.edges["block"] == "attention"]["layer"]
        reach = (
            f"; attention edges in {layers.nunique()} of {self.n_layers} layers"
            if len(layers)
            else "; no attention edge above the threshold"
        )
        return f"{head}: from {shares}{reach}"

    # ------------------------------------------------------------------ the numbers

    def _need_state(self) -> Any:
        if self._state is None:
            raise UnsupportedModelError(
                "this Routes result no longer holds the forward pass it was built from; run "
                "information_flow again"
            )
        return self._state

    def _check(self, layer: int, query_pos: int) -> tuple[int, int]:
        if not 0 <= int(layer) < self.n_layers:
            raise InputError(f"layer {layer} is out of range for {self.n_layers} layers")
        n = len(self.tokens)
        q = int(query_pos) + n if query_pos < 0 else int(query_pos)
        if not 0 <= q < n:
            raise InputError(f"query_pos {query_pos} is outside the {n} tokens")
        return int(layer), q

    def attention_contributions(self, layer: int, query_pos: int) -> np.ndarray:
        """The attention step's contributions at ``(layer, query_pos)`` before thresholding:
        ``(key, head)``; with :meth:`residual_contribution` they sum to 1."""
        layer, q = self._check(layer, query_pos)
        parts, _res, _whole, _alpha, _bias = self._need_state().attention_step(layer, [q])
        return np.asarray(parts[0])

    def residual_contribution(self, layer: int, query_pos: int) -> float:
        """The residual's contribution to the attention step at ``(layer, query_pos)``."""
        layer, q = self._check(layer, query_pos)
        _parts, res, _whole, _alpha, _bias = self._need_state().attention_step(layer, [q])
        return float(res[0])

    def bias_contribution(self, layer: int, query_pos: int) -> float:
        """The attention output bias's contribution at ``(layer, query_pos)`` (a part of an
        encoder's attention step; 0 where it is no part)."""
        layer, q = self._check(layer, query_pos)
        _parts, _res, _whole, _alpha, bias = self._need_state().attention_step(layer, [q])
        return 0.0 if bias is None else float(bias[0])

    def mlp_contributions(self, layer: int, query_pos: int) -> tuple[float, float]:
        """``(mlp, residual)`` contributions to the block output at ``(layer, query_pos)``."""
        layer, q = self._check(layer, query_pos)
        state = self._need_state()
        c = state.mlp_step(layer, [q], state.after_attention(layer, [q]))
        return float(c[0, 0]), float(c[0, 1])

    # ------------------------------------------------------------------ export

    def to_parquet(
        self, path: str | os.PathLike[str], what: Literal["edges", "heads", "nodes"] = "edges"
    ) -> str:
        """Write one table (``edges`` by default, ``heads`` or ``nodes``) to Parquet,
        atomically; returns the path."""
        tables = {"edges": self.edges, "heads": self.heads, "nodes": self.nodes}
        if what not in tables:
            raise InputError(f"what must be one of {list(tables)}, got {what!r}")
        frame = tables[what].copy()
        if what == "nodes":
            frame["top"] = frame["top"].map(lambda t: " | ".join(t))
        frame.attrs = {"model": self.model_name, "token": self.token, "position": self.position,
                       "threshold": self.threshold}  # fmt: skip
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return str(path)

    def report(self, path: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        """The "why this token" page (route graph, head heatmap, painted text), written to
        ``path`` when given; returns the rendered page."""
        if "trace" not in PAGES:
            raise UnsupportedModelError(
                "the trace page is drawn by inspector.render; import inspector first"
            )
        return PAGES["trace"](self, path, **options)


def fmt_token(token: str) -> str:
    """A token quoted so that its spaces show (``' Paris'``)."""
    return repr(token)


def head_keys(index: Any) -> list[tuple[int, int]]:
    """``(layer, head)`` pairs of a ``(layer, head)`` index, as ints."""
    return [(int(layer), int(head)) for layer, head in list(index)]


def top_sources(per_token: pd.DataFrame | None, heads: Sequence[tuple[int, int]]) -> list[int]:
    """Source positions ordered by what they gave the named heads (largest first)."""
    if per_token is None or not len(heads):
        return []
    part = per_token[per_token["kind"] == "head"]
    chosen = part.loc[part.index.isin(list(heads))]
    by_pos = chosen.groupby("source_pos")["attribution"].sum().sort_values(ascending=False)
    return [int(p) for p in by_pos.index[by_pos > 0]]


def _mlp_window(frame: pd.DataFrame) -> tuple[float, int, int] | None:
    mlp = frame[frame["kind"] == "mlp"]
    if not len(mlp):
        return None
    layers = mlp.index.get_level_values("layer").to_numpy()
    values = mlp["attribution"].to_numpy()
    best = None
    for i in range(len(values)):
        j = min(len(values), i + MLP_WINDOW)
        total = float(values[i:j].sum())
        if best is None or total > best[0]:
            best = (total, int(layers[i]), int(layers[j - 1]))
    return best


def _topological(g: Any) -> Any:
    import networkx as nx

    return nx.topological_sort(g)


def build_routes(
    walk: dict[str, Any],
    tokens: Tokens,
    token: str,
    token_id: int,
    *,
    threshold: float,
    position: int,
    lens: Callable[[np.ndarray, int], dict[str, Any]] | None,
    state: Any,
    model_name: str,
    attribution: Any = None,
    target: str = "position",
) -> Routes:
    """A :class:`Routes` from the walk's edges and node vectors (``lens=None``: the nodes carry
    no lens: ``rank`` and ``logit`` empty, no ``top`` tokens)."""
    edges = pd.DataFrame(walk["edges"], columns=EDGE_COLUMNS)
    heads = pd.DataFrame(walk["head_edges"], columns=HEAD_COLUMNS)
    vectors: dict[str, np.ndarray] = walk["vectors"]
    names = sorted(vectors, key=_node_order)
    n_layers = int(walk["n_layers"])
    names = sorted(vectors, key=lambda n: _node_order(n, n_layers))
    kinds = [n[0] for n in names]
    layers = [_node_order(n, n_layers)[0] for n in names]
    pos = [_node_order(n, n_layers)[2] for n in names]
    readable = tokens.readable or tokens.tokens
    nodes = pd.DataFrame(
        {"node": names, "kind": kinds, "layer": layers, "pos": pos,
         "token": [readable[p] if p >= 0 else "(mean of all tokens)" for p in pos]}
    )  # fmt: skip
    if names and lens is not None:
        lensed = lens(np.stack([vectors[n] for n in names]), token_id)
        for key, values in lensed.items():
            nodes[key] = values
    else:
        nodes["rank"] = pd.Series([None] * len(names), dtype=object)
        nodes["logit"] = np.full(len(names), np.nan)
        nodes["top"] = [[] for _ in names]
    return Routes(
        edges, heads, nodes, tokens, token, token_id, position, threshold, n_layers,
        model_name, attribution, walk.get("rows", {}), state, target, walk.get("biases", {}),
    )  # fmt: skip


def _node_order(name: str, n_layers: int = 0) -> tuple[int, int, int]:
    """``(layer, kind order, pos)`` of a node name (``E``: above the last layer, pos -1)."""
    if name == EMBEDDING_NODE:
        return n_layers, 4, -1
    kind = name[0]
    layer = -1 if name.startswith("X0_") else int(name[1:].split("_")[0])
    return layer, {"X": 0, "A": 1, "M": 2, "I": 3}[kind], int(name.rsplit("_", 1)[1])


__all__ = [
    "EDGE_COLUMNS",
    "EMBEDDING_NODE",
    "HEAD_COLUMNS",
    "KINDS",
    "PAGES",
    "Routes",
    "build_routes",
    "node_name",
]
