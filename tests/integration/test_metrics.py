"""Head metrics, roles, detectors and head distances: hand-built patterns, then the real MiniLM."""

from __future__ import annotations

import pytest

import inspector


def test_tiny_models_all_kinds(tiny: dict) -> None:
    for kind, model in tiny.items():
        ins = model.inspect(
            "The cat sat on the mat.", target="Le chat." if kind in ("t5", "bart") else None
        )
        parts = [ins.encoder, ins.decoder, ins.cross] if ins.is_encoder_decoder else [ins]
        for part in parts:
            m = part.heads.metrics()
            assert m.shape[0] == 4 and m.index.names == ["layer", "head"]
            assert part.heads.similarity().shape == (4, 4)
            assert part.heads.detectors().shape == (4, 3)


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_detect_heads_runs_an_exact_token_repeat(tiny, kind):
    """detect_heads feeds token ids, not text, so the second half repeats the first exactly."""
    from inspector.analysis import detectors as D
    from inspector.capture.run import capture

    m = tiny[kind]
    scores = inspector.detect_heads(m, n_tokens=6, n_samples=2)
    assert list(scores.columns) == list(D.DETECTORS)
    assert scores.index.names == ["layer", "head"] and len(scores) == 4
    tok = m.tokenizer
    ids = D.repeated_random_ids(D.vocabulary_token_ids(tok.get_vocab()), 6, seed=0)
    tokens = capture(m.bundle, token_ids=ids).stacks["self"].query
    assert tokens.ids[~tokens.special].tolist() == ids
    assert tokens.special[0] == (kind == "bert")  # BERT's [CLS] ... [SEP] around the ids
