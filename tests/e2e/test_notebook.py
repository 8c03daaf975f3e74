"""The notebook tour (examples/tour.ipynb) runs top to bottom in a fresh kernel, views inline."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "tour.ipynb"


def test_tour_notebook_runs_and_shows_views_inline(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    assert all("assert " in source for source in code)  # every cell checks what it shows
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    frames = [h for h in html if "<table" in h and "dataframe" in h]
    pages = [h for h in html if h.startswith("<iframe srcdoc=")]
    assert len(frames) >= 5  # frame, one head's grid, metrics, nearest heads, ranked comparison
    grid = next(h for h in frames if "0 [CLS]" in h)  # one head's (query, key) grid, not empty
    assert grid.count("<tr") >= 7  # the header and six rows
    assert len(pages) == 4  # head view, model view, the report, the comparison report
    assert all("inspector-data" in p for p in pages)  # the attention, in the page itself
    streams = " ".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "IProgress" not in streams  # no progress-bar widgets warning in a notebook
