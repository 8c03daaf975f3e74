"""Syntactic head probe on a slice of UD English EWT (CC BY-SA 4.0, UD_English-EWT dev set)."""

from __future__ import annotations

from pathlib import Path

from inspector.corpus.engine import syntax_probe
from inspector.corpus.options import ProbeOptions

from factories import MINI_CONLLU


def test_probe_on_handmade_sentence_scores_relations(
    tiny: dict[str, object], tmp_path: Path
) -> None:
    path = tmp_path / "mini.conllu"
    path.write_text(MINI_CONLLU, encoding="utf-8")
    result = syntax_probe(tiny["bert"].bundle, path)  # type: ignore[attr-defined]
    table = result.table.set_index("relation")
    # root and punct are not scored; advmod:tmod folds into advmod
    assert set(table.index) == {"aux", "advmod"}
    assert table.loc["advmod", "n"] == 2 and table.loc["aux", "n"] == 1
    # aux: "Do" (1) -> "stop" (3) is offset +2; advmod: n't->stop (+1), now->stop (-1)
    assert table.loc["aux", "baseline_offset"] == 2
    assert table.loc["aux", "baseline_accuracy"] == 1.0
    assert table.loc["advmod", "baseline_accuracy"] == 0.5
    sub = syntax_probe(tiny["bert"].bundle, path, ProbeOptions(subtypes=True)).table  # type: ignore[attr-defined]
    assert "advmod:tmod" in set(sub["relation"])


def test_probe_batched_equals_unbatched(tiny: dict[str, object], ewt_slice: Path) -> None:
    bundle = tiny["gpt2"].bundle  # type: ignore[attr-defined]
    a = syntax_probe(bundle, ewt_slice, ProbeOptions(batch_size=16, limit=12))
    b = syntax_probe(bundle, ewt_slice, ProbeOptions(batch_size=1, limit=12))
    assert a.table.equals(b.table)


def test_api_and_cli_probe(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    import inspector
    from inspector.cli import main

    path = tmp_path / "mini.conllu"
    path.write_text(MINI_CONLLU, encoding="utf-8")
    result = inspector.syntax_probe(str(tiny_dirs["bert"]), path)
    assert len(result.table) == 2
    out = tmp_path / "probe.csv"
    assert main(["probe", str(tiny_dirs["bert"]), str(path), "-o", str(out), "--no-progress"]) == 0
    assert out.exists()
