"""Every benchmark's smoke mode: the same code at a tiny size, on tiny models (issue 18, 10).

``make bench`` runs for many minutes on the real models, so nothing noticed when an API change
broke it. Each ``bench/bench_*.py`` has ``smoke(models)``, which runs its ``main`` on the tiny
encoder (``models["encoder"]``, a folder) or the tiny LLaMA-style GGUF file
(``models["decoder"]``) at a few tokens, with one repeat and no Chromium; here every one of them
must produce its whole table. The numbers mean nothing at this size and are not checked.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(
    m.name for m in pkgutil.iter_modules([str(ROOT / "bench")]) if m.name.startswith("bench_")
)

#: Data rows each table has in smoke mode (besides its header and separator).
ROWS = {
    "bench_atlas": 9,
    "bench_core": 2,
    "bench_decoder": 7,
    "bench_explain": 6,
    "bench_faithfulness": 7,
    "bench_heads": 5,
    "bench_load": 3,
    "bench_long": 2,
    "bench_report": 2,
    "bench_trace": 3,
}


@pytest.fixture(scope="module")
def models(tiny_dirs: dict[str, Path], tiny_gguf: Path) -> dict[str, str]:
    return {"encoder": str(tiny_dirs["bert"]), "decoder": str(tiny_gguf)}


def test_every_benchmark_is_covered() -> None:
    assert MODULES and sorted(ROWS) == MODULES


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_smoke_mode_makes_its_table(
    name: str, models: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    # the subprocesses some benchmarks start import this checkout, not another install
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    module = importlib.import_module(f"bench.{name}")
    table = module.smoke(models)
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header, separator, rows = lines[0], lines[1], lines[2:]
    assert set(separator) <= set("|-: "), table
    assert len(rows) == ROWS[name], table
    width = header.count("|")
    assert all(row.count("|") == width for row in rows), table
    assert "failed runs" not in table and "Traceback" not in table, table
