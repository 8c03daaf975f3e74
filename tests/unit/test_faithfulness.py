"""Faithfulness metrics on hand-made "models": AOPC and τ by hand, ferret's rationale rules, the
seeded floor, the summary's intervals and the "Which map to trust" page. No model runs."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from inspector.analysis import faithfulness as f
from inspector.analysis.faithfulness_table import Faithfulness
from inspector.errors import InputError
from inspector.render.report import faithfulness_report
from inspector.render.sections.faithfulness import map_order

from factories import parse


def hand_model(kept: tuple[int, ...]) -> float:
    """The target's probability as a known function of which content tokens are kept:
    0.1, plus 0.6 with token 0, 0.2 with token 2, 0.1 more when tokens 1 and 2 are both there
    (token 3 does nothing)."""
    s = set(kept)
    return 0.1 + 0.6 * (0 in s) + 0.2 * (2 in s) + 0.1 * (1 in s and 2 in s)


def _metrics(scores: np.ndarray, **kw: object) -> dict[str, float]:
    n = len(scores)
    plan = f.deletion_plan(scores, **kw)  # type: ignore[arg-type]
    keeps = [*plan.keeps, *f.loo_keeps(n)]
    value_of = {k: hand_model(k) for k in keeps}
    base = hand_model(tuple(range(n)))
    loo = np.array([base - value_of[k] for k in f.loo_keeps(n)])
    return f.evaluate(plan, base, value_of, loo, scores)


def test_aopc_and_tau_on_a_hand_made_model() -> None:
    scores = np.array([0.9, 0.5, 0.1, -0.2])
    got = _metrics(scores)
    # rationales (positive scores only): {0}, {0,1}, {0,1,2}; {0,1,2} again at k=4 is skipped
    # deleting them leaves 0.4, 0.3, 0.1 of the full 1.0; keeping them alone gives 0.7, 0.7, 1.0
    assert got["comprehensiveness"] == pytest.approx((0.6 + 0.7 + 0.9) / 3)
    assert got["sufficiency"] == pytest.approx((0.3 + 0.3 + 0.0) / 3)
    # leave-one-out drops: 0.6, 0.1, 0.3, 0.0; the scores order tokens 1 and 2 the other way:
    # 5 concordant pairs, 1 discordant
    assert got["tau_loo"] == pytest.approx((5 - 1) / 6)


def test_negative_scores_join_the_rationale_when_asked() -> None:
    scores = np.array([0.9, 0.1, 0.5, -0.2])
    got = _metrics(scores, only_positive=False)
    # {0}, {0,2}, {0,2,1}, {0,2,1,3}: deleting leaves 0.4, 0.1, 0.1, 0.1
    assert got["comprehensiveness"] == pytest.approx((0.6 + 0.9 + 0.9 + 0.9) / 4)
    assert got["sufficiency"] == pytest.approx((0.3 + 0.1 + 0.0 + 0.0) / 4)
    assert got["tau_loo"] == pytest.approx(1.0)  # the same order as leave-one-out


def test_no_rationale_gives_ferrets_defaults() -> None:
    got = _metrics(np.array([-1.0, -2.0, 0.0, -0.5]))
    assert got["comprehensiveness"] == 0.0
    assert got["sufficiency"] == 1.0
    assert np.isnan(f.kendall_tau(np.array([1.0, 2.0]), np.array([3.0, 3.0])))


def test_repeated_rationales_are_skipped() -> None:
    scores = np.array([2.0, -1.0, 1.0, -3.0])
    assert [r.tolist() for r in f.rationales(scores)] == [[0], [0, 2]]
    sizes = [len(r) for r in f.rationales(scores, steps="ferret", only_positive=False)]
    assert sizes == [1, 2, 3, 4]  # int(p·4) for p = 0.1 .. 1.0: 0, 0, 1, 1, 2, 2, 2, 3, 3, 4
    assert [len(r) for r in f.rationales(scores, steps="eraser", only_positive=False)] == [2]
    assert [len(r) for r in f.rationales(np.arange(100.0), steps="eraser")] == [1, 5, 10, 20, 50]


def _ferret_rationales(scores, steps, only_pos):
    """ferret's loop (evaluators/faithfulness_measures.py with utils_from_soft_to_discrete.py),
    transcribed: thresholds, top-k, and the repeat rule."""

    def top_k(s, k):
        if only_pos:
            ids = [i for i in np.array(s).argsort()[-k:][::-1] if s[i] > 0]
        else:
            ids = list(np.array(s).argsort()[-k:][::-1])
        return None if ids == [] else ids

    def perc(s, p):
        v = int(p * len(s))
        return top_k(s, v) if 0 < v <= len(s) else None

    if steps == "k":
        thresholds, get = range(1, len(scores) + 1), top_k
    else:
        thresholds = np.arange(0.1, 1.1, 0.1) if steps == "ferret" else [0.01, 0.05, 0.1, 0.2, 0.5]
        get = perc
    out, last = [], None
    for v in thresholds:
        top = get(scores, v)
        if top is not None and last is not None and set(top) == last:
            top = None
        if top is None:
            continue
        last = set(top)
        out.append([int(i) for i in top])
    return out


@pytest.mark.parametrize(
    ("steps", "only_pos"), list(itertools.product(["k", "ferret", "eraser"], [True, False]))
)
def test_rationales_match_ferrets_loop(steps: str, only_pos: bool) -> None:
    rng = np.random.default_rng(3)
    for n in (1, 3, 7, 12, 33):
        for _ in range(5):
            scores = rng.integers(-3, 4, size=n).astype(float)  # ties and negatives
            want = _ferret_rationales(scores, steps, only_pos)
            got = f.rationales(scores, steps=steps, only_positive=only_pos)  # type: ignore[arg-type]
            assert [r.tolist() for r in got] == want


def test_steps_are_checked() -> None:
    assert f.check_steps("k") is None
    assert f.check_steps([0.5, 1.0]) == (0.5, 1.0)
    for bad in ("top", [0.0], [1.5], []):
        with pytest.raises(InputError, match=r"steps|fractions"):
            f.check_steps(bad)  # type: ignore[arg-type]


def test_the_random_floor_is_seeded() -> None:
    ids = [5, 17, 17, 3, 99]
    a = f.random_scores(ids, 0)
    assert np.array_equal(a, f.random_scores(ids, 0))
    assert not np.array_equal(a, f.random_scores(ids, 1))
    assert not np.array_equal(a, f.random_scores([5, 17, 17, 3, 98], 0))
    assert ((a > 0) & (a <= 1)).all()  # every token can enter a positive-only rationale
    code = (
        "from inspector.analysis.faithfulness import random_scores;"
        "print(repr(random_scores([5, 17, 17, 3, 99], 0).tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "7", "PYTHONPATH": ":".join(sys.path)},
    ).stdout  # fmt: skip
    assert eval(out) == a.tolist()


# ------------------------------------------------------------------------------ the result


def _result(values: dict[str, list[float]]) -> Faithfulness:
    rows = []
    for method, per_text in values.items():
        for text, v in enumerate(per_text):
            for metric in f.METRICS:
                shift = {"comprehensiveness": 0.0, "sufficiency": 0.5, "tau_loo": -0.1}[metric]
                rows.append((text, method, metric, v + shift))
    frame = pd.DataFrame(rows, columns=["text", "method", "metric", "value"])
    scores = pd.DataFrame(columns=["text", "method", "position", "token", "score"])
    meta = {"methods": list(values), "labels": {"rollout": "attention rollout"}, "target": "t"}
    return Faithfulness(frame, scores, meta)


def test_summary_means_intervals_and_the_floor() -> None:
    r = _result(
        {"rollout": [0.3, 0.5, 0.4], "attention": [0.1, 0.2, 0.3], "random": [0.1, 0.1, 0.3]}
    )
    s = r.summary()
    row = s.loc[("rollout", "comprehensiveness")]
    half = 1.96 * np.std([0.3, 0.5, 0.4], ddof=1) / np.sqrt(3)
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.4)
    assert row["ci95_low"] == pytest.approx(0.4 - half)
    assert row["ci95_high"] == pytest.approx(0.4 + half)
    diff = np.array([0.2, 0.4, 0.1])  # paired, text by text
    d_half = 1.96 * diff.std(ddof=1) / np.sqrt(3)
    assert row["vs_random"] == pytest.approx(diff.mean())
    assert row["vs_random_high"] == pytest.approx(diff.mean() + d_half)
    assert s.loc[("random", "tau_loo"), "vs_random"] == 0.0
    assert r.ranking() == ["rollout", "attention", "random"]
    assert r.ranking("sufficiency") == ["random", "attention", "rollout"]  # lower is better
    lines = r.markdown().splitlines()
    assert lines[2].startswith("| rollout | 0.400 [")
    assert map_order(r, ("attention", "norms", "rollout")) == ["rollout", "attention", "norms"]


def test_a_result_refuses_other_columns() -> None:
    with pytest.raises(InputError, match="columns"):
        Faithfulness(pd.DataFrame({"x": [1]}), pd.DataFrame(columns=list(range(5))))


def test_the_which_map_to_trust_page() -> None:
    r = _result(
        {"attention": [0.1, 0.2, 0.3], "rollout": [0.3, 0.5, 0.4], "random": [0.1, 0.1, 0.3]}
    )
    html = faithfulness_report(r).html
    page = parse(html)
    text = " ".join(page.text)
    assert "Which map to trust" in text and "Means over 3 texts" in text
    tables = [a.get("class") for tag, a in page.tags if tag == "table"]
    assert tables == ["ins-table ins-trust"]
    body = html[html.index('class="ins-table ins-trust"') :]
    shown = [m for m in re.findall(r"<code>(\w+)</code>", body) if m in r.methods]
    assert shown == ["rollout", "attention", "random"]  # best first
    assert '0.400 <span class="ins-note">[0.2' in body  # rollout's mean and its interval
    assert "vs random 0.233" in body
