"""Explain: rollout, attention flow, norm-based attention and head importance.

Pure functions run on ``softmax(randn)`` arrays; hooks run on the tiny BERT / GPT-2 models and a
tiny LLaMA with grouped-query attention; the real MiniLM checks the [CLS] sink and stability."""

from __future__ import annotations

import numpy as np
import pytest

from inspector import explain as ex

from factories import EWT_DEV


def _ewt(n: int) -> list[str]:
    path = EWT_DEV
    if not path.exists():
        pytest.skip(f"treebank not found at {path}")
    texts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# text = "):
            text = line[len("# text = ") :].strip()
            if 5 <= len(text.split()) <= 30:
                texts.append(text)
        if len(texts) >= n:
            break
    return texts


@pytest.mark.slow
def test_minilm_cls_sink_passes_on_little(minilm, ewt_sentences):
    raw, norm = [], []
    for text in ewt_sentences[:12]:
        ins = minilm.inspect(text)
        na = ex.attention_norms(minilm.bundle, ins.stack)
        raw.append(na.weights[2:6, :, :, 0].mean())
        norm.append(na.shares()[2:6, :, :, 0].mean())
    assert np.mean(raw) > 0.3
    assert np.mean(norm) < 0.15


@pytest.mark.slow
def test_minilm_head_importance_is_stable(minilm):
    from scipy.stats import spearmanr

    texts = _ewt(50)
    assert len(texts) == 50
    per = ex.head_importance_many(minilm.bundle, texts, method="gradient", per_text=True)
    halves = [
        per[per.text < 25].groupby(["layer", "head"]).importance.mean(),
        per[per.text >= 25].groupby(["layer", "head"]).importance.mean(),
    ]
    assert spearmanr(*halves).statistic > 0.5
