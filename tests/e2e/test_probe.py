"""Syntactic head probe on a slice of UD English EWT (CC BY-SA 4.0, UD_English-EWT dev set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inspector.corpus.engine import syntax_probe
from inspector.corpus.options import ProbeOptions
from inspector.corpus.probe import DIRECTIONS, OFFSETS


def test_probe_on_ewt_slice(minilm: object, ewt_slice: Path) -> None:
    result = syntax_probe(minilm.bundle, ewt_slice, ProbeOptions(batch_size=8))  # type: ignore[attr-defined]
    table = result.table
    assert result.metadata["n_sentences"] == 30
    assert result.metadata["skipped_unaligned"] == 0
    assert {"det", "case", "nsubj"} <= set(table["relation"])
    assert "punct" not in set(table["relation"]) and "root" not in set(table["relation"])
    assert table["n"].is_monotonic_decreasing
    assert set(table["direction"]) <= set(DIRECTIONS)
    assert set(table["baseline_offset"]) <= set(OFFSETS)
    assert ((table["accuracy"] >= 0) & (table["accuracy"] <= 1)).all()
    # the best head is at least as good as any head in the full score table
    best = result.scores.groupby("relation")["accuracy"].max()
    np.testing.assert_allclose(table.set_index("relation")["accuracy"], best[table["relation"]])
    det = table.set_index("relation").loc["det"]
    assert det["accuracy"] > det["baseline_accuracy"]  # a real model beats the offset baseline
    assert "| det |" in result.markdown()
