"""Corpus atlas: text sources, batching equals one-at-a-time, mergeable aggregates, resume, Ray."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspector.atlas import (
    HeadAggregate,
    aggregate_values,
    load_checkpoint,
    read_atlas,
    run_atlas,
    run_atlas_ray,
    summary_frame,
    text_source,
    write_atlas,
)
from inspector.batching import capture_batch
from inspector.capture import capture
from inspector.errors import InputError
from inspector.metrics import compute_metric_arrays

CORPUS = [
    "The cat sat on the mat because it was tired.",
    "A dog barked at the mailman, who ran away quickly!",
    "Attention heads look at previous tokens, separators and punctuation.",
    "Unbelievable results were reported in the paper's appendix.",
    'She said: "hello world" and then left the room.',
    "The keys to the cabinet are on the table.",
]

METRICS = ["entropy", "max_weight", "mean_distance", "to_prev", "to_special", "to_punct"]
TEXTS = [*CORPUS, "", "Short one.", "Another fairly long sentence about heads and their habits."]


def _atlas(model: object, texts: object, **kw: object) -> object:
    kw.setdefault("metrics", METRICS)
    kw.setdefault("progress", False)
    return run_atlas(model.bundle, texts, **kw)  # type: ignore[attr-defined]


def _numeric(frame: pd.DataFrame) -> np.ndarray:
    return frame.drop(columns=["metric"]).to_numpy(dtype=np.float64)


# ----------------------------------------------------------------------------------- text sources


def test_text_sources(tmp_path: Path) -> None:
    assert list(text_source(["a b", "c"])) == ["a b", "c"]
    gen = text_source(t for t in ["x", "y"])
    assert list(gen) == ["x", "y"] and gen.total is None
    txt = tmp_path / "corpus.txt"
    txt.write_text("one line\n\nthree\n", encoding="utf-8")
    src = text_source(txt)
    assert list(src) == ["one line", "", "three"] and src.total == 3
    frame = pd.DataFrame({"id": [1, 2], "sentence": ["first text", "second, text"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    assert list(text_source(f"{tmp_path / 't.csv'}:sentence")) == ["first text", "second, text"]
    pq = text_source(tmp_path / "t.parquet", column="sentence")
    assert list(pq) == ["first text", "second, text"] and pq.total == 2
    assert list(text_source(frame, column="sentence")) == ["first text", "second, text"]
    with pytest.raises(InputError, match="several columns"):
        text_source(tmp_path / "t.csv")
    with pytest.raises(InputError, match="no column 'nope'"):
        text_source(f"{tmp_path / 't.parquet'}:nope")
    with pytest.raises(InputError, match="single string"):
        text_source("The cat sat on the mat.")
    with pytest.raises(InputError, match="does not exist"):
        text_source(tmp_path / "missing.txt")


class _FakeDataset:
    """Duck-typed stand-in for a Hugging Face ``datasets.Dataset``."""

    column_names = ("label", "text")

    def __init__(self, texts: list[str]) -> None:
        self.rows = [{"label": i, "text": t} for i, t in enumerate(texts)]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)


def test_hf_dataset_duck_typed() -> None:
    src = text_source(_FakeDataset(["a", "b"]))
    assert list(src) == ["a", "b"] and src.total == 2


def test_conllu_source(tmp_path: Path) -> None:
    path = tmp_path / "t.conllu"
    path.write_text(
        "# text = Hi there\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n"
        "2\tthere\tthere\tADV\t_\t_\t1\tadvmod\t_\t_\n\n",
        encoding="utf-8",
    )
    assert list(text_source(path)) == ["Hi there"]


# ------------------------------------------------------------------------ batching == one at a time


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
            a = compute_metric_arrays(stack, METRICS)
            b = compute_metric_arrays(got, METRICS)
            for name in METRICS:
                np.testing.assert_allclose(b[name], a[name], atol=1e-5, equal_nan=True)


def test_atlas_batched_equals_one_at_a_time(tiny_model: object) -> None:
    batched = _atlas(tiny_model, TEXTS, batch_size=4)
    single = _atlas(tiny_model, TEXTS, batch_size=1)
    assert batched.summary["n"].max() == len(TEXTS) - 1  # the blank text is skipped
    assert batched.metadata["n_skipped"] == 1
    np.testing.assert_allclose(
        _numeric(batched.summary), _numeric(single.summary), atol=1e-5, equal_nan=True
    )
    np.testing.assert_allclose(batched.distances.to_numpy(), single.distances.to_numpy(), atol=1e-5)


def test_atlas_means_match_per_text_metrics(tiny: dict[str, object]) -> None:
    model = tiny["bert"]
    atlas = _atlas(model, CORPUS, batch_size=3)
    per_text = [compute_metric_arrays(capture(model.bundle, t).stacks["self"]) for t in CORPUS]
    for name in ("entropy", "to_prev"):
        values = np.stack([p[name] for p in per_text])
        table = atlas.metric(name, "mean").to_numpy()
        np.testing.assert_allclose(table, values.mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(
            atlas.metric(name, "std").to_numpy(), values.std(axis=0, ddof=1), atol=1e-5
        )
    assert list(atlas.summary.columns[:4]) == ["layer", "head", "metric", "n"]
    assert atlas.distances.shape == (4, 4)
    assert np.allclose(np.diag(atlas.distances.to_numpy()), 0.0)


# -------------------------------------------------------------------------------------- aggregates


def test_aggregates_merge_and_quantiles() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((300, 2, 2, 3))
    values[:, 1] = rng.normal(3.0, 2.0, (300, 2, 3))  # an unbounded metric
    values[5, 0, 0, 0] = np.nan
    names = ["to_prev", "entropy"]
    whole = aggregate_values(values, names, distances_enabled=False)
    parts = [
        aggregate_values(values[i : i + 70], names, distances_enabled=False)
        for i in range(0, 300, 70)
    ]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_array_equal(merged.hist, whole.hist)
    np.testing.assert_allclose(merged.total, whole.total)
    assert whole.count[0, 0, 0] == 299
    frame = summary_frame(merged)
    row = frame[(frame["metric"] == "to_prev") & (frame["layer"] == 1) & (frame["head"] == 2)].iloc[
        0
    ]
    column = values[:, 0, 1, 2]
    assert row["mean"] == pytest.approx(column.mean())
    assert row["std"] == pytest.approx(column.std(ddof=1))
    assert row["median"] == pytest.approx(np.median(column), abs=2e-3)
    assert row["p97_5"] == pytest.approx(np.quantile(column, 0.975), abs=2e-3)
    unbounded = values[:, 1, 0, 0]
    got = merged.quantile(0.5)[1, 0, 0]
    assert got == pytest.approx(np.median(unbounded), rel=0.02)
    restored = HeadAggregate.from_bytes(merged.to_bytes())
    np.testing.assert_array_equal(restored.hist, merged.hist)
    with pytest.raises(InputError, match="cannot merge"):
        merged.merge(aggregate_values(values[:, :1], names[:1], distances_enabled=False))


# ---------------------------------------------------------------------------------- interruptions


def test_interrupt_and_resume_equals_uninterrupted(tiny: dict[str, object], tmp_path: Path) -> None:
    model = tiny["gpt2"]
    texts = TEXTS * 2  # 18 texts, batches of 4
    ckpt = tmp_path / "atlas.ckpt.npz"

    def interrupted():  # type: ignore[no-untyped-def]
        for i, text in enumerate(texts):
            if i == 10:  # mid-way through the third batch: two batches (8 texts) are done
                raise KeyboardInterrupt
            yield text

    with pytest.raises(KeyboardInterrupt):
        _atlas(model, interrupted(), batch_size=4, checkpoint=ckpt)
    agg, n_done, _ = load_checkpoint(ckpt)
    assert n_done == 8 and agg.n_texts + agg.n_skipped == 8
    resumed = _atlas(model, texts, batch_size=4, checkpoint=ckpt, resume=True)
    assert resumed.metadata["resumed_from"] == 8
    full = _atlas(model, texts, batch_size=4)
    assert resumed.metadata["n_texts"] == full.metadata["n_texts"] == 16
    np.testing.assert_allclose(
        _numeric(resumed.summary), _numeric(full.summary), atol=1e-9, equal_nan=True
    )
    with pytest.raises(InputError, match="other settings"):
        _atlas(model, texts, checkpoint=ckpt, resume=True, metrics=["entropy"])


def test_crash_keeps_completed_batches(tiny: dict[str, object], tmp_path: Path) -> None:
    ckpt = tmp_path / "c.npz"
    with pytest.raises(InputError, match="each text broke"):
        # the non-string is skipped; the metric failing in batch 2 must checkpoint batch 1
        _atlas(
            tiny["bert"],
            [*CORPUS[:4], 123, *CORPUS[:4]],
            batch_size=4,
            checkpoint=ckpt,
            metric_fn=_broken_after_four(),
            metric_names=["entropy"],
            distances=False,
        )
    _, n_done, _ = load_checkpoint(ckpt)
    assert n_done == 4


def _broken_after_four():  # type: ignore[no-untyped-def]
    calls = [0]

    def fn(stack):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] > 4:
            raise InputError("each text broke the metric")
        return compute_metric_arrays(stack, ["entropy"])

    return fn


# ----------------------------------------------------------------------------------------- output


def test_write_and_read_atlas(tiny: dict[str, object], tmp_path: Path) -> None:
    atlas = _atlas(tiny["t5"], CORPUS, batch_size=4)
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


# -------------------------------------------------------------------------------------------- Ray


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (extra [ray])"
)
def test_ray_engine_equals_local(tiny_dirs: dict[str, Path], tiny: dict[str, object]) -> None:
    import ray

    texts = TEXTS * 2
    local = _atlas(tiny["bert"], texts, batch_size=4)
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        distributed = run_atlas_ray(
            str(tiny_dirs["bert"]),
            texts,
            batch_size=4,
            metrics=METRICS,
            num_workers=2,
            progress=False,
        )
    finally:
        ray.shutdown()
    assert distributed.metadata["engine"] == "ray"
    assert distributed.metadata["n_texts"] == local.metadata["n_texts"]
    np.testing.assert_allclose(
        _numeric(distributed.summary), _numeric(local.summary), atol=1e-5, equal_nan=True
    )
    np.testing.assert_allclose(
        distributed.distances.to_numpy(), local.distances.to_numpy(), atol=1e-5
    )


def test_atlas_report(tiny: dict[str, object], tmp_path: Path) -> None:
    from html.parser import HTMLParser

    from inspector.render.atlas import atlas_report

    atlas = _atlas(tiny["bert"], CORPUS, batch_size=4, metrics=None)
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
    assert report.html.count("inspectorFigures") == 1  # figures.js inlined once
    assert "http" not in report.html.split("<body>")[1].split("<figure")[0]
    report.save(tmp_path / "atlas.html")
    assert (tmp_path / "atlas.html").stat().st_size > 10_000
