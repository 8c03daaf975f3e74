"""Head metrics, roles, detectors and head distances: hand-built patterns, then the real MiniLM."""

from __future__ import annotations


def test_tiny_models_all_kinds(tiny: dict) -> None:
    for kind, model in tiny.items():
        ins = model.inspect(
            "The cat sat on the mat.", target="Le chat." if kind in ("t5", "bart") else None
        )
        parts = [ins.encoder, ins.decoder, ins.cross] if ins.is_encoder_decoder else [ins]
        for part in parts:
            m = part.head_metrics()
            assert m.shape[0] == 4 and m.index.names == ["layer", "head"]
            assert part.head_similarity().shape == (4, 4)
            assert part.detector_scores().shape == (4, 3)
