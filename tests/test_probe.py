"""Syntactic head probe on a slice of UD English EWT (CC BY-SA 4.0, UD_English-EWT dev set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.errors import InputError
from inspector.probe import (
    DIRECTIONS,
    OFFSETS,
    GoldSentence,
    read_treebank,
    syntax_probe,
    word_predictions,
)

EWT_DEV = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "ud-english-ewt"
    / ("en_ewt-ud-dev.conllu")
)

# A hand-written sentence with a multiword token (1-2) and an empty node (3.1), which are skipped.
MINI = """# sent_id = mini-1
# text = Don't stop now.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\t_\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\t_\t_\t3\tadvmod\t_\t_
3\tstop\tstop\tVERB\t_\t_\t0\troot\t_\t_
3.1\tgo\tgo\tVERB\t_\t_\t_\t_\t3:conj\t_
4\tnow\tnow\tADV\t_\t_\t3\tadvmod:tmod\t_\t_
5\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

"""


@pytest.fixture(scope="module")
def ewt_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30 sentences of the UD English EWT dev set, written to a temp file."""
    if not EWT_DEV.exists():
        pytest.skip(f"treebank not found at {EWT_DEV}")
    blocks = EWT_DEV.read_text(encoding="utf-8").split("\n\n")[:30]
    path = tmp_path_factory.mktemp("ewt") / "ewt-30.conllu"
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return path


def test_read_treebank_skips_ranges_and_empty_nodes(tmp_path: Path) -> None:
    path = tmp_path / "mini.conllu"
    path.write_text(MINI, encoding="utf-8")
    (sent,) = list(read_treebank(path))
    assert sent.words == ("Do", "n't", "stop", "now", ".")
    assert sent.heads == (3, 3, 0, 3, 3)
    assert sent.relations[-2:] == ("advmod:tmod", "punct")
    with pytest.raises(InputError, match="does not exist"):
        list(read_treebank(tmp_path / "missing.conllu"))


def test_word_predictions_never_pick_self() -> None:
    w = np.zeros((1, 1, 3, 3))
    w[0, 0] = [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 0.3, 0.7]]
    assert word_predictions(w)[0, 0].tolist() == [1, 0, 1]


def test_probe_on_handmade_sentence_scores_relations(
    tiny: dict[str, object], tmp_path: Path
) -> None:
    path = tmp_path / "mini.conllu"
    path.write_text(MINI, encoding="utf-8")
    result = syntax_probe(tiny["bert"].bundle, path)  # type: ignore[attr-defined]
    table = result.table.set_index("relation")
    # root and punct are not scored; advmod:tmod folds into advmod
    assert set(table.index) == {"aux", "advmod"}
    assert table.loc["advmod", "n"] == 2 and table.loc["aux", "n"] == 1
    # aux: "Do" (1) -> "stop" (3) is offset +2; advmod: n't->stop (+1), now->stop (-1)
    assert table.loc["aux", "baseline_offset"] == 2
    assert table.loc["aux", "baseline_accuracy"] == 1.0
    assert table.loc["advmod", "baseline_accuracy"] == 0.5
    sub = syntax_probe(tiny["bert"].bundle, path, subtypes=True).table  # type: ignore[attr-defined]
    assert "advmod:tmod" in set(sub["relation"])


def test_probe_on_ewt_slice(minilm: object, ewt_slice: Path) -> None:
    result = syntax_probe(minilm.bundle, ewt_slice, batch_size=8)  # type: ignore[attr-defined]
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


def test_probe_batched_equals_unbatched(tiny: dict[str, object], ewt_slice: Path) -> None:
    bundle = tiny["gpt2"].bundle  # type: ignore[attr-defined]
    a = syntax_probe(bundle, ewt_slice, batch_size=16, limit=12)
    b = syntax_probe(bundle, ewt_slice, batch_size=1, limit=12)
    assert a.table.equals(b.table)


def test_api_and_cli_probe(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    import inspector
    from inspector.cli import main

    path = tmp_path / "mini.conllu"
    path.write_text(MINI, encoding="utf-8")
    result = inspector.syntax_probe(str(tiny_dirs["bert"]), path)
    assert len(result.table) == 2
    out = tmp_path / "probe.csv"
    assert main(["probe", str(tiny_dirs["bert"]), str(path), "-o", str(out), "--no-progress"]) == 0
    assert out.exists()


def test_gold_sentence_validation() -> None:
    with pytest.raises(InputError, match="differ in length"):
        GoldSentence(("a",), (0, 1), ("root",))
