"""A driver program for tests/e2e/test_ray_cluster.py (not a test module: nothing is collected).

``python ray_cluster_driver.py MODEL_DIR ADDRESS FOLDER`` runs :func:`run_atlas_ray` on the
cluster at ``ADDRESS`` with metrics that kill the second node's worker process on its first
batch (once), saves the atlas to ``FOLDER/ray.parquet`` and the cluster's live nodes to
``FOLDER/nodes.json``. It runs in its own process, as a driver on a cluster machine does: Ray
reads ``RAY_AUTH_MODE`` once per process, and the test's process keeps no Ray connection.
The killer is defined here, in ``__main__``, so Ray pickles it by value for the workers.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: The second node's processes see this variable (``ray start`` passes its environment down).
NODE_VAR = "INSPECTOR_TEST_RAY_NODE"


class KillSecondNodeOnce:
    """The atlas metrics, but the first batch on the second node kills its own worker process
    (SIGKILL, as the OOM killer would), once: a marker file makes it deterministic. Every call
    appends ``node pid`` to ``calls.txt`` so the test sees which processes measured batches."""

    def __init__(self, metrics: list[str], folder: Path) -> None:
        self.metrics = metrics
        self.folder = folder

    def __call__(self, stack: Any) -> Mapping[str, np.ndarray]:
        from inspector.corpus.engine import registry_metric_fn

        node = os.environ.get(NODE_VAR, "head")
        with open(self.folder / "calls.txt", "a", encoding="utf-8") as log:
            log.write(f"{node} {os.getpid()}\n")
        if node == "second":
            try:
                fd = os.open(self.folder / "killed.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return registry_metric_fn(self.metrics)[1](stack)


def main(model: str, address: str, folder: Path) -> None:
    import ray
    import ray.data

    from inspector.corpus.options import AtlasOptions
    from inspector.corpus.ray_engine import run_atlas_ray

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from factories import ATLAS_METRICS, ATLAS_TEXTS

    # both actors up before the first batch, so the second node's actor gets batches for sure
    ray.data.DataContext.get_current().wait_for_min_actors_s = 120
    try:
        result = run_atlas_ray(
            model,
            ATLAS_TEXTS * 4,  # 36 texts (4 blank), 18 batches of 2
            AtlasOptions(
                batch_size=2,
                metrics=ATLAS_METRICS,
                metric_fn=KillSecondNodeOnce(ATLAS_METRICS, folder),
                progress=False,
            ),
            address=address,
            num_workers=2,
        )
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()
    result.save(folder / "ray.parquet")
    (folder / "nodes.json").write_text(json.dumps(nodes), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
