"""Ray on an existing cluster: a real two-node local cluster that the test starts itself.

``ray start --head`` plus a second ``ray start --address=HEAD`` node (each with one CPU, its own
temporary folder and free ports), then the atlas through ``address=`` / ``--address``: equal to
the local engine, with one worker process on the second node killed mid-run (Ray Data restarts
the actor and retries its batch), and a wrong address refused in one line. The cluster's
processes (everything whose command line names its folder, and their children) are killed in
a finalizer, by process id: ``ray stop`` would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factories import ATLAS_METRICS, ATLAS_TEXTS, numeric_stats, small_atlas

pytestmark = pytest.mark.slow

#: The second node's processes see this variable (``ray start`` passes its environment down).
NODE_VAR = "INSPECTOR_TEST_RAY_NODE"  # as ray_cluster_driver.NODE_VAR
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # as the other engine tests: the same float32 batches, merged in float64


@dataclass(frozen=True)
class Cluster:
    address: str  # HOST:PORT of the head, as a user passes it
    env: Mapping[str, str]  # what a driver on this machine needs (the token, PYTHONPATH)
    folder: Path  # both nodes' --temp-dir live here


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray_start(args: list[str], env: Mapping[str, str]) -> None:
    ray_bin = Path(sys.executable).with_name("ray")  # the venv's own ray
    done = subprocess.run(
        [str(ray_bin), "start", *args], env=dict(env), capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise AssertionError(f"ray start {' '.join(args)} failed ({done.returncode}):\n{tail}")


def _processes(folder: Path) -> list[Any]:
    """The cluster's processes: those whose command line names ``folder``, and their children."""
    import psutil

    roots = []
    for proc in psutil.process_iter(["cmdline"]):
        with_folder = any(str(folder) in arg for arg in proc.info["cmdline"] or ())
        if proc.pid != os.getpid() and with_folder:
            roots.append(proc)
    found = {p.pid: p for p in roots}
    for proc in roots:
        with contextlib.suppress(psutil.Error):
            found.update({c.pid: c for c in proc.children(recursive=True)})
    found.pop(os.getpid(), None)
    return list(found.values())


def _kill_cluster(folder: Path) -> list[str]:
    """SIGKILL the cluster's processes by id; returns any still alive after 20 s (none)."""
    import psutil

    for _ in range(3):  # a raylet may start a worker while its siblings die
        procs = _processes(folder)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=10)
    return [" ".join(p.cmdline())[:120] for p in _processes(folder) if p.is_running()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pytest.importorskip("ray.data")
    pytest.importorskip("psutil")
    folder = tmp_path_factory.mktemp("ray")
    # Ray's unix sockets live at FOLDER/h/session_<date>_<pid>/sockets/plasma_store: 107 bytes
    # at most, so a long pytest base folder falls back to a short one under the system's.
    short = len(str(folder)) > 40
    if short:
        folder = Path(tempfile.mkdtemp(prefix="ray-"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Token authentication (Ray's default for a new cluster) with a token of this test's own:
    # the second node and every driver get it from the environment, as on a real cluster
    # (a driver given an explicit address never looks for ~/.ray/auth_token by itself).
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    head, *ports = _free_ports(9)

    def node(name: str, at: list[int]) -> list[str]:
        return [
            f"--temp-dir={folder / name}",
            "--num-cpus=1",
            "--num-gpus=0",
            "--disable-usage-stats",
            "--object-store-memory=200000000",
            f"--dashboard-agent-listen-port={at[0]}",
            f"--dashboard-agent-grpc-port={at[1]}",
            f"--runtime-env-agent-port={at[2]}",
            f"--metrics-export-port={at[3]}",
        ]

    address = f"127.0.0.1:{head}"
    try:
        _ray_start(
            ["--head", f"--port={head}", "--include-dashboard=false", *node("h", ports[:4])], env
        )
        _ray_start([f"--address={address}", *node("w", ports[4:])], {**env, NODE_VAR: "second"})
        yield Cluster(address, env, folder)
    finally:
        left = _kill_cluster(folder)
        if short:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    assert not left, f"Ray processes left running: {left}"


def _assert_same(result: Any, local: Any) -> None:
    for key in ("n_texts", "n_tokens", "n_skipped", "n_truncated"):
        assert result.metadata[key] == local.metadata[key], key
    assert list(result.summary["metric"]) == list(local.summary["metric"])
    np.testing.assert_allclose(
        numeric_stats(result.summary), numeric_stats(local.summary), atol=TOLERANCE,
        equal_nan=True,
    )  # fmt: skip
    np.testing.assert_allclose(
        result.distances.to_numpy(), local.distances.to_numpy(), atol=TOLERANCE
    )


def _calls(folder: Path) -> list[tuple[str, int]]:
    """``(node, pid)`` of every metric call the driver's killer recorded."""
    words = (folder / "calls.txt").read_text(encoding="utf-8").split()
    return [(node, int(pid)) for node, pid in zip(words[::2], words[1::2], strict=True)]


def test_python_api_on_two_nodes_survives_a_killed_worker(
    cluster: Cluster, tiny_dirs: dict[str, Path], tiny: dict[str, object], tmp_path: Path
) -> None:
    """``run_atlas_ray(..., address=)`` in a driver process (ray_cluster_driver.py): the second
    node's worker process dies on its first batch; Ray restarts the actor there and retries the
    batch, and the atlas equals the local engine's."""
    from inspector.corpus.atlas import read_atlas

    local = small_atlas(tiny["bert"], ATLAS_TEXTS * 4, batch_size=2)
    driver = Path(__file__).with_name("ray_cluster_driver.py")
    done = subprocess.run(
        [sys.executable, str(driver), str(tiny_dirs["bert"]), cluster.address, str(tmp_path)],
        env=dict(cluster.env),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(json.loads((tmp_path / "nodes.json").read_text(encoding="utf-8"))) == 2
    killed = int((tmp_path / "killed.txt").read_text(encoding="ascii"))
    calls = _calls(tmp_path)
    second = {pid for node, pid in calls if node == "second"}
    assert killed in second and any(node == "head" for node, _ in calls), calls
    # Ray restarted the killed actor in a new process on the second node (its one CPU), and
    # that process measured batches (the killed one's first: Ray Data retries it)
    assert second - {killed}, calls
    result = read_atlas(tmp_path / "ray.parquet")
    assert result.metadata["ray_address"] == cluster.address
    _assert_same(result, local)


def test_cli_on_two_nodes_equals_local_and_a_wrong_address_is_one_line(
    cluster: Cluster, tiny_dirs: dict[str, Path], tiny: dict[str, object], tmp_path: Path
) -> None:
    from inspector.corpus.atlas import read_atlas

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(ATLAS_TEXTS * 3) + "\n", encoding="utf-8")
    local = small_atlas(tiny["bert"], str(corpus), batch_size=3)
    out = tmp_path / "a.parquet"
    argv = [sys.executable, "-m", "inspector", "atlas", str(tiny_dirs["bert"]), str(corpus)]
    argv += ["--metrics", ",".join(ATLAS_METRICS), "--batch-size", "3", "--no-progress"]
    argv += ["--engine", "ray", "--workers", "2"]
    start = time.perf_counter()
    done = subprocess.run(
        [*argv, "--address", cluster.address, "-o", str(out)],
        env=dict(cluster.env),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seconds = time.perf_counter() - start
    result = read_atlas(out)
    assert result.metadata["engine"] == "ray" and result.metadata["ray_address"] == cluster.address
    _assert_same(result, local)
    assert not (tmp_path / "a.parquet.ckpt.npz").exists()
    # a port nothing listens on: one readable line at once, not minutes of GCS retries
    (dead,) = _free_ports(1)
    start = time.perf_counter()
    bad = subprocess.run(
        [*argv, "--address", f"127.0.0.1:{dead}", "-o", str(tmp_path / "b.parquet")],
        env=dict(cluster.env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("inspector: error: no Ray cluster answers at 127.0.0.1:")
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    assert time.perf_counter() - start < max(30.0, seconds)
    assert not list(tmp_path.glob("b.*"))
