"""Information flow routes on MiniLM (post-LN BERT, mean-pooled sentence embeddings): the
route to the embedding reaches the token embeddings, every walked node's edges add up, and the
default report draws it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TEXT = "The cat sat on the mat because it was tired."


def _sums(routes: Any) -> None:
    """The incoming edges of every walked node sum to 1 (an attention node's with its bias
    share; an MLP node's one edge carries the MLP's share of the block output instead)."""
    for target, group in routes.edges.groupby("target"):
        if str(target).startswith("M"):
            continue
        total = float(group["weight"].sum()) + routes.biases.get(str(target), 0.0)
        assert abs(total - 1.0) < 1e-9, (target, total)


def test_minilm_route_to_the_embedding(minilm: Any) -> None:
    ins = minilm.inspect(TEXT)
    routes = ins.explain.information_flow()
    assert routes.target == "embedding" and routes.output_node == "E"
    n = len(ins.capture.stacks["self"].query)
    edges = routes.edges
    assert set(edges["block"]) == {"pool", "attention", "mlp", "residual"}
    assert (edges["block"] == "attention").sum() > 5
    assert edges["layer"].min() == 0  # the route reaches the first layer...
    assert routes.nodes["node"].str.startswith("X0_").sum() > n // 2  # ...and the embeddings
    _sums(routes)
    for li in (0, 3, 5):
        total = (
            routes.attention_contributions(li, 2).sum()
            + routes.residual_contribution(li, 2)
            + routes.bias_contribution(li, 2)
        )
        assert abs(total - 1.0) < 1e-9
    scores = routes.token_scores()
    assert 0.5 < scores.sum() <= 1 + 1e-9 and scores.shape == (n,)
    assert routes.answer().startswith("the mean-pooled embedding (13 tokens): from ")
    one = ins.explain.information_flow(position=2)  # 'cat''s final representation
    assert one.output_node == "I5_2" and "pool" not in set(one.edges["block"])
    _sums(one)
    assert np.isfinite(one.token_scores()).all()


def test_minilm_report_shows_the_route(minilm: Any, tmp_path: Any) -> None:
    ins = minilm.inspect(TEXT)
    report = ins.explain.report(tmp_path / "r.html", method="gradient", top=2)
    ids = [s.id for s in report.sections]
    assert ids.index("route") == ids.index("what-mattered") + 1
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'class="ins-trace-data"' in html and "the mean-pooled embedding" in html
    plain = ins.explain.report(method="gradient", top=2, routes=False)
    assert "route" not in [s.id for s in plain.sections]
