"""CoNLL-U treebanks (the ``conllu`` package): gold words, heads and relations, streamed.

Multiword-token ranges (``1-2``) and empty nodes (``8.1``) are skipped: the syntactic words are
used. Pure I/O: nothing here runs a model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class GoldSentence:
    """One treebank sentence: syntactic words with 1-based heads (0 = root) and relations."""

    words: tuple[str, ...]
    heads: tuple[int, ...]
    relations: tuple[str, ...]
    sent_id: str = ""

    def __post_init__(self) -> None:
        n = len(self.words)
        if not (len(self.heads) == len(self.relations) == n):
            raise InputError(
                f"sentence {self.sent_id}: words, heads and relations differ in length"
            )
        if any(h < 0 or h > n for h in self.heads):
            raise InputError(f"sentence {self.sent_id}: a head index is outside 0..{n}")


def _parse_checked(sentences: Iterator[Any], error: type[Exception], path: Path) -> Iterator[Any]:
    try:
        yield from sentences
    except error as exc:
        raise InputError(f"{path} is not a CoNLL-U treebank ({exc}); give a .conllu file") from exc


def read_treebank(
    path: str | os.PathLike[str], *, limit: int | None = None
) -> Iterator[GoldSentence]:
    """Stream the sentences of a CoNLL-U file (the ``conllu`` package), syntactic words only."""
    from conllu import parse_incr

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist; give a CoNLL-U treebank (.conllu)")
    from conllu.exceptions import ParseException

    count = 0
    with p.open(encoding="utf-8") as f:
        try:
            sentences = list(_parse_checked(parse_incr(f), ParseException, p))
        except UnicodeDecodeError as exc:
            raise InputError(f"{p} is not UTF-8 text, so not a CoNLL-U treebank") from exc
        for sent in sentences:
            if limit is not None and count >= limit:
                return
            rows = [t for t in sent if isinstance(t["id"], int)]  # no ranges, no empty nodes
            if not rows:
                continue
            ids = [t["id"] for t in rows]
            if ids != list(range(1, len(rows) + 1)):
                raise InputError(f"{p}: sentence {sent.metadata.get('sent_id')} has gaps in ids")
            heads = tuple(int(t["head"]) if t["head"] is not None else 0 for t in rows)
            count += 1
            yield GoldSentence(
                tuple(str(t["form"]) for t in rows),
                heads,
                tuple(str(t["deprel"]) for t in rows),
                str(sent.metadata.get("sent_id", count)),
            )


__all__ = ["GoldSentence", "read_treebank"]
