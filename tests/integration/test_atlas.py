"""Corpus atlas: text sources, batching equals one-at-a-time, mergeable aggregates, resume, Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspector.analysis.metrics import compute_metric_arrays
from inspector.capture.batch import capture_batch
from inspector.capture.run import capture
from inspector.corpus.atlas import read_atlas, write_atlas
from inspector.corpus.engine import load_checkpoint
from inspector.errors import InputError
from inspector.render._assets import static_text
from inspector.render.figures import FIGURE_SCRIPTS

from factories import ATLAS_METRICS, ATLAS_TEXTS, CORPUS, numeric_stats, small_atlas


def test_batch_capture_equals_single(tiny_model: object) -> None:
    bundle = tiny_model.bundle  # type: ignore[attr-defined]
    caps = capture_batch(bundle, CORPUS)
    for text, cap in zip(CORPUS, caps, strict=True):
        one = capture(bundle, text)
        assert set(one.stacks) == set(cap.stacks)
        for kind, stack in one.stacks.items():
            got = cap.stacks[kind]
            assert got.query.tokens == stack.query.tokens
            np.testing.assert_allclose(got.weights, stack.weights, atol=1e-5)
            a = compute_metric_arrays(stack, ATLAS_METRICS)
            b = compute_metric_arrays(got, ATLAS_METRICS)
            for name in ATLAS_METRICS:
                np.testing.assert_allclose(b[name], a[name], atol=1e-5, equal_nan=True)


def test_atlas_batched_equals_one_at_a_time(tiny_model: object) -> None:
    batched = small_atlas(tiny_model, ATLAS_TEXTS, batch_size=4)
    single = small_atlas(tiny_model, ATLAS_TEXTS, batch_size=1)
    assert batched.summary["n"].max() == len(ATLAS_TEXTS) - 1  # the blank text is skipped
    assert batched.metadata["n_skipped"] == 1
    np.testing.assert_allclose(
        numeric_stats(batched.summary), numeric_stats(single.summary), atol=1e-5, equal_nan=True
    )
    np.testing.assert_allclose(batched.distances.to_numpy(), single.distances.to_numpy(), atol=1e-5)


def test_atlas_means_match_per_text_metrics(tiny: dict[str, object]) -> None:
    model = tiny["bert"]
    atlas = small_atlas(model, CORPUS, batch_size=3)
    per_text = [compute_metric_arrays(capture(model.bundle, t).stacks["self"]) for t in CORPUS]
    for name in ("entropy", "to_prev"):
        values = np.stack([p[name] for p in per_text])
        table = atlas.metric(name, "mean").to_numpy()
        np.testing.assert_allclose(table, values.mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(
            atlas.metric(name, "std").to_numpy(), values.std(axis=0, ddof=1), atol=1e-5
        )
    assert list(atlas.summary.index.names) == ["layer", "head"]
    assert list(atlas.summary.columns[:2]) == ["metric", "n"]
    assert atlas.distances.shape == (4, 4)
    assert np.allclose(np.diag(atlas.distances.to_numpy()), 0.0)


def test_interrupt_and_resume_equals_uninterrupted(tiny: dict[str, object], tmp_path: Path) -> None:
    model = tiny["gpt2"]
    texts = ATLAS_TEXTS * 2  # 18 texts, batches of 4
    ckpt = tmp_path / "atlas.ckpt.npz"

    def interrupted():  # type: ignore[no-untyped-def]
        for i, text in enumerate(texts):
            if i == 10:  # mid-way through the third batch: two batches (8 texts) are done
                raise KeyboardInterrupt
            yield text

    with pytest.raises(KeyboardInterrupt):
        small_atlas(model, interrupted(), batch_size=4, checkpoint=ckpt)
    saved = load_checkpoint(ckpt)
    assert saved.n_done == 8 and saved.aggregate.n_texts + saved.aggregate.n_skipped == 8
    resumed = small_atlas(model, texts, batch_size=4, checkpoint=ckpt, resume=True)
    assert resumed.metadata["resumed_from"] == 8
    full = small_atlas(model, texts, batch_size=4)
    assert resumed.metadata["n_texts"] == full.metadata["n_texts"] == 16
    np.testing.assert_allclose(
        numeric_stats(resumed.summary), numeric_stats(full.summary), atol=1e-9, equal_nan=True
    )
    with pytest.raises(InputError, match="other settings"):
        small_atlas(model, texts, checkpoint=ckpt, resume=True, metrics=["entropy"])


def test_crash_keeps_completed_batches(tiny: dict[str, object], tmp_path: Path) -> None:
    ckpt = tmp_path / "c.npz"
    with pytest.raises(InputError, match="each text broke"):
        # the non-string is skipped; the metric failing in batch 2 must checkpoint batch 1
        small_atlas(
            tiny["bert"],
            [*CORPUS[:4], 123, *CORPUS[:4]],
            batch_size=4,
            checkpoint=ckpt,
            metric_fn=_broken_after_four(),
            metric_names=["entropy"],
            distances=False,
        )
    assert load_checkpoint(ckpt).n_done == 4


def _broken_after_four():  # type: ignore[no-untyped-def]
    calls = [0]

    def fn(stack):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] > 4:
            raise InputError("each text broke the metric")
        return compute_metric_arrays(stack, ["entropy"])

    return fn


def test_write_and_read_atlas(tiny: dict[str, object], tmp_path: Path) -> None:
    atlas = small_atlas(tiny["t5"], CORPUS, batch_size=4)
    assert atlas.metadata["kind"] == "encoder"
    paths = write_atlas(atlas, tmp_path / "atlas.parquet")
    assert [p.name for p in paths] == ["atlas.parquet", "atlas.distances.parquet"]
    back = read_atlas(tmp_path / "atlas.parquet")
    pd.testing.assert_frame_equal(
        back.summary.astype({"metric": str}), atlas.summary.astype({"metric": str})
    )
    np.testing.assert_allclose(back.distances.to_numpy(), atlas.distances.to_numpy())
    assert back.metadata["n_texts"] == len(CORPUS)


def test_cli_atlas(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from inspector.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    out = tmp_path / "a.parquet"
    args = [
        "atlas",
        str(tiny_dirs["bert"]),
        str(corpus),
        "-o",
        str(out),
        "--batch-size",
        "4",
        "--metrics",
        "entropy,to_prev",
        "--no-progress",
        "--report",
        str(tmp_path / "a.html"),
    ]
    assert main(args) == 0
    assert (tmp_path / "a.html").exists()
    frame = pd.read_parquet(out)
    assert set(frame["metric"].astype(str)) == {"entropy", "to_prev"}
    assert (out.parent / "a.distances.parquet").exists()
    assert not (out.parent / "a.parquet.ckpt.npz").exists()


def test_api_atlas(tiny: dict[str, object]) -> None:
    import inspector

    atlas = inspector.atlas(tiny["bert"], CORPUS[:3], metrics=["entropy"], progress=False)
    assert atlas.metadata["n_texts"] == 3


def test_atlas_report(tiny: dict[str, object], tmp_path: Path) -> None:
    from html.parser import HTMLParser

    from inspector.render.report import atlas_report

    atlas = small_atlas(tiny["bert"], CORPUS, batch_size=4, metrics=None)
    report = atlas_report(atlas)
    assert [s.id for s in report.sections] == [
        "overview", "heatmaps", "roles", "distances", "summary",
    ]  # fmt: skip

    class Figures(HTMLParser):
        count = 0
        images = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "figure" and "ins-fig" in str(dict(attrs).get("class")):
                self.count += 1
            self.images += tag == "img"

    parser = Figures()
    parser.feed(report.html)
    assert parser.count == 5 and parser.images == 0
    # the figure scripts inlined once each, the kit first, the panel kinds after figures.js
    sources = [static_text(name) for name in FIGURE_SCRIPTS]
    assert [report.html.count(s) for s in sources] == [1] * len(sources)
    at = [report.html.index(s) for s in sources]
    assert at == sorted(at)
    assert "http" not in report.html.split("<body>")[1].split("<figure")[0]
    report.save(tmp_path / "atlas.html")
    assert (tmp_path / "atlas.html").stat().st_size > 10_000
