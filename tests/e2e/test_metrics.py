"""Head metrics, roles, detectors and head distances: hand-built patterns, then the real MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.analysis import distances as DI
from inspector.analysis import roles as R


@pytest.mark.slow
def test_minilm_heads(minilm, ewt_sentences) -> None:
    import inspector

    agg = inspector.head_metrics(minilm, ewt_sentences)
    early = agg.loc[agg.index.get_level_values("layer") <= 1]
    assert (early["to_prev"] > 0.9).any()
    roles = R.head_roles(agg)
    assert (roles["role"] == "previous").any()
    sinks = agg.loc[roles["role"] == "sink", "sink_token"]
    assert sinks.value_counts().index[0] == "[CLS]"
    assert agg["sink_token"].value_counts().index[0] == "[CLS]"

    dist = inspector.head_similarity(minilm, ewt_sentences[:10])
    d = dist.to_numpy()
    layers = np.asarray(dist.index.get_level_values("layer"))
    same = layers[:, None] == layers[None, :]
    off = ~np.eye(len(layers), dtype=bool)
    assert d[same & off].mean() < d[~same].mean()
    summary = DI.layer_distance_summary(dist)
    assert (summary["within"] < summary["between"]).mean() > 0.5
    assert list(dist.index.names) == ["layer", "head"] and dist.columns.equals(dist.index)
