"""CoNLL-U treebanks (the ``conllu`` package): gold words, heads and relations, streamed.

The file is read line by line as bytes, so an undecodable line or a line without the ten
CoNLL-U columns is reported with its line number (or, with ``skip_bad_lines``, its sentence is
skipped and counted). Multiword-token ranges (``1-2``) and empty nodes (``8.1``) are skipped: the
syntactic words are used. Pure I/O: nothing here runs a model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

#: The ten CoNLL-U columns.
COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")

#: Why a sentence cannot be scored by the probe (see :attr:`GoldSentence.problem`).
NO_HEADS = "no_heads"
NOT_A_TREE = "not_a_tree"


@dataclass(frozen=True)
class GoldSentence:
    """One treebank sentence: syntactic words with 1-based heads (0 = root, -1 = ``_``).

    Attributes:
        words / heads / relations: per syntactic word.
        sent_id: the sentence's ``# sent_id`` (or its number).
        line: the line of the file where the sentence starts (0 when built in memory).
    """

    words: tuple[str, ...]
    heads: tuple[int, ...]
    relations: tuple[str, ...]
    sent_id: str = ""
    line: int = 0

    def __post_init__(self) -> None:
        n = len(self.words)
        if not (len(self.heads) == len(self.relations) == n):
            raise InputError(
                f"sentence {self.sent_id}: words, heads and relations differ in length"
            )
        if any(h < -1 or h > n for h in self.heads):
            raise InputError(f"sentence {self.sent_id}: a head index is outside 0..{n}")

    @property
    def problem(self) -> str | None:
        """``"no_heads"`` when a HEAD is ``_``, ``"not_a_tree"`` when the heads hold a cycle
        (a word whose chain of heads never reaches the root), else ``None``."""
        if any(h < 0 for h in self.heads):
            return NO_HEADS
        state = [0] * (len(self.heads) + 1)  # 0 unseen, 1 on the current path, 2 reaches root
        state[0] = 2
        for start in range(1, len(self.heads) + 1):
            path = []
            node = start
            while state[node] == 0:
                state[node] = 1
                path.append(node)
                node = self.heads[node - 1]
            if state[node] == 1:
                return NOT_A_TREE
            for p in path:
                state[p] = 2
        return None


@dataclass(frozen=True)
class Block:
    """One sentence's lines of a CoNLL-U file.

    Attributes:
        text: its lines joined by newlines (comments included).
        line: the number of its first line in the file.
        bad_line: the first line that could not be read (only with ``skip_bad_lines``).
    """

    text: str
    line: int
    bad_line: int | None = None


def utf8_error(path: Path, number: int, raw: bytes, exc: UnicodeDecodeError) -> InputError:
    """The error for line ``number`` of ``path`` that is not UTF-8."""
    byte = raw[exc.start] if exc.start < len(raw) else 0
    return InputError(
        f"{path}, line {number}: not valid UTF-8 (byte 0x{byte:02x} at column {exc.start + 1}); "
        f"save the file as UTF-8, or skip such lines with --skip-bad-lines "
        f"(skip_bad_lines=True), which counts them as skipped"
    )


def _column_error(path: Path, number: int, fields: int) -> InputError:
    return InputError(
        f"{path}, line {number}: {fields} column(s), but a CoNLL-U word line has 10 "
        f"({' '.join(COLUMNS)}) separated by tabs; give a CoNLL-U treebank"
    )


def conllu_blocks(path: str | os.PathLike[str], *, skip_bad_lines: bool = False) -> Iterator[Block]:
    """The sentences of a CoNLL-U file as blocks of lines, checked line by line.

    Raises:
        InputError: a line that is not UTF-8 or a word line without ten columns, with its
            number (unless ``skip_bad_lines``: then its sentence comes with ``bad_line`` set).
    """
    p = Path(path)
    lines: list[str] = []
    start = 0
    bad: int | None = None
    with p.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                if not skip_bad_lines:
                    raise utf8_error(p, number, raw, exc) from exc
                bad, line = bad or number, "# unreadable line"
            if not line.strip():
                if lines:
                    yield Block("\n".join(lines), start, bad)
                lines, bad = [], None
                continue
            if not lines:
                start = number
            if not line.startswith("#"):
                fields = line.count("\t") + 1
                if fields != len(COLUMNS):
                    if not skip_bad_lines:
                        raise _column_error(p, number, fields)
                    bad = bad or number
            lines.append(line)
    if lines:
        yield Block("\n".join(lines), start, bad)


def parse_block(path: Path, block: Block) -> Any:
    """The ``conllu`` token list of one block (an :class:`InputError` naming the line)."""
    from conllu import parse
    from conllu.exceptions import ParseException

    try:
        sentences = parse(block.text + "\n\n")
    except (ParseException, KeyError, ValueError) as exc:
        raise InputError(
            f"{path}, sentence at line {block.line}: not CoNLL-U ({exc}); give a .conllu file"
        ) from exc
    if len(sentences) != 1:
        raise InputError(f"{path}, sentence at line {block.line}: not one CoNLL-U sentence")
    return sentences[0]


def read_treebank(
    path: str | os.PathLike[str], *, limit: int | None = None, skip_bad_lines: bool = False
) -> Iterator[GoldSentence]:
    """Stream the sentences of a CoNLL-U file, syntactic words only.

    Sentences with a missing HEAD (``_``) or a cycle are yielded too (``sentence.problem``
    says which); :func:`~inspector.corpus.engine.syntax_probe` skips and counts them.
    With ``skip_bad_lines`` a sentence with an unreadable line is left out.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist; give a CoNLL-U treebank (.conllu)")
    if p.is_dir():
        raise InputError(f"{p} is a folder; give a CoNLL-U treebank (.conllu)")
    count = 0
    for block in conllu_blocks(p, skip_bad_lines=skip_bad_lines):
        if limit is not None and count >= limit:
            return
        if block.bad_line is not None:
            continue
        sent = parse_block(p, block)
        rows = [t for t in sent if isinstance(t["id"], int)]  # no ranges, no empty nodes
        if not rows:
            continue
        ids = [t["id"] for t in rows]
        sent_id = sent.metadata.get("sent_id")
        if ids != list(range(1, len(rows) + 1)):
            raise InputError(
                f"{p}, sentence {sent_id or ''} at line {block.line}: word ids are not 1..n "
                f"({ids[:6]}...); fix the ID column"
            )
        heads = tuple(int(t["head"]) if t["head"] is not None else -1 for t in rows)
        if any(h > len(rows) for h in heads):
            raise InputError(
                f"{p}, sentence {sent_id or ''} at line {block.line}: a HEAD points past the "
                f"last word ({len(rows)}); fix the HEAD column"
            )
        count += 1
        yield GoldSentence(
            tuple(str(t["form"]) for t in rows),
            heads,
            tuple(str(t["deprel"]) for t in rows),
            str(sent_id or count),
            block.line,
        )


__all__ = [
    "COLUMNS",
    "NOT_A_TREE",
    "NO_HEADS",
    "Block",
    "GoldSentence",
    "conllu_blocks",
    "parse_block",
    "read_treebank",
    "utf8_error",
]
