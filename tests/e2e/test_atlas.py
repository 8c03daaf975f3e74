"""Corpus atlas: text sources, batching equals one-at-a-time, mergeable aggregates, resume, Ray."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from inspector.corpus.options import AtlasOptions
from inspector.corpus.ray_engine import run_atlas_ray

from factories import ATLAS_METRICS, ATLAS_TEXTS, numeric_stats, small_atlas


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (extra [ray])"
)
def test_ray_engine_equals_local(tiny_dirs: dict[str, Path], tiny: dict[str, object]) -> None:
    import ray

    texts = ATLAS_TEXTS * 2
    local = small_atlas(tiny["bert"], texts, batch_size=4)
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        distributed = run_atlas_ray(
            str(tiny_dirs["bert"]),
            texts,
            AtlasOptions(batch_size=4, metrics=ATLAS_METRICS, progress=False),
            num_workers=2,
        )
    finally:
        ray.shutdown()
    assert distributed.metadata["engine"] == "ray"
    assert distributed.metadata["n_texts"] == local.metadata["n_texts"]
    np.testing.assert_allclose(
        numeric_stats(distributed.summary), numeric_stats(local.summary), atol=1e-5, equal_nan=True
    )
    np.testing.assert_allclose(
        distributed.distances.to_numpy(), local.distances.to_numpy(), atol=1e-5
    )


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (extra [ray])"
)
def test_ray_engine_checkpoints_and_resumes(
    tiny_dirs: dict[str, Path], tiny: dict[str, object], tmp_path: Path, monkeypatch
) -> None:
    """The driver checkpoints the merged prefix; a stopped run resumes (Ray or local) and equals
    the uninterrupted local run; another corpus is refused."""
    import ray

    from inspector.corpus import ray_engine
    from inspector.corpus.checkpoint import load_checkpoint
    from inspector.corpus.engine import run_atlas
    from inspector.errors import InputError

    texts = ATLAS_TEXTS * 4  # 36 texts, 9 batches of 4
    local = small_atlas(tiny["bert"], texts, batch_size=4)
    ckpt = tmp_path / "ray.ckpt.npz"
    real = ray_engine.HeadAggregate.from_bytes
    seen: list[int] = []

    def stop_at_fifth(data: bytes):  # type: ignore[no-untyped-def]
        seen.append(load_checkpoint(ckpt).n_done if ckpt.exists() else 0)
        if len(seen) == 5:  # a killed driver would leave the checkpoint as it is now
            raise KeyboardInterrupt
        return real(data)

    kw = {"batch_size": 4, "metrics": ATLAS_METRICS, "progress": False}

    def ray_atlas(corpus: list[str], checkpoint: Path, **more: object):  # type: ignore[no-untyped-def]
        options = AtlasOptions(checkpoint=checkpoint, **kw, **more)  # type: ignore[arg-type]
        return run_atlas_ray(str(tiny_dirs["bert"]), corpus, options, num_workers=2)

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        monkeypatch.setattr(ray_engine.HeadAggregate, "from_bytes", stop_at_fifth)
        with pytest.raises(KeyboardInterrupt):
            ray_atlas(texts, ckpt, checkpoint_every=0)
        monkeypatch.setattr(ray_engine.HeadAggregate, "from_bytes", real)
        assert seen == [0, 4, 8, 12, 16] and load_checkpoint(ckpt).n_done == 16
        with pytest.raises(InputError, match="not the ones it counted"):
            ray_atlas(texts[::-1], ckpt, resume=True)
        resumed = ray_atlas(texts, ckpt, resume=True)
        assert resumed.metadata["resumed_from"] == 16
        # a local checkpoint continued on Ray: one file format
        other = tmp_path / "local.ckpt.npz"
        small_atlas(tiny["bert"], texts, batch_size=4, checkpoint=other, limit=8)
        mixed = ray_atlas(texts, other, resume=True)
    finally:
        ray.shutdown()
    # and a Ray checkpoint continued locally
    back = run_atlas(tiny["bert"].bundle, texts, AtlasOptions(checkpoint=ckpt, resume=True, **kw))
    for result in (resumed, mixed, back):
        assert result.metadata["n_texts"] == local.metadata["n_texts"]
        np.testing.assert_allclose(
            numeric_stats(result.summary), numeric_stats(local.summary), atol=1e-5,
            equal_nan=True,
        )  # fmt: skip
        np.testing.assert_allclose(result.distances.to_numpy(), local.distances.to_numpy(),
                                   atol=1e-5)  # fmt: skip
