"""Corpus atlas: text sources, batching equals one-at-a-time, mergeable aggregates, resume, Ray."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

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
            batch_size=4,
            metrics=ATLAS_METRICS,
            num_workers=2,
            progress=False,
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
