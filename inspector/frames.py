"""Tidy pandas frames built from a capture: one row per (layer, head, query, key).

Pure functions of :mod:`inspector.capture.types` objects; nothing here runs a model. Frames use
compact dtypes (small integers, categorical tokens, float32 weights) and copy the weights
unchanged, so ``frame.weight`` equals the model's own output attentions exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._io import atomic_path, atomic_paths
from .capture import memory as _memory
from .capture.memory import MemoryLimit
from .capture.options import ALL, Selection
from .capture.types import AttentionStack, Capture, Tokens, captured_positions
from .errors import InputError

#: The columns of every attention frame, in order (``kind`` is added for encoder-decoder models).
COLUMNS = ("layer", "head", "query_pos", "key_pos", "query_token", "key_token", "weight")
Level = Literal["token", "word"]
PARQUET_KEY = b"inspector"


@dataclass(frozen=True)
class FrameSpec:
    """What a long frame of a capture holds, built once by the facade (``ins.frame()``,
    ``ins.to_parquet()``) and read by the estimate, the frame and the streamed writer alike.

    Attributes:
        kinds: the stacks to include (default: all; an encoder-decoder's frame gets a ``kind``
            column).
        select: the model layers and heads to keep (as numbered in each stack).
        level: ``token`` rows, or ``word`` (sub-word pieces merged; rows still sum to 1).
        readable: token columns as the tokenizer decodes them (see :func:`stack_frame`).
    """

    kinds: tuple[str, ...] | None = None
    select: Selection = ALL
    level: Level = "token"
    readable: bool = False

    def __post_init__(self) -> None:
        if self.level not in ("token", "word"):
            raise InputError(f"level must be 'token' or 'word', not {self.level!r}")
        if self.kinds is not None:
            object.__setattr__(self, "kinds", tuple(self.kinds))


def _int_dtype(max_value: int) -> type[np.integer]:
    """The smallest *signed* integer type holding ``max_value``.

    Signed on purpose: ``frame.query_pos - frame.key_pos`` must give negative distances, not
    wrap around as unsigned types would.
    """
    for dt in (np.int8, np.int16, np.int32):
        if max_value <= np.iinfo(dt).max:
            return dt
    return np.int64


def _token_categorical(tokens: Sequence[str], repeat: int, tile: int) -> pd.Categorical:
    """Categorical of ``tokens`` laid out like ``np.tile(np.repeat(positions, repeat), tile)``."""
    codes, uniques = pd.factorize(np.asarray(tokens, dtype=object))
    small = codes.astype(np.int8 if len(uniques) < 127 else np.int16)
    laid_out = np.tile(np.repeat(small, repeat), tile)
    return pd.Categorical.from_codes(
        laid_out, categories=pd.Index(uniques, dtype=object), validate=False
    )


def select_stack(
    stack: AttentionStack,
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
) -> AttentionStack:
    """Keep only the given model layer / head indexes (as numbered in ``stack.layers``)."""
    if layers is None and heads is None:
        return stack

    li = captured_positions(layers, stack.layers, "layer")
    hi = captured_positions(heads, stack.heads, "head")
    weights = stack.weights[np.ix_(li, hi)]
    return AttentionStack(
        weights,
        stack.query,
        stack.key,
        stack.kind,
        stack.causal,
        tuple(stack.layers[i] for i in li),
        tuple(stack.heads[i] for i in hi),
        stack.tolerance,
    )


def _word_matrix(tokens: Tokens) -> tuple[np.ndarray, list[str]]:
    """(token, unit) membership: each word is a unit, each special token its own unit."""
    units: list[str] = []
    index = np.empty(len(tokens), dtype=np.int64)
    word_unit: dict[int, int] = {}
    words = tokens.word_strings()
    for i, w in enumerate(tokens.word_ids):
        if w < 0:
            index[i] = len(units)
            units.append(tokens.tokens[i])
        else:
            if int(w) not in word_unit:
                word_unit[int(w)] = len(units)
                units.append(words[int(w)])
            index[i] = word_unit[int(w)]
    member = np.zeros((len(tokens), len(units)), dtype=np.float64)
    member[np.arange(len(tokens)), index] = 1.0
    return member, units


def _word_tokens(tokens: Tokens, member: np.ndarray, units: list[str]) -> Tokens:
    first = member.argmax(axis=0)  # first token of each unit
    n = len(units)
    word_ids = np.where(tokens.word_ids[first] >= 0, tokens.word_ids[first], -1).astype(np.int32)
    offsets = np.full((n, 2), -1, dtype=np.int32)
    for u in range(n):
        idx = np.flatnonzero(member[:, u])
        if (tokens.offsets[idx] >= 0).all():
            offsets[u] = (tokens.offsets[idx, 0].min(), tokens.offsets[idx, 1].max())
    return Tokens(
        tuple(units),
        tokens.ids[first].copy(),
        tokens.special[first].copy(),
        word_ids,
        tokens.sequence_ids[first].copy(),
        offsets,
        tokens.texts,
    )


def word_level(stack: AttentionStack) -> AttentionStack:
    """Merge sub-word tokens into words: sum over a key word's pieces, mean over a query word's.

    Words come from the tokenizer's own word ids (WordPiece ``##``, byte-level BPE ``Ġ`` and
    SentencePiece ``▁`` alike); special tokens stay single units. Rows still sum to 1.
    """
    qm, qunits = _word_matrix(stack.query)
    if stack.key is stack.query:
        km, kunits = qm, qunits
    else:
        km, kunits = _word_matrix(stack.key)
    q_mean = (qm / qm.sum(axis=0, keepdims=True)).T  # (qword, qtoken)
    w = stack.weights.astype(np.float64)
    merged = np.einsum("wq,lhqk,kv->lhwv", q_mean, w, km, optimize=True).astype(np.float32)
    qt = _word_tokens(stack.query, qm, qunits)
    kt = qt if stack.key is stack.query else _word_tokens(stack.key, km, kunits)
    return AttentionStack(
        merged,
        qt,
        kt,
        stack.kind,
        stack.causal,
        stack.layers,
        stack.heads,
        max(stack.tolerance, 1e-4),
    )


def stack_frame(stack: AttentionStack, *, readable: bool = False) -> pd.DataFrame:
    """Long frame of one stack: columns :data:`COLUMNS`, one row per weight.

    ``readable`` names tokens as the tokenizer decodes them (:attr:`Tokens.readable`:
    ``␣capital``, ``⏎``) instead of the raw tokens (``Ġcapital``, ``Ċ``); the token columns are
    categorical, so this changes only their category names, not the frame's size.
    """
    n_l, n_h, n_q, n_k = stack.weights.shape
    pos_q = _int_dtype(n_q - 1)
    pos_k = _int_dtype(n_k - 1)
    layer = np.repeat(
        np.asarray(stack.layers, dtype=_int_dtype(max(stack.layers))), n_h * n_q * n_k
    )
    head = np.tile(
        np.repeat(np.asarray(stack.heads, dtype=_int_dtype(max(stack.heads))), n_q * n_k), n_l
    )
    q_pos = np.tile(np.repeat(np.arange(n_q, dtype=pos_q), n_k), n_l * n_h)
    k_pos = np.tile(np.arange(n_k, dtype=pos_k), n_l * n_h * n_q)
    data = {
        "layer": layer,
        "head": head,
        "query_pos": q_pos,
        "key_pos": k_pos,
        "query_token": _token_categorical(_names(stack.query, readable), n_k, n_l * n_h),
        "key_token": _token_categorical(_names(stack.key, readable), 1, n_l * n_h * n_q),
        # A copy: the capture's array is read-only and must stay unchanged by frame edits.
        "weight": stack.weights.reshape(-1).copy(),
    }
    return pd.DataFrame(data, copy=False)


def _names(tokens: Tokens, readable: bool) -> Sequence[str]:
    return (tokens.readable or tokens.tokens) if readable else tokens.tokens


def _chosen_kinds(capture: Capture, spec: FrameSpec) -> list[str]:
    chosen = list(spec.kinds) if spec.kinds is not None else list(capture.stacks)
    for k in chosen:
        if k not in capture.stacks:
            raise InputError(f"no {k!r} attention in this capture; it has {list(capture.stacks)}")
    return chosen


def _chosen_stacks(
    capture: Capture, chosen: Sequence[str], spec: FrameSpec
) -> Iterator[tuple[str, AttentionStack]]:
    """Each chosen stack by kind, narrowed to the spec's layers / heads, in words at ``word``
    level (one at a time: a stack is built when the caller gets to it)."""
    for k in chosen:
        stack = select_stack(capture.stacks[k], spec.select.layers, spec.select.heads)
        yield k, word_level(stack) if spec.level == "word" else stack


def _kind_column(capture: Capture, chosen: Sequence[str]) -> bool:
    """Whether a frame of the ``chosen`` stacks starts with a ``kind`` column: an
    encoder-decoder's always, and any frame of several stacks."""
    return capture.is_encoder_decoder or len(chosen) > 1


def _insert_kind(frame: pd.DataFrame, kind: str, capture: Capture) -> None:
    """Insert the leading ``kind`` column (categorical over the capture's stack kinds)."""
    column = pd.Categorical([kind] * len(frame), categories=list(capture.stacks))
    frame.insert(0, "kind", pd.Series(column, index=frame.index))


def _kept(capture: Capture, spec: FrameSpec) -> list[tuple[int, int, int]]:
    """``(layers, heads, query x key cells)`` a frame of each chosen stack holds."""
    out = []
    for k in _chosen_kinds(capture, spec):
        s = capture.stacks[k]
        n_l = len(captured_positions(spec.select.layers, s.layers, "layer"))
        n_h = len(captured_positions(spec.select.heads, s.heads, "head"))
        out.append((n_l, n_h, len(s.query) * len(s.key)))
    return out


def frame_estimate(
    capture: Capture, spec: FrameSpec = FrameSpec(), max_memory: MemoryLimit | None = None
) -> _memory.MemoryEstimate:
    """What building the long frame would allocate (rows x bytes per row), against the budget."""
    rows = sum(n_l * n_h * cells for n_l, n_h, cells in _kept(capture, spec))
    return _memory.estimate(
        f"a frame of {rows:,} rows", {"frame": rows * _memory.FRAME_BYTES_PER_ROW}, max_memory
    )


def capture_frame(
    capture: Capture, spec: FrameSpec = FrameSpec(), max_memory: MemoryLimit | None = None
) -> pd.DataFrame:
    """Long frame of a capture (:class:`FrameSpec`: which stacks, layers and heads, at which
    level, with which token names); encoder-decoder captures get a ``kind`` column first.

    Refused with :class:`~inspector.errors.ResourceError` before anything is built when its
    estimate (:func:`frame_estimate`) exceeds ``max_memory`` (default: the memory available).
    """
    chosen = _chosen_kinds(capture, spec)
    frame_estimate(capture, spec, max_memory).check(_memory.ADVICE["frame"])
    frames = [
        (k, stack_frame(stack, readable=spec.readable))
        for k, stack in _chosen_stacks(capture, chosen, spec)
    ]
    if not _kind_column(capture, chosen):
        out = frames[0][1]
    else:
        for k, f in frames:
            _insert_kind(f, k, capture)
        out = pd.concat([f for _, f in frames], ignore_index=True)
        for col in ("query_token", "key_token"):
            if out[col].dtype != "category":
                out[col] = out[col].astype("category")
    out.attrs["inspector"] = frame_metadata(capture, spec.level)
    out.attrs["inspector"]["token_names"] = "readable" if spec.readable else "raw"
    return out


def frame_metadata(capture: Capture, level: str = "token") -> dict[str, Any]:
    """JSON-safe metadata stored with a frame (``frame.attrs['inspector']``) and in Parquet."""
    meta = {k: v for k, v in capture.metadata.items()}
    meta["level"] = level
    meta["tokens"] = {k: list(s.query.tokens) for k, s in capture.stacks.items()}
    if capture.is_encoder_decoder:
        meta["tokens"]["cross_keys"] = list(capture.stacks["cross"].key.tokens)
    return json.loads(json.dumps(meta, default=str))


def tokens_frame(tokens: Tokens) -> pd.DataFrame:
    """One row per token: position, token (raw), readable (as the tokenizer decodes it: ``␣cat``,
    ``⏎``), id, word id, sequence, special flag, offsets."""
    return pd.DataFrame(
        {
            "position": np.arange(len(tokens), dtype=np.int32),
            "token": list(tokens.tokens),
            "readable": list(tokens.readable or tokens.tokens),
            "token_id": tokens.ids,
            "word_id": tokens.word_ids,
            "sequence": tokens.sequence_ids,
            "special": tokens.special,
            "start": tokens.offsets[:, 0],
            "end": tokens.offsets[:, 1],
        }
    )


# --------------------------------------------------------------------------------- export / import

#: Rows of one streamed piece (a layer, or a group of its heads): about 200 MB while it is
#: built and written (:data:`STREAM_BYTES_PER_ROW`).
PIECE_ROWS = 4_000_000


def _piece(
    stack: AttentionStack,
    li: int,
    heads: slice,
    rows: slice,
    dtypes: tuple[Any, Any, Any, Any],
    readable: bool = False,
) -> pd.DataFrame:
    """The frame rows of layer position ``li``, head positions ``heads``, query rows ``rows``."""
    w = stack.weights[li, heads, rows]
    n_h, n_q, n_k = w.shape
    layer_dt, head_dt, q_dt, k_dt = dtypes
    q_idx = np.arange(rows.start, rows.start + n_q)
    q_codes, q_cats = pd.factorize(np.asarray(_names(stack.query, readable), dtype=object))
    k_codes, k_cats = pd.factorize(np.asarray(_names(stack.key, readable), dtype=object))

    def tokens(codes: np.ndarray, cats: Any) -> pd.Categorical:
        return pd.Categorical.from_codes(codes, categories=pd.Index(cats, dtype=object))

    return pd.DataFrame(
        {
            "layer": np.full(n_h * n_q * n_k, stack.layers[li], dtype=layer_dt),
            "head": np.repeat(np.asarray(stack.heads[heads], dtype=head_dt), n_q * n_k),
            "query_pos": np.tile(np.repeat(q_idx.astype(q_dt), n_k), n_h),
            "key_pos": np.tile(np.arange(n_k, dtype=k_dt), n_h * n_q),
            "query_token": tokens(np.tile(np.repeat(q_codes[q_idx], n_k), n_h), q_cats),
            "key_token": tokens(np.tile(k_codes, n_h * n_q), k_cats),
            "weight": w.reshape(-1).copy(),
        },
        copy=False,
    )


def frame_pieces(
    capture: Capture, spec: FrameSpec = FrameSpec(), piece_rows: int = PIECE_ROWS
) -> Iterator[pd.DataFrame]:
    """The rows of :func:`capture_frame` in the same order, at most about ``piece_rows`` at a
    time (a layer, a group of its heads, or a block of one head's query rows), with the same
    integer dtypes in every piece; token columns are categorical. What a streaming writer
    needs."""
    chosen = _chosen_kinds(capture, spec)
    for k, stack in _chosen_stacks(capture, chosen, spec):
        n_l, n_h, n_q, n_k = stack.weights.shape
        dtypes = (
            _int_dtype(max(stack.layers)),
            _int_dtype(max(stack.heads)),
            _int_dtype(n_q - 1),
            _int_dtype(n_k - 1),
        )
        group = max(1, piece_rows // max(1, n_q * n_k))
        q_block = n_q if group > 1 or n_q * n_k <= piece_rows else max(1, piece_rows // n_k)
        for li in range(n_l):
            for h0 in range(0, n_h, group):
                for q0 in range(0, n_q, q_block):
                    piece = _piece(
                        stack,
                        li,
                        slice(h0, h0 + group),
                        slice(q0, q0 + q_block),
                        dtypes,
                        spec.readable,
                    )
                    if _kind_column(capture, chosen):
                        _insert_kind(piece, k, capture)
                    yield piece


#: Bytes a streamed row takes while its piece is written: the piece's columns, the temporaries
#: that build them, and its Arrow copy (measured: about 46 on SmolLM2).
STREAM_BYTES_PER_ROW = 56
#: What a streamed write holds besides its piece (the writer's buffers).
STREAM_FIXED_BYTES = 32_000_000


def stream_estimate(
    capture: Capture,
    spec: FrameSpec = FrameSpec(),
    piece_rows: int = PIECE_ROWS,
    max_memory: MemoryLimit | None = None,
) -> _memory.MemoryEstimate:
    """What :func:`write_capture_frame` allocates (its largest piece), against the budget."""
    largest = 0
    for _, n_h, cells in _kept(capture, spec):
        group = max(1, piece_rows // max(1, cells))
        piece = min(n_h, group) * cells if group > 1 or cells <= piece_rows else piece_rows
        largest = max(largest, piece)
    return _memory.estimate(
        f"streaming pieces of {largest:,} rows",
        {"piece": largest * STREAM_BYTES_PER_ROW, "writer": STREAM_FIXED_BYTES},
        max_memory,
    )


def write_capture_frame(
    capture: Capture,
    path: str | os.PathLike[str],
    spec: FrameSpec = FrameSpec(),
    piece_rows: int = PIECE_ROWS,
) -> Path:
    """Write :func:`capture_frame` to Parquet (one row group per piece) or CSV without ever
    building the whole frame: memory stays one layer's rows (or fewer), at any input length."""
    suffix = _table_suffix(path)
    meta = frame_metadata(capture, spec.level)
    meta["token_names"] = "readable" if spec.readable else "raw"
    pieces = frame_pieces(capture, spec, piece_rows)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                for i, piece in enumerate(pieces):
                    piece.to_csv(fh, index=False, header=i == 0)
            return Path(path)
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        schema = None
        try:
            for piece in pieces:
                table = pa.Table.from_pandas(piece, preserve_index=False)
                if writer is None:
                    info = dict(table.schema.metadata or {})
                    info[PARQUET_KEY] = json.dumps(meta).encode()
                    schema = table.schema.with_metadata(info)
                    writer = pq.ParquetWriter(tmp, schema)
                writer.write_table(table.cast(schema))
        finally:
            if writer is not None:
                writer.close()
    return Path(path)


def _table_suffix(path: str | os.PathLike[str]) -> str:
    """``.parquet`` or ``.csv``, the suffix of a frame's output; any other is refused."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"unsupported output {path}: use a .parquet or .csv file name")
    return suffix


def write_frame(frame: pd.DataFrame, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write a frame atomically as Parquet (with its metadata) or CSV, chosen by the suffix."""
    return write_frames({path: frame}, force=force)[0]


def write_frames(
    frames: Mapping[str | os.PathLike[str], pd.DataFrame],
    *,
    remove: Sequence[str | os.PathLike[str]] = (),
    force: bool = False,
) -> list[Path]:
    """Write several frames (each as :func:`write_frame` would) as one set: every file is new,
    or none changed; the files in ``remove`` (stale members of the set) are deleted with them.
    Returns the written paths."""
    suffixes = [_table_suffix(path) for path in frames]
    paths = [Path(p) for p in frames]
    with atomic_paths(paths, remove=remove, force=force) as tmps:
        for suffix, frame, tmp in zip(suffixes, frames.values(), tmps, strict=True):
            if suffix == ".csv":
                frame.to_csv(tmp, index=False)
                continue
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            meta = dict(table.schema.metadata or {})
            meta[PARQUET_KEY] = json.dumps(frame.attrs.get("inspector", {})).encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp)
    return paths


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a frame written by :func:`write_frame`; metadata returns in ``attrs['inspector']``."""
    import pyarrow.parquet as pq

    if not Path(path).exists():
        raise InputError(f"{path} does not exist; give a file written by Inspection.to_parquet()")
    if not Path(path).is_file():
        raise InputError(f"{path} is a folder; give a file written by Inspection.to_parquet()")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise InputError(
            f"{path} is not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]}); "
            f"give a file written by Inspection.to_parquet()"
        ) from exc
    frame = table.to_pandas()
    raw: Mapping[bytes, bytes] = table.schema.metadata or {}
    if PARQUET_KEY in raw:
        frame.attrs["inspector"] = json.loads(raw[PARQUET_KEY])
    return frame
