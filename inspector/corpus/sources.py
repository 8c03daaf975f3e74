"""Where corpus texts come from: lists, iterables, text/CSV/Parquet/CoNLL-U files, datasets.

A :class:`TextSource` re-opens its texts lazily, so a corpus is read once, in order, without being
held in memory. Pure I/O: nothing here runs a model.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError


@dataclass(frozen=True)
class TextSource:
    """A re-openable stream of texts with an optional known length.

    Attributes:
        open: returns a fresh iterator over the texts (items that are not usable text are
            yielded as-is and skipped later, so positions stay stable for ``--resume``).
        total: the number of items when known cheaply, else ``None``.
        description: where the texts come from, for metadata and messages.
        path / column: the file and column, when the source is a file.
    """

    open: Callable[[], Iterator[Any]]
    total: int | None
    description: str
    path: Path | None = None
    column: str | None = None

    def __iter__(self) -> Iterator[Any]:
        return self.open()


def _split_column(spec: str) -> tuple[str, str | None]:
    """``data.csv:text`` → (``data.csv``, ``text``); a plain existing path keeps no column."""
    if os.path.exists(spec):
        return spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail and os.path.exists(head):
        return head, tail
    return spec, None


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _pick_column(columns: Sequence[str], column: str | None, where: str) -> str:
    if column is not None:
        if column not in columns:
            raise InputError(
                f"{where} has no column {column!r}; its columns are {list(columns)} "
                f"(name one as FILE:COLUMN or column=...)"
            )
        return column
    if "text" in columns:
        return "text"
    if len(columns) == 1:
        return columns[0]
    raise InputError(
        f"{where} has several columns {list(columns)}; name the text column as FILE:COLUMN or "
        f"column=..."
    )


def _text_file(path: Path) -> TextSource:
    def lines() -> Iterator[str]:
        with path.open(encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\r\n")

    return TextSource(lines, _count_lines(path), str(path), path)


def _csv_file(path: Path, column: str | None) -> TextSource:
    with path.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    col = _pick_column(header, column, str(path))

    def rows() -> Iterator[Any]:
        for chunk in pd.read_csv(path, usecols=[col], chunksize=4096, dtype={col: "string"}):
            for value in chunk[col].tolist():
                yield value if isinstance(value, str) else None

    return TextSource(rows, None, f"{path}:{col}", path, col)


def _parquet_file(path: Path, column: str | None) -> TextSource:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    col = _pick_column(meta.schema_arrow.names, column, str(path))

    def rows() -> Iterator[Any]:
        for batch in pq.ParquetFile(path).iter_batches(columns=[col], batch_size=4096):
            yield from batch.column(0).to_pylist()

    return TextSource(rows, meta.metadata.num_rows, f"{path}:{col}", path, col)


def _conllu_file(path: Path) -> TextSource:
    from conllu import parse_incr

    def sentences() -> Iterator[Any]:
        with path.open(encoding="utf-8") as f:
            for sent in parse_incr(f):
                text = sent.metadata.get("text")
                if text is None:  # no "# text =" comment: join the surface tokens
                    text = " ".join(str(t["form"]) for t in sent if isinstance(t["id"], int))
                yield text

    with path.open(encoding="utf-8") as f:
        total = sum(1 for line in f if line.startswith("# text ="))
    return TextSource(sentences, total or None, str(path), path)


def _is_hf_dataset(obj: Any) -> bool:
    return hasattr(obj, "column_names") and hasattr(obj, "__iter__") and not isinstance(obj, str)


def _hf_dataset(ds: Any, column: str | None) -> TextSource:
    names = ds.column_names
    if isinstance(names, dict):  # a DatasetDict
        raise InputError(
            f"this is a DatasetDict with splits {list(names)}; pass one split, e.g. ds['train']"
        )
    col = _pick_column(list(names or []), column, "the dataset")

    def rows() -> Iterator[Any]:
        for row in ds:
            yield row[col]

    try:
        total: int | None = len(ds)
    except TypeError:  # streaming IterableDataset
        total = None
    return TextSource(rows, total, f"datasets:{col}", None, col)


def text_source(texts: Any, *, column: str | None = None) -> TextSource:
    """Turn what the caller gave into a :class:`TextSource`.

    Args:
        texts: a list or any iterable of strings; a path to a text file (one text per line), a
            ``.csv``/``.tsv``/``.parquet`` file (give the column as ``FILE:COLUMN`` or
            ``column=``; a column named ``text`` or a single column is found by itself), a
            ``.conllu`` treebank (its ``# text =`` lines); a pandas Series or DataFrame; or a
            Hugging Face ``datasets`` dataset (duck-typed: anything with ``column_names``).
        column: the text column of a table, CSV/Parquet file or dataset.

    Example:
        >>> src = text_source(["The cat sat.", "A dog barked."])
        >>> list(src)
        ['The cat sat.', 'A dog barked.']
    """
    if isinstance(texts, TextSource):
        return texts
    if isinstance(texts, str | os.PathLike):
        spec, col = _split_column(os.fspath(texts))
        col = column or col
        path = Path(spec).expanduser()
        if not path.exists():
            if isinstance(texts, str) and not any(c in texts for c in "/\\") and " " in texts:
                raise InputError(
                    "texts is a single string; pass a list of texts, e.g. [text], or a file path"
                )
            raise InputError(f"{spec} does not exist; give a text, CSV, Parquet or CoNLL-U file")
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a file with one text per line")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return _parquet_file(path, col)
        if suffix in (".csv", ".tsv"):
            if suffix == ".tsv":
                raise InputError(f"{path}: TSV is not supported; save it as CSV or Parquet")
            return _csv_file(path, col)
        if suffix == ".conllu":
            return _conllu_file(path)
        if col is not None:
            raise InputError(f"{path} is a plain text file; it has no column {col!r}")
        return _text_file(path)
    if isinstance(texts, pd.DataFrame):
        col = _pick_column([str(c) for c in texts.columns], column, "the DataFrame")
        values = texts[col].tolist()
        return TextSource(lambda: iter(values), len(values), f"DataFrame:{col}", None, col)
    if isinstance(texts, pd.Series):
        values = texts.tolist()
        return TextSource(lambda: iter(values), len(values), "Series")
    if _is_hf_dataset(texts):
        return _hf_dataset(texts, column)
    if isinstance(texts, Sequence):
        seq = texts
        return TextSource(lambda: iter(seq), len(seq), f"{len(seq)} texts")
    if isinstance(texts, Iterable):
        it = iter(texts)
        used = [False]

        def once() -> Iterator[Any]:
            if used[0]:
                raise InputError("this iterator of texts was already consumed; pass a list")
            used[0] = True
            return it

        return TextSource(once, None, "an iterable of texts")
    raise InputError(
        f"texts must be a list of strings, an iterable, a file path or a dataset, not "
        f"{type(texts).__name__}"
    )


__all__ = ["TextSource", "text_source"]
