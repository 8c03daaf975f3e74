"""CONTRIBUTING.md's recipes, followed with toy entries: each extension point's registry is read
by every consumer (frames, reports, the atlas, the explain namespace), and scoped registration
leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

import inspector
from inspector.analysis.metrics import METRICS
from inspector.errors import InputError, UnsupportedModelError
from inspector.explain import Explainer, get_explainer, list_explainers, scoped_explainers
from inspector.models.families import FAMILIES
from inspector.render.section import Section
from inspector.render.sections import REPORT_SECTIONS, register_section

from factories import ATLAS_TEXTS, parse, small_atlas

TEXT = "The cat sat on the mat because it was tired."


def _to_last(weights: np.ndarray, ctx: object) -> np.ndarray:
    return weights[..., -1].mean(axis=-1)


def test_metric_recipe_reaches_frames_report_and_atlas(tiny):
    m = tiny["gpt2"]
    ins = m.inspect(TEXT)
    with METRICS.scoped():
        inspector.register_metric("to_last", _to_last, label="to last token", bounds=(0, 1))
        metrics = ins.heads.metrics()
        np.testing.assert_allclose(
            metrics["to_last"].to_numpy(),
            ins.attention[..., -1].mean(axis=-1).reshape(-1),
            rtol=1e-6,
        )
        html = ins.report().html
        assert "to last token" in html
        atlas = small_atlas(m, ATLAS_TEXTS, metrics=["to_last"])
        rows = atlas.summary[atlas.summary["metric"] == "to_last"]
        assert len(rows) == len(metrics) and (rows["n"] > 0).all()
    assert "to_last" not in inspector.list_metrics()


def test_section_recipe_reaches_the_report(tiny):
    ins = tiny["bert"].inspect(TEXT)

    def my_section(ctx):
        n = len(next(iter(ctx.capture.stacks.values())).query)
        context = {"n_rows": n, "precision": "toy", "encoder_decoder": False, "stem": "my"}
        return Section("my-id", "My section", "sections/data.html.j2", context)

    with REPORT_SECTIONS.scoped():
        register_section("my-id", my_section, before="data")
        page = parse(ins.report().html)
        ids = [attrs.get("id") for _, attrs in page.tags]
        assert "my-id" in ids and ids.index("my-id") < ids.index("data")
        with pytest.raises(InputError, match="already registered"):
            register_section("my-id", my_section)
    assert "my-id" not in REPORT_SECTIONS


def test_family_recipe_is_the_table_structure_reads(tiny, tiny_dirs):
    """A family entry is what structure reads: replacing GPT-2's entry by one that forbids the
    shared-prefix ablation changes the found structure, and importance still equals the one
    computed with plain batch rows; the table is whole again after the block."""
    from dataclasses import replace

    from inspector.explain.model import structure

    m = tiny["gpt2"]
    assert structure(m.bundle, "recipe").shared_prefix
    shared = m.inspect(TEXT).explain.ablation()
    with FAMILIES.scoped():
        mine = replace(FAMILIES["gpt2"], name="gpt2", shared_prefix=False)
        inspector.models.register_family(mine, overwrite=True)
        fresh = inspector.load(tiny_dirs["gpt2"])  # a loaded model keeps the structure it found
        assert not structure(fresh.bundle, "recipe").shared_prefix
        plain = fresh.inspect(TEXT).explain.ablation()
        with pytest.raises(InputError, match="already registered"):
            inspector.models.register_family(mine)
    assert structure(m.bundle, "recipe").shared_prefix
    np.testing.assert_allclose(
        shared["delta"].to_numpy(), plain["delta"].to_numpy(), rtol=1e-4, atol=1e-5
    )


def test_explainer_recipe_reaches_the_namespace():
    """A toy explainer is one entry: the namespace runs it by attribute and by name, lists it,
    scores tokens with it, and it is gone after the block."""
    from factories import make_capture

    capture = make_capture(["[CLS]", "a", "b", "c", "[SEP]"], seed=0)
    ins = inspector.Inspection(capture, "self")

    def first_token(request, *, scale: float = 1.0):
        scores = np.zeros(len(request.tokens))
        scores[1] = scale
        return scores

    with scoped_explainers():
        inspector.register_explainer(
            Explainer("first_word", first_token, "tokens", "weights", "first word", first_token)
        )
        assert "first_word" in list_explainers(token_scores=True)
        np.testing.assert_array_equal(ins.explain.first_word(scale=2.0), [0, 2, 0, 0, 0])
        np.testing.assert_array_equal(ins.explain("first_word"), [0, 1, 0, 0, 0])
        np.testing.assert_array_equal(ins.explain.scores("first_word"), [0, 1, 0, 0, 0])
        assert ins.explain.methods().loc["first_word", "returns"] == "tokens"
        assert "first_word" in dir(ins.explain)
    assert "first_word" not in list_explainers()
    with pytest.raises(AttributeError, match="registered explainers"):
        ins.explain.first_word  # noqa: B018
    with pytest.raises(InputError, match="registered explainers"):
        get_explainer("first_word")


def test_explainer_entries_are_checked():
    with pytest.raises(InputError, match="identifier"):
        Explainer("two words", lambda r: None, "tokens", "weights", "x")
    with pytest.raises(InputError, match="returns"):
        Explainer("x", lambda r: None, "pictures", "weights", "x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="needs"):
        Explainer("x", lambda r: None, "tokens", "gpu", "x")  # type: ignore[arg-type]


def test_model_explainers_need_the_model():
    """An inspection read back from a file has no model: explainers that run it say so."""
    from factories import make_capture

    ins = inspector.Inspection(make_capture(["[CLS]", "a", "b", "[SEP]"], seed=1), "self")
    assert ins.explain.scores("rollout").shape == (4,)
    with pytest.raises(UnsupportedModelError, match="runs the model again"):
        ins.explain.norms()


def test_builtin_token_scores_read_the_target_rows(tiny):
    """Raw-attention token scores are the target's row of the map: the last row for a causal
    LM's next token, the row the target's position names otherwise."""
    ins = tiny["gpt2"].inspect(TEXT)
    w = ins.attention[-1].mean(axis=0)
    np.testing.assert_allclose(ins.explain.scores("attention"), w[-1], rtol=1e-6)
    pos = inspector.Target.predicted(position=3)
    np.testing.assert_allclose(ins.explain.scores("attention", target=pos), w[3], rtol=1e-6)
    mean = ins.attention.mean(axis=(0, 1))
    np.testing.assert_allclose(ins.explain.scores("attention_mean"), mean[-1], rtol=1e-6)
