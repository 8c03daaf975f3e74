"""Comparing two inputs or two models head by head."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.analysis.compare import compare
from inspector.errors import InputError


def test_compare_two_models_sharing_a_tokenizer(tiny) -> None:
    import inspector

    bert = tiny["bert"]
    c = inspector.compare(bert.inspect("the cat sat."), bert.inspect("the cat sat."))
    assert c.frame["js"].max() == 0
    enc = tiny["t5"].inspect("the cat sat.")
    with pytest.raises(InputError, match="encoder-decoder"):
        compare(enc, enc)
    assert compare(enc.encoder, enc.encoder).frame["js"].max() == 0


def test_comparison_report_and_cli(tiny, tmp_path) -> None:
    from html.parser import HTMLParser

    from inspector.cli import main

    out = tmp_path / "diff.html"
    folder = tiny["bert"].bundle.source
    rc = main(["compare", str(folder), "the cat sat.", "--text-b", "the dog sat.", "-o", str(out)])
    assert rc == 0 and out.exists()
    ids: list[str] = []

    class Ids(HTMLParser):
        def handle_starttag(self, tag, attrs) -> None:
            ids.extend(v for k, v in attrs if k == "id" and v)

    Ids().feed(out.read_text(encoding="utf-8"))
    assert "comparison" in ids
    csv = tmp_path / "diff.csv"
    assert (
        main(["compare", str(folder), "the cat sat.", "--text-b", "the cat.", "-o", str(csv)]) == 0
    )
    assert main(["compare", str(folder), "the cat sat."]) != 0  # nothing to compare with
    heads = tmp_path / "heads.parquet"
    assert main(["heads", str(folder), "the cat sat.", "a dog.", "-o", str(heads)]) == 0
    import pandas as pd

    frame = pd.read_parquet(heads)
    assert {"layer", "head", "entropy", "role", "n"} <= set(frame.columns) and len(frame) == 4


def test_head_analysis_section(tiny) -> None:
    from inspector.render.report import build_report
    from inspector.render.sections.heads import head_analysis_section

    ins = tiny["gpt2"].inspect("the cat sat on the mat.")
    report = build_report(ins.capture, sections=(head_analysis_section,))
    assert [s.id for s in report.sections] == ["head-metrics"]
    names = [f.name for part in report.sections[0].context["parts"] for f in part["figures"]]
    assert names == ["head-roles-self", "head-metrics-self", "head-distances-self", "head-mds-self"]
    assert report.html.count('<figure class="ins-figure ins-fig"') == 4


def test_comparison_figures_are_diverging_maps(tiny) -> None:
    import inspector
    from inspector.render.charts import comparison_figure

    bert = tiny["bert"]
    c = inspector.compare(bert.inspect("the cat sat."), bert.inspect("the dog sat."))
    spec = comparison_figure(c, 1, 0).data()
    a, b, diff = spec["panels"]
    assert spec["name"] == "compare-1-0" and spec["title"].startswith("head 1.0: JS divergence")
    assert (a["cmap"], b["cmap"], diff["cmap"]) == ("blues", "blues", "rdbu")
    # the difference is scaled to the data, symmetric around 0, and its title states the scale
    wa, wb = c.aligned_maps(1, 0)
    bound = float(np.abs(wb - wa).max())
    assert diff["vmin"] == -diff["vmax"] and abs(diff["vmax"] - bound) <= 1e-3 * bound + 1e-9
    assert f"±{bound:.3f}" in diff["title"]
    assert len(a["rows"]) == len(a["values"]) and "cat" in a["cols"] and "dog" in b["cols"]
