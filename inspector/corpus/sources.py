"""Where corpus texts come from: lists, iterables, text/CSV/Parquet/CoNLL-U files, datasets.

A :class:`TextSource` re-opens its texts lazily, so a corpus is read once, in order, without being
held in memory. Pure I/O: nothing here runs a model.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from .treebank import conllu_blocks, parse_block, utf8_error


@dataclass(frozen=True)
class BadLine:
    """An item that could not be read (``skip_bad_lines``): skipped and counted, never measured.

    Attributes:
        line: its line number in the file (1-based).
        reason: what was wrong with it.
    """

    line: int
    reason: str


@dataclass(frozen=True)
class TextSource:
    """A re-openable stream of texts with an optional known length.

    Attributes:
        open: returns a fresh iterator over the texts (items that are not usable text are
            yielded as-is and skipped later, so positions stay stable for ``--resume``).
        total: the number of items when known cheaply, else ``None``.
        description: where the texts come from, for metadata and messages.
        path / column: the file and column, when the source is a file.
        identity: what ties a checkpoint to this source (see :func:`source_identity`).
    """

    open: Callable[[], Iterator[Any]]
    total: int | None
    description: str
    path: Path | None = None
    column: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return self.open()


def source_identity(
    kind: str, path: Path | None = None, column: str | None = None, **extra: Any
) -> dict[str, Any]:
    """What a checkpoint records about its source: the kind, and for a file its resolved path,
    size and the SHA-256 of its content (so an edited, replaced or other file is told apart,
    while a file only touched, or copied back unchanged, is the same corpus)."""
    out: dict[str, Any] = {"kind": kind}
    if path is not None:
        st = path.stat()  # the modification time is kept for checkpoints of older versions only
        out.update(
            path=str(path.resolve()),
            size=st.st_size,
            sha256=file_sha256(path),
            mtime_ns=st.st_mtime_ns,
        )
    if column is not None:
        out["column"] = column
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (read in 1 MiB blocks: about a second a GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TextHash:
    """A running SHA-256 of the items consumed, in order (strings, blanks and skipped items).

    Both atlas engines feed it the same items, so a checkpoint written by one can be verified
    on resume by either: re-reading the first ``n`` items must give the same digest.
    """

    def __init__(self, state: Any = None) -> None:
        self._h = state if state is not None else hashlib.sha256()

    @staticmethod
    def canonical(item: Any) -> bytes:
        if isinstance(item, str):
            return b"s" + item.encode("utf-8", "surrogatepass")
        if item is None:
            return b"n"
        if isinstance(item, BadLine):
            return b"b%d" % item.line
        return b"o" + type(item).__name__.encode()  # skipped; its repr may not be stable

    def update(self, items: Iterable[Any]) -> TextHash:
        for item in items:
            data = self.canonical(item)
            self._h.update(len(data).to_bytes(8, "little"))
            self._h.update(data)
        return self

    def copy(self) -> TextHash:
        return TextHash(self._h.copy())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def split_column(spec: str) -> tuple[str, str | None]:
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


def _decoded_lines(path: Path, skip_bad_lines: bool, bad: list[int]) -> Iterator[str]:
    """The file's lines (newlines kept), decoded one by one; a bad line raises with its number,
    or with ``skip_bad_lines`` is replaced and its number appended to ``bad``."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                if not skip_bad_lines:
                    raise utf8_error(path, number, raw, exc) from exc
                bad.append(number)
                yield raw.decode("utf-8", "replace")


def _text_file(path: Path, skip_bad_lines: bool) -> TextSource:
    def lines() -> Iterator[Any]:
        bad: list[int] = []
        for number, line in enumerate(_decoded_lines(path, skip_bad_lines, bad), 1):
            if bad and bad[-1] == number:
                yield BadLine(number, "not UTF-8")
            else:
                yield line.rstrip("\r\n")

    return TextSource(
        lines, _count_lines(path), str(path), path, identity=source_identity("text file", path)
    )


def _csv_file(path: Path, column: str | None, skip_bad_lines: bool) -> TextSource:
    bad: list[int] = []
    header = next(csv.reader(_decoded_lines(path, False, bad)), [])
    col = _pick_column(header, column, str(path))
    index = header.index(col)

    def rows() -> Iterator[Any]:
        bad_lines: list[int] = []
        reader = csv.reader(_decoded_lines(path, skip_bad_lines, bad_lines))
        next(reader, None)
        last = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if not skip_bad_lines:
                    raise InputError(
                        f"{path}, line {reader.line_num}: not valid CSV ({exc}); fix it, or "
                        f"skip such lines with --skip-bad-lines (skip_bad_lines=True)"
                    ) from exc
                yield BadLine(reader.line_num, str(exc))
                last = reader.line_num
                continue
            first, last = last + 1, reader.line_num
            if not row:  # a blank line, as pandas reads it: no row at all
                continue
            if any(first <= b <= last for b in bad_lines):
                yield BadLine(first, "not UTF-8")
            elif len(row) != len(header):
                if not skip_bad_lines:
                    raise InputError(
                        f"{path}, line {first}: {len(row)} field(s), the header has "
                        f"{len(header)}; fix the line (quote commas inside texts), or skip "
                        f"such lines with --skip-bad-lines (skip_bad_lines=True)"
                    )
                yield BadLine(first, f"{len(row)} fields")
            else:
                yield row[index]

    return TextSource(
        rows, None, f"{path}:{col}", path, col, source_identity("CSV file", path, col)
    )


def _parquet_file(path: Path, column: str | None) -> TextSource:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(
            f"{path} is not a readable Parquet file ({exc}); give a Parquet, CSV, CoNLL-U or "
            f"text file"
        ) from exc
    col = _pick_column(meta.schema_arrow.names, column, str(path))

    def rows() -> Iterator[Any]:
        for batch in pq.ParquetFile(path).iter_batches(columns=[col], batch_size=4096):
            yield from batch.column(0).to_pylist()

    return TextSource(
        rows,
        meta.metadata.num_rows,
        f"{path}:{col}",
        path,
        col,
        source_identity("Parquet file", path, col),
    )


def _conllu_file(path: Path, skip_bad_lines: bool) -> TextSource:
    def sentences() -> Iterator[Any]:
        for block in conllu_blocks(path, skip_bad_lines=skip_bad_lines):
            if block.bad_line is not None:
                yield BadLine(block.bad_line, "unreadable CoNLL-U line")
                continue
            sent = parse_block(path, block)
            text = sent.metadata.get("text")
            if text is None:  # no "# text =" comment: join the surface tokens
                text = " ".join(str(t["form"]) for t in sent if isinstance(t["id"], int))
            yield text

    with path.open("rb") as f:
        total = sum(1 for line in f if line.startswith(b"# text ="))
    return TextSource(
        sentences, total or None, str(path), path, identity=source_identity("CoNLL-U file", path)
    )


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
    fingerprint = getattr(ds, "_fingerprint", None)  # changes with every datasets transform
    identity = source_identity(
        "dataset", column=col, fingerprint=fingerprint if isinstance(fingerprint, str) else None
    )
    return TextSource(rows, total, f"datasets:{col}", None, col, identity)


def text_source(
    texts: Any, *, column: str | None = None, skip_bad_lines: bool = False
) -> TextSource:
    """Turn what the caller gave into a :class:`TextSource`.

    Args:
        texts: a list or any iterable of strings; a path to a text file (one text per line), a
            ``.csv``/``.tsv``/``.parquet`` file (give the column as ``FILE:COLUMN`` or
            ``column=``; a column named ``text`` or a single column is found by itself), a
            ``.conllu`` treebank (its ``# text =`` lines); a pandas Series or DataFrame; or a
            Hugging Face ``datasets`` dataset (duck-typed: anything with ``column_names``).
        column: the text column of a table, CSV/Parquet file or dataset.
        skip_bad_lines: yield a :class:`BadLine` (skipped and counted) for a line that is not
            UTF-8 or not valid CSV/CoNLL-U, instead of raising an error with its line number.

    Example:
        >>> src = text_source(["The cat sat.", "A dog barked."])
        >>> list(src)
        ['The cat sat.', 'A dog barked.']
    """
    if isinstance(texts, TextSource):
        return texts
    if isinstance(texts, str | os.PathLike):
        spec, col = split_column(os.fspath(texts))
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
            return _csv_file(path, col, skip_bad_lines)
        if suffix == ".conllu":
            return _conllu_file(path, skip_bad_lines)
        if col is not None:
            raise InputError(f"{path} is a plain text file; it has no column {col!r}")
        return _text_file(path, skip_bad_lines)
    if isinstance(texts, pd.DataFrame):
        col = _pick_column([str(c) for c in texts.columns], column, "the DataFrame")
        values = texts[col].tolist()
        return TextSource(
            lambda: iter(values),
            len(values),
            f"DataFrame:{col}",
            None,
            col,
            source_identity("DataFrame", column=col),
        )
    if isinstance(texts, pd.Series):
        values = texts.tolist()
        return TextSource(
            lambda: iter(values), len(values), "Series", identity=source_identity("Series")
        )
    if _is_hf_dataset(texts):
        return _hf_dataset(texts, column)
    if isinstance(texts, Sequence):
        seq = texts
        return TextSource(
            lambda: iter(seq), len(seq), f"{len(seq)} texts", identity=source_identity("list")
        )
    if isinstance(texts, Iterable):
        it = iter(texts)
        used = [False]

        def once() -> Iterator[Any]:
            if used[0]:
                raise InputError("this iterator of texts was already consumed; pass a list")
            used[0] = True
            return it

        return TextSource(once, None, "an iterable of texts", identity=source_identity("iterable"))
    raise InputError(
        f"texts must be a list of strings, an iterable, a file path or a dataset, not "
        f"{type(texts).__name__}"
    )


__all__ = [
    "BadLine",
    "TextHash",
    "TextSource",
    "file_sha256",
    "source_identity",
    "split_column",
    "text_source",
]
