"""The facade: ``load`` → :class:`LoadedModel` → ``inspect`` → :class:`Inspection`.

Convenience methods (frames, exports, views, reports, metrics) live here and delegate to the pure
modules below; the data classes of :mod:`inspector.capture` never render or measure themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import atlas as _atlas
from . import compare as _compare
from . import explain as _explain
from . import frames as _frames
from . import generation as _generation
from . import metrics as _metrics
from . import probe as _probe
from .capture import AttentionStack, Capture, Tokens, capture, kv_groups
from .errors import InputError
from .loading import ModelBundle, list_embedded, load_model


def load(
    model: Any,
    tokenizer: Any = None,
    *,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load a model for attention inspection.

    Args:
        model: ``"minilm"`` (embedded all-MiniLM-L6-v2), ``"smollm2"``, a local folder, a hub id,
            or an already-built ``(model, tokenizer)`` pair.
        tokenizer: optional tokenizer (object, folder or hub id).
        device: torch device, e.g. ``"cuda"``.
        dtype: e.g. ``"float16"``; attention is always returned as float32.
        trust_remote_code: let a model folder run its own code (off unless you ask).
        gguf_file: name of a GGUF file inside the folder ``model``.
        allow_pickle: accept pickle weights (``pytorch_model.bin``) when no safetensors file
            exists; off by default because unpickling can run code.

    Example:
        >>> m = inspector.load("minilm")  # doctest: +SKIP
        >>> ins = m.inspect("The cat sat on the mat.")  # doctest: +SKIP
        >>> ins.attention.shape  # doctest: +SKIP
        (6, 12, 9, 9)
    """
    return LoadedModel(
        load_model(
            model,
            tokenizer,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            gguf_file=gguf_file,
            allow_pickle=allow_pickle,
        )
    )


class LoadedModel:
    """A model loaded with eager attention, in eval mode. Create it with :func:`load`."""

    def __init__(self, bundle: ModelBundle) -> None:
        if not isinstance(bundle, ModelBundle):
            raise InputError("LoadedModel wraps a ModelBundle; use inspector.load(...)")
        self.bundle = bundle

    @property
    def model(self) -> Any:
        return self.bundle.model

    @property
    def tokenizer(self) -> Any:
        return self.bundle.tokenizer

    @property
    def name(self) -> str:
        return self.bundle.name

    def __repr__(self) -> str:
        b = self.bundle
        return (
            f"LoadedModel({b.name!r}, {b.model_type}, {b.architecture}, "
            f"{b.n_layers} layers x {b.n_heads} heads, {b.n_parameters / 1e6:.1f}M params)"
        )

    def inspect(
        self,
        text: str | None = None,
        text_pair: str | None = None,
        *,
        target: str | None = None,
        truncation: bool = False,
        max_length: int | None = None,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        messages: Sequence[Mapping[str, str]] | None = None,
        add_generation_prompt: bool = False,
        dtype: Any = None,
    ) -> Inspection:
        """Run the model on ``text`` (and ``text_pair``) and capture every head's attention.

        Args:
            text: the input.
            text_pair: optional second text of a sentence pair.
            target: decoder input for encoder-decoder models.
            truncation: keep the first ``max_length`` (default: the model's limit) tokens
                instead of raising on longer inputs.
            max_length: a lower token limit than the model's.
            layers, heads: keep only these indexes (negative counts from the end); the others are
                never copied out of the model, so memory follows what is kept.
            messages: instead of ``text``, a chat ``[{"role": "user", "content": ...}, ...]``
                rendered with the tokenizer's chat template.
            add_generation_prompt: with ``messages``, end with the assistant's turn header.
            dtype: storage of the weights: ``"float32"`` (default) or ``"float16"``.

        Returns:
            An :class:`Inspection`; ``attention`` has shape ``(layer, head, query, key)``.
        """
        cap = capture(
            self.bundle,
            text,
            text_pair,
            target=target,
            truncation=truncation,
            max_length=max_length,
            layers=layers,
            heads=heads,
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            dtype=dtype,
        )
        return Inspection(cap, model=self)

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        max_new_tokens: int = 20,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        dtype: Any = None,
        **generation_kwargs: Any,
    ) -> Inspection:
        """Generate from ``prompt`` (or a chat) and capture the attention of every step.

        Greedy unless you pass sampling options (``do_sample=True, temperature=0.7``), which go
        to ``model.generate``. The inspection's tokens are prompt + generated tokens
        (``prompt_length`` tells them apart) and its attention is the full causal
        ``(layer, head, query, key)`` matrix; encoder-decoder models give ``.encoder``,
        ``.decoder`` and ``.cross``. See :func:`inspector.generation.generate`.

        Example:
            >>> ins = m.generate("The capital of France is", max_new_tokens=5)  # doctest: +SKIP
            >>> ins.prompt_length, len(ins.tokens)  # doctest: +SKIP
            (5, 10)
        """
        cap = _generation.generate(
            self.bundle,
            prompt,
            messages=messages,
            max_new_tokens=max_new_tokens,
            layers=layers,
            heads=heads,
            dtype=dtype,
            **generation_kwargs,
        )
        return Inspection(cap, model=self)

    def detect_heads(self, **kw: Any) -> pd.DataFrame:
        """Previous-token, duplicate-token and induction scores; see :func:`detect_heads`."""
        return detect_heads(self, **kw)


class Inspection:
    """One input's captured attention, with frames, exports and views.

    For self-attention models ``tokens`` / ``attention`` describe the single stack. For
    encoder-decoder models use ``.encoder``, ``.decoder`` and ``.cross``, which are Inspections of
    one stack each (cross attention is ``(layer, head, decoder_query, encoder_key)``).
    """

    def __init__(
        self, capture: Capture, kind: str | None = None, *, model: LoadedModel | None = None
    ) -> None:
        if not isinstance(capture, Capture):
            raise InputError("Inspection wraps a Capture; use LoadedModel.inspect(...)")
        if kind is None and not capture.is_encoder_decoder:
            kind = "self"
        if kind is not None and kind not in capture.stacks:
            raise InputError(f"no {kind!r} attention here; available: {list(capture.stacks)}")
        self.capture = capture
        self.kind = kind
        #: the model that made the capture (needed by :meth:`neuron_view` only)
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
    def key_tokens(self) -> list[str]:
        return list(self.stack.key.tokens)

    @property
    def token_ids(self) -> np.ndarray:
        return self.stack.query.ids

    @property
    def special_mask(self) -> np.ndarray:
        return self.stack.query.special

    @property
    def word_ids(self) -> np.ndarray:
        return self.stack.query.word_ids

    @property
    def token_info(self) -> Tokens:
        return self.stack.query

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.capture.metadata)

    @property
    def layers(self) -> tuple[int, ...]:
        return self.capture.stacks[self.kind or "encoder"].layers

    @property
    def heads(self) -> tuple[int, ...]:
        return self.capture.stacks[self.kind or "encoder"].heads

    # ------------------------------------------------------------------ generation / GQA
    @property
    def prompt_length(self) -> int:
        """Query positions before the first generated token (all of them for ``inspect``)."""
        return _generation.prompt_length(self.capture)

    @property
    def generated_mask(self) -> np.ndarray:
        """True for query tokens the model generated (decoder side for encoder-decoder)."""
        kind = self.kind or "decoder"
        return np.asarray(self.capture.stacks[kind].query.generated)

    @property
    def kv_groups(self) -> dict[int, tuple[int, ...]]:
        """Kept query heads by the key/value head they share (grouped-query attention)."""
        return kv_groups(self.capture, None if self.kind in (None, "encoder") else self.kind)

    def with_kv_head(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (any frame with a ``head`` column) plus a ``kv_head`` column after it."""
        if "head" not in frame.columns:
            raise InputError("with_kv_head() needs a frame with a 'head' column")
        kv = self.capture.metadata.get("kv_heads") or list(range(int(frame["head"].max()) + 1))
        out = frame.copy()
        out.insert(
            int(out.columns.get_loc("head")) + 1,  # type: ignore[arg-type]
            "kv_head",
            np.asarray(kv, dtype=np.int16)[out["head"].to_numpy(dtype=np.int64)],
        )
        return out

    def generation_steps(self, **kw: Any) -> pd.DataFrame:
        """What each generation step attended to most; see :func:`generation_steps`."""
        return _generation.generation_steps(self.capture, **kw)

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
    ) -> pd.DataFrame:
        """Long tidy frame: ``layer, head, query_pos, key_pos, query_token, key_token, weight``.

        Encoder-decoder inspections (not narrowed to one part) add a leading ``kind`` column.
        ``level="word"`` merges sub-word pieces into words (rows still sum to 1).
        """
        kinds = None if self.kind is None else [self.kind]
        return _frames.capture_frame(
            self.capture,
            kinds=kinds,
            layers=layers,
            heads=heads,
            level=level,  # type: ignore[arg-type]
        )

    def tokens_frame(self) -> pd.DataFrame:
        """One row per token: position, token, id, word id, sequence, special, offsets."""
        return _frames.tokens_frame(self.stack.query)

    def to_parquet(self, path: str | os.PathLike[str], **frame_kw: Any) -> Path:
        """Write :meth:`frame` with its metadata to Parquet (read back with ``read_parquet``)."""
        return self._write(path, ".parquet", frame_kw)

    def to_csv(self, path: str | os.PathLike[str], **frame_kw: Any) -> Path:
        """Write :meth:`frame` to CSV for spreadsheets."""
        return self._write(path, ".csv", frame_kw)

    def _write(self, path: str | os.PathLike[str], suffix: str, frame_kw: dict[str, Any]) -> Path:
        if Path(path).suffix.lower() != suffix:
            raise InputError(f"{path}: expected a file name ending in {suffix}")
        return _frames.write_frame(self.frame(**frame_kw), path)

    # ------------------------------------------------------------------ head analysis
    def head_metrics(self, names: Sequence[str] | str | None = None) -> pd.DataFrame:
        """Per-head metrics indexed by ``(layer, head)``; see :mod:`inspector.metrics`."""
        return _metrics.head_metrics(self.stack, names)

    def head_roles(
        self, thresholds: _metrics.RoleThresholds | None = None, **overrides: float
    ) -> pd.DataFrame:
        """Each head's role (previous, next, self, sink, broad, punctuation or other)."""
        return _metrics.head_roles(self.head_metrics(), thresholds, **overrides)

    def layer_summary(self) -> pd.DataFrame:
        """Per-layer mean entropy / distance and the share of each head role."""
        return _metrics.layer_summary(self.head_metrics())

    def detector_scores(self) -> pd.DataFrame:
        """Previous-token, duplicate-token and induction scores of every head on this input."""
        return _metrics.detector_scores(self.stack)

    def head_similarity(self, method: str = "js") -> pd.DataFrame:
        """Distance between every pair of heads, square on ``(layer, head)`` (``js``/``cosine``)."""
        return _metrics.head_distance_frame(self.stack, method)

    def head_clusters(self, method: str = "js", **kw: Any) -> pd.DataFrame:
        """Hierarchical clusters and dendrogram order of the heads (see ``cluster_heads``)."""
        return _metrics.cluster_heads(self.head_similarity(method), **kw)

    def head_embedding(self, method: str = "js") -> pd.DataFrame:
        """2-D classical MDS coordinates ``x, y`` of the heads, for plotting."""
        return _metrics.head_embedding(self.head_similarity(method))

    def nearest_heads(
        self, layer: int, head: int, k: int = 5, *, method: str = "js"
    ) -> pd.DataFrame:
        """The ``k`` heads whose attention is closest to head ``(layer, head)``."""
        return _metrics.nearest_heads(self.head_similarity(method), layer, head, k)

    # ------------------------------------------------------------------ views and reports
    def head_view(self, **options: Any) -> Any:
        """bertviz's head view as a self-contained page (``_repr_html_``, ``save(path)``).

        Options: ``layer``, ``heads``, ``include_layers``, ``sentence_b_start`` (default: from
        ``text_pair``), ``kind`` (encoder-decoder: ``encoder``/``decoder``/``cross``, default
        all), ``prettify_tokens``, ``precision``; see :func:`inspector.render.head_view`.
        """
        from .render import head_view

        options.setdefault("kind", self.kind)
        return head_view(self.capture, **options)

    def model_view(self, **options: Any) -> Any:
        """bertviz's model view (every layer x head); options as :meth:`head_view` plus
        ``include_heads`` and ``display_mode`` (``"light"``/``"dark"``)."""
        from .render import model_view

        options.setdefault("kind", self.kind)
        return model_view(self.capture, **options)

    def neuron_view(self, **options: Any) -> Any:
        """bertviz's neuron view (query/key vectors), BERT, RoBERTa and GPT-2 families only;
        raises :class:`~inspector.errors.UnsupportedModelError` for others."""
        from .errors import UnsupportedModelError
        from .render import neuron_view

        if self.model is None:
            raise UnsupportedModelError(
                "the neuron view needs the model: use LoadedModel.inspect(...).neuron_view()"
            )
        return neuron_view(self.model.bundle, self.capture, **options)

    def report(self, path: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        """Build the self-contained HTML report; write it to ``path`` when given.

        Example:
            >>> ins.report("reports/cat.html")  # doctest: +SKIP
        """
        from .render import build_report

        rendered = build_report(self.capture, **options)
        if path is not None:
            rendered.save(path)
        return rendered

    def compare(self, other: Inspection) -> _compare.Comparison:
        """Head-by-head comparison with another inspection; see :func:`inspector.compare`."""
        return _compare.compare(self, other)

    # ------------------------------------------------------------------ debugging decisions
    def _bundle_for(self, what: str) -> ModelBundle:
        if self.model is None:
            from .errors import UnsupportedModelError

            raise UnsupportedModelError(
                f"{what} runs the model again: use LoadedModel.inspect(...).{what}()"
            )
        return self.model.bundle

    def rollout(
        self,
        start_layer: int = 0,
        head_reduce: _explain.HeadReduce = "mean",
        *,
        exclude_special: bool = False,
    ) -> pd.DataFrame:
        """Attention rollout as a ``query_pos, key_pos, query_token, key_token, weight`` frame.

        See :func:`inspector.explain.rollout`; ``exclude_special`` drops special tokens and
        renormalises the rows.
        """
        matrix = _explain.rollout(
            self.stack,
            start_layer=start_layer,
            head_reduce=head_reduce,
            exclude_special=exclude_special,
        )
        return _explain.matrix_frame(matrix, self.stack.query)

    def attention_flow(
        self,
        start_layer: int = 0,
        head_reduce: _explain.HeadReduce = "mean",
        *,
        exclude_special: bool = False,
        max_tokens: int = _explain.FLOW_MAX_TOKENS,
    ) -> pd.DataFrame:
        """Attention flow (max-flow) as a frame like :meth:`rollout`; short inputs only."""
        matrix = _explain.attention_flow(
            self.stack,
            start_layer=start_layer,
            head_reduce=head_reduce,
            exclude_special=exclude_special,
            max_tokens=max_tokens,
        )
        return _explain.matrix_frame(matrix, self.stack.query)

    def attention_norms(
        self,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        *,
        exclude_special: bool = False,
        normalise: bool = False,
    ) -> pd.DataFrame:
        """Norm-based attention ``‖α·f(x)‖``: the :meth:`frame` columns plus ``norm``.

        ``normalise`` turns ``norm`` into a per-row share (sums to 1, comparable with
        ``weight``). Arrays: ``inspector.explain.attention_norms(model.bundle, ins.stack)``.
        """
        result = _explain.attention_norms(
            self._bundle_for("attention_norms"),
            self.stack,
            layers=[layers] if isinstance(layers, int) else layers,
            heads=[heads] if isinstance(heads, int) else heads,
        )
        return result.frame(exclude_special=exclude_special, normalise=normalise)

    def head_importance(
        self,
        target: Any = None,
        method: _explain.Method = "ablation",
        **options: Any,
    ) -> pd.DataFrame:
        """``(layer, head)`` importance for ``target`` on this input (ablation or gradient).

        ``target``: ``"predicted"``, ``"token:Paris"``, ``"label:POSITIVE"``, ``"loss:1"``,
        ``"embedding"``, an :class:`inspector.explain.Target` or a callable; ``options``:
        ``mode`` (``zero``/``mean``), ``batch_size``. See :func:`inspector.explain.head_importance`.
        """
        return _explain.head_importance(
            self._bundle_for("head_importance"),
            self.stack.query,
            target=target,
            method=method,
            **options,
        )

    def explain(self, target: Any = None, method: _explain.Method = "ablation", **kw: Any) -> Any:
        """The "what mattered" summary (:class:`inspector.explain.Explanation`)."""
        return _explain.explain(
            self._bundle_for("explain"), self.capture, target=target, method=method, **kw
        )

    def explain_report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        target: Any = None,
        method: _explain.Method = "ablation",
        layer: int | None = None,
        top: int = 4,
        **options: Any,
    ) -> Any:
        """The HTML report with a "what mattered" section (see :meth:`explain`).

        Example:
            >>> ins.explain_report("reports/explain.html", target="predicted")  # doctest: +SKIP
        """
        from .render import build_report
        from .render.explain_section import explain_section

        expl = self.explain(target, method, layer=layer, top=top)
        rendered = build_report(self.capture, extra_sections=[explain_section(expl)], **options)
        if path is not None:
            rendered.save(path)
        return rendered


# --------------------------------------------------------------------------- many inputs


def _stacks(
    model: LoadedModel,
    texts: Sequence[str] | str,
    kind: str | None,
    truncation: bool,
    max_length: int | None,
) -> Any:
    """Lazily inspect each text and yield its stack of ``kind`` (default: self or encoder)."""
    if not isinstance(model, LoadedModel):
        raise InputError(f"model must be a LoadedModel from inspector.load, not {type(model)}")
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise InputError("no texts given; pass a list of strings")
    for text in texts:
        ins = model.inspect(text, truncation=truncation, max_length=max_length)
        part = kind or ("encoder" if ins.is_encoder_decoder else "self")
        if part not in ins.capture.stacks:
            raise InputError(f"no {part!r} attention; available: {list(ins.capture.stacks)}")
        yield ins.capture.stacks[part]


def head_metrics(
    model: LoadedModel,
    texts: Sequence[str] | str,
    names: Sequence[str] | str | None = None,
    *,
    kind: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Per-head metrics averaged over many texts: means, ``<metric>_std`` and ``n``.

    Example:
        >>> inspector.head_metrics(m, ["The cat sat.", "A dog barked."])  # doctest: +SKIP
    """
    stacks = _stacks(model, texts, kind, truncation, max_length)
    return _metrics.aggregate_head_metrics(stacks, names)


def head_similarity(
    model: LoadedModel,
    texts: Sequence[str] | str,
    method: str = "js",
    *,
    kind: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Head-to-head distances averaged over many texts, square on ``(layer, head)``."""
    stacks = _stacks(model, texts, kind, truncation, max_length)
    return _metrics.mean_head_distances(stacks, method)


def detect_heads(
    model: LoadedModel,
    *,
    n_tokens: int = 24,
    n_samples: int = 4,
    seed: int = 0,
    kind: str | None = None,
) -> pd.DataFrame:
    """Score every head as previous-token, duplicate-token and induction head.

    Runs the model on ``n_samples`` random word sequences repeated twice (words drawn from the
    tokenizer's vocabulary) and averages :func:`inspector.metrics.detector_scores`. Works for
    causal and bidirectional models (for the latter, "earlier" means "any other" occurrence).
    """
    if n_samples < 1:
        raise InputError(f"n_samples must be at least 1, got {n_samples}")
    tok = model.tokenizer
    words = _metrics.vocabulary_words(tok.get_vocab(), tok.all_special_tokens)
    texts = [
        _metrics.repeated_random_text(words, n_tokens, seed=seed + i) for i in range(n_samples)
    ]
    limit = model.bundle.max_positions
    frames = [
        _metrics.detector_scores(stack)
        for stack in _stacks(model, texts, kind, limit is not None, None)
    ]
    return pd.concat(frames).groupby(level=["layer", "head"]).mean()


def compare(a: Any, b: Any, *, labels: tuple[str, str] | None = None) -> _compare.Comparison:
    """Compare two inspections head by head (see :mod:`inspector.compare`)."""
    return _compare.compare(a, b, labels=labels)


def _bundle(model: Any) -> ModelBundle:
    if isinstance(model, LoadedModel):
        return model.bundle
    if isinstance(model, ModelBundle):
        return model
    return load(model).bundle


def atlas(
    model: Any,
    texts: Any,
    *,
    engine: str = "local",
    address: str | None = None,
    num_workers: int = 2,
    **options: Any,
) -> _atlas.Atlas:
    """Per-head attention statistics over a corpus, streamed in padded batches.

    Args:
        model: a :class:`LoadedModel`, or anything :func:`load` accepts.
        texts: a list or iterable of texts, a text file (one per line), ``"file.csv:column"``,
            a Parquet file (``column=``), a ``.conllu`` treebank or a ``datasets`` dataset.
        engine: ``"local"`` (checkpoints, ``resume=True``) or ``"ray"`` (Ray Data; workers
            load ``model`` by name, so pass a name or folder every worker can reach).
        address / num_workers: the Ray cluster and number of model replicas (``engine="ray"``).
        **options: ``batch_size``, ``max_length``, ``metrics``, ``column``, ``kind``,
            ``distances``, ``checkpoint``, ``resume``, ``progress``, ``limit`` — see
            :func:`inspector.atlas.run_atlas`.

    Returns:
        An :class:`inspector.atlas.Atlas`: ``.summary`` (layer, head, metric, n, mean, std,
        95% intervals, quantiles), ``.distances`` (mean head-distance matrix), ``.metadata``.

    Example:
        >>> a = inspector.atlas("minilm", "corpus.txt", batch_size=32)  # doctest: +SKIP
        >>> a.metric("to_prev")  # doctest: +SKIP
    """
    if engine == "local":
        return _atlas.run_atlas(_bundle(model), texts, **options)
    if engine == "ray":
        for key in ("checkpoint", "resume", "checkpoint_every"):
            if options.pop(key, None):
                raise InputError(f"{key}= is for the local engine; Ray re-runs failed tasks itself")
        target = model.bundle if isinstance(model, LoadedModel) else model
        return _atlas.run_atlas_ray(
            target, texts, address=address, num_workers=num_workers, **options
        )
    raise InputError(f"engine must be 'local' or 'ray', not {engine!r}")


def syntax_probe(
    model: Any, conllu_path: str | os.PathLike[str], **options: Any
) -> _probe.ProbeResult:
    """Clark et al. (2019) syntactic head probe on a CoNLL-U treebank.

    For every dependency relation: the head whose most-attended other word is most often the
    syntactic head (or, transposed, the dependent), next to the best fixed-offset baseline.
    ``options``: ``batch_size``, ``limit``, ``subtypes``, ``exclude``, ``progress`` — see
    :func:`inspector.probe.syntax_probe`.

    Example:
        >>> r = inspector.syntax_probe("minilm", "en_ewt-ud-dev.conllu")  # doctest: +SKIP
        >>> r.table  # doctest: +SKIP
    """
    return _probe.syntax_probe(_bundle(model), conllu_path, **options)


def head_importance(
    model: Any,
    texts: Sequence[str] | str,
    *,
    target: Any = None,
    method: _explain.Method = "ablation",
    **options: Any,
) -> pd.DataFrame:
    """Head importance ``(layer, head)`` averaged over ``texts`` (ablation or gradient).

    ``options``: ``mode``, ``batch_size``, ``per_text``, ``progress``; see
    :func:`inspector.explain.head_importance_many` and :class:`inspector.explain.Target`.

    Example:
        >>> inspector.head_importance(m, sentences, method="gradient")  # doctest: +SKIP
    """
    if isinstance(texts, str):
        texts = [texts]
    return _explain.head_importance_many(
        _bundle(model), list(texts), target=target, method=method, **options
    )


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a frame written by :meth:`Inspection.to_parquet` (metadata: ``attrs['inspector']``)."""
    return _frames.read_parquet(path)


__all__ = [
    "Inspection",
    "LoadedModel",
    "atlas",
    "compare",
    "detect_heads",
    "head_importance",
    "head_metrics",
    "head_similarity",
    "list_embedded",
    "load",
    "read_parquet",
    "syntax_probe",
]
