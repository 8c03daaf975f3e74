"""Corpus atlas: text sources, batching equals one-at-a-time, mergeable aggregates, resume, Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspector.corpus.aggregate import HeadAggregate, aggregate_values, summary_frame
from inspector.corpus.sources import text_source
from inspector.errors import InputError


def test_text_sources(tmp_path: Path) -> None:
    assert list(text_source(["a b", "c"])) == ["a b", "c"]
    gen = text_source(t for t in ["x", "y"])
    assert list(gen) == ["x", "y"] and gen.total is None
    txt = tmp_path / "corpus.txt"
    txt.write_text("one line\n\nthree\n", encoding="utf-8")
    src = text_source(txt)
    assert list(src) == ["one line", "", "three"] and src.total == 3
    frame = pd.DataFrame({"id": [1, 2], "sentence": ["first text", "second, text"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    assert list(text_source(f"{tmp_path / 't.csv'}:sentence")) == ["first text", "second, text"]
    pq = text_source(tmp_path / "t.parquet", column="sentence")
    assert list(pq) == ["first text", "second, text"] and pq.total == 2
    assert list(text_source(frame, column="sentence")) == ["first text", "second, text"]
    with pytest.raises(InputError, match="several columns"):
        text_source(tmp_path / "t.csv")
    with pytest.raises(InputError, match="no column 'nope'"):
        text_source(f"{tmp_path / 't.parquet'}:nope")
    with pytest.raises(InputError, match="single string"):
        text_source("The cat sat on the mat.")
    with pytest.raises(InputError, match="does not exist"):
        text_source(tmp_path / "missing.txt")


class _FakeDataset:
    """Duck-typed stand-in for a Hugging Face ``datasets.Dataset``."""

    column_names = ("label", "text")

    def __init__(self, texts: list[str]) -> None:
        self.rows = [{"label": i, "text": t} for i, t in enumerate(texts)]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)


def test_hf_dataset_duck_typed() -> None:
    src = text_source(_FakeDataset(["a", "b"]))
    assert list(src) == ["a", "b"] and src.total == 2


def test_conllu_source(tmp_path: Path) -> None:
    path = tmp_path / "t.conllu"
    path.write_text(
        "# text = Hi there\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n"
        "2\tthere\tthere\tADV\t_\t_\t1\tadvmod\t_\t_\n\n",
        encoding="utf-8",
    )
    assert list(text_source(path)) == ["Hi there"]


def test_aggregates_merge_and_quantiles() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((300, 2, 2, 3))
    values[:, 1] = rng.normal(3.0, 2.0, (300, 2, 3))  # an unbounded metric
    values[5, 0, 0, 0] = np.nan
    names = ["to_prev", "entropy"]
    whole = aggregate_values(values, names, distances_enabled=False)
    parts = [
        aggregate_values(values[i : i + 70], names, distances_enabled=False)
        for i in range(0, 300, 70)
    ]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_array_equal(merged.hist, whole.hist)
    np.testing.assert_allclose(merged.total, whole.total)
    assert whole.count[0, 0, 0] == 299
    frame = summary_frame(merged)
    row = frame.loc[(1, 2)][frame.loc[(1, 2)]["metric"] == "to_prev"].iloc[0]
    column = values[:, 0, 1, 2]
    assert row["mean"] == pytest.approx(column.mean())
    assert row["std"] == pytest.approx(column.std(ddof=1))
    assert row["median"] == pytest.approx(np.median(column), abs=2e-3)
    assert row["p97_5"] == pytest.approx(np.quantile(column, 0.975), abs=2e-3)
    unbounded = values[:, 1, 0, 0]
    got = merged.quantile(0.5)[1, 0, 0]
    assert got == pytest.approx(np.median(unbounded), rel=0.02)
    restored = HeadAggregate.from_bytes(merged.to_bytes())
    np.testing.assert_array_equal(restored.hist, merged.hist)
    with pytest.raises(InputError, match="cannot merge"):
        merged.merge(aggregate_values(values[:, :1], names[:1], distances_enabled=False))
