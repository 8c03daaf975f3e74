"""The faithfulness table of the real SmolLM2 on short UD EWT dev sentences (its next token).

Properties that hold for any working scoreboard and can fail: every method is scored on every
sentence its limits allow, leave-one-out occlusion agrees with itself (τ = 1) and removes more of
the prediction than the random floor, the random floor does not correlate with leave-one-out,
and the page ranks the methods as the summary does.
"""

from __future__ import annotations

import numpy as np
import pytest

import inspector

pytestmark = pytest.mark.slow

N = 6


@pytest.fixture(scope="module")
def table(smollm2, ewt_sentences):
    """The N shortest of the first 40 sentences with 5 words or more: every method (integrated
    gradients' 50 steps, routes, flow) on SmolLM2 costs minutes a sentence on a busy CPU."""
    pool = [s for s in ewt_sentences[:40] if len(s.split()) >= 5]
    texts = sorted(pool, key=lambda s: (len(s), s))[:N]
    return inspector.faithfulness(smollm2, texts, progress=False)


def test_smollm2_table_on_short_sentences(table):
    methods = inspector.api.faithfulness_methods()
    assert len(methods) >= 9 and set(table.methods) == set(methods)
    assert table.n_texts == N
    counts = table.frame.groupby("method")["text"].nunique()
    flow_skips = sum(s["method"] == "attention_flow" for s in table.metadata["skipped"])
    assert counts.drop("attention_flow").eq(N).all()
    assert counts["attention_flow"] == N - flow_skips
    target = table.metadata["target"]
    assert target.startswith("prob of") and "next token" in target, target
    s = table.summary()
    assert s.loc[("occlusion", "tau_loo"), "mean"] == pytest.approx(1.0)
    # deleting the tokens leave-one-out ranks highest removes more than deleting random ones
    comp = s.xs("comprehensiveness", level="metric")["mean"]
    assert comp["occlusion"] > comp["random"]
    assert abs(s.loc[("random", "tau_loo"), "mean"]) < 0.2
    values = table.frame["value"].to_numpy()
    assert np.isfinite(values[table.frame["metric"] != "tau_loo"]).all()


def test_the_page_ranks_as_the_summary(table, tmp_path):
    page = table.report(tmp_path / "faith.html")
    html = page.html
    body = html[html.index('class="ins-table ins-trust"') :]
    positions = [body.index(f"<code>{m}</code>") for m in table.ranking()]
    assert positions == sorted(positions)
    assert (tmp_path / "faith.html").exists()
