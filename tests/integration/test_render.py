"""Views and reports: parsed HTML, determinism, size, compact data, encoder-decoder, errors."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.errors import InputError, UnsupportedModelError
from inspector.render import (
    decode_weights,
    max_abs_error,
    neuron_view,
)
from inspector.render.encode import decode_float16

from factories import figure_specs, page_data


@pytest.mark.parametrize("kind", ["bert", "gpt2", "t5", "bart"])
def test_every_tiny_family_reports(tiny: dict[str, Any], kind: str, tmp_path: Path) -> None:
    ins = tiny[kind].inspect("The cat sat on the mat.")
    report = ins.report(tmp_path / f"{kind}.html")
    data = page_data(report.html)
    expected = ["encoder", "decoder", "cross"] if kind in ("t5", "bart") else ["self"]
    assert sorted(data["stacks"]) == sorted(expected)  # tojson sorts keys
    for name, stack in ins.capture.stacks.items():
        back = decode_weights(data["stacks"][name])
        assert np.abs(back - stack.weights).max() <= max_abs_error("uint8") + 1e-7
    grids = [name for name in figure_specs(report.html) if name.startswith("head-grid-")]
    assert sorted(grids) == sorted(f"head-grid-{kind}" for kind in expected)


def test_encoder_decoder_views(tiny: dict[str, Any]) -> None:
    ins = tiny["t5"].inspect("The cat sat.", target="A dog.")
    parts = page_data(ins.views.head().html)["views"][0]["parts"]
    assert [p["name"] for p in parts] == ["Encoder", "Decoder", "Cross"]
    cross = parts[2]
    assert len(cross["left_text"]) == len(ins.decoder.tokens)
    assert len(cross["right_text"]) == len(ins.encoder.tokens)
    only = page_data(ins.cross.views.model().html)["views"][0]["parts"]
    assert [p["name"] for p in only] == ["Cross"]


def test_view_methods_take_the_views_keywords(tiny: dict[str, Any]) -> None:
    """ins.views.* delegate to render.bertviz's views: their keywords, the capture filled in."""
    ins = tiny["bert"].inspect("The cat sat.")
    params = inspect.signature(ins.views.head).parameters
    assert "capture" not in params and {"layer", "heads", "kind", "precision"} <= set(params)
    assert "capture" not in inspect.signature(ins.views.neuron).parameters
    with pytest.raises(TypeError, match="lyr"):
        ins.views.head(lyr=1)
    with pytest.raises(TypeError):
        ins.views.model(0)  # keywords only, as before
    assert page_data(ins.views.model(include_layers=[1]).html)["views"][0]["kind"] == "model"


def test_pair_report_from_model(tiny: dict[str, Any]) -> None:
    ins = tiny["bert"].inspect("The cat sat.", "The dog barked.")
    spec = page_data(ins.report().html)["views"][0]
    assert len(spec["parts"]) == 5


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_neuron_view_recomputes_the_captured_attention(tiny: dict[str, Any], kind: str) -> None:
    ins = tiny[kind].inspect("The cat sat on the mat.")
    data = page_data(ins.views.neuron(layer=1, head=0).html)
    (spec,) = data["views"]
    assert spec["kind"] == "neuron" and spec["params"]["bidirectional"] is (kind == "bert")
    q = decode_float16(data["vectors"][spec["id"]]["queries"])
    assert q.shape[:3] == ins.attention.shape[:3]


def test_neuron_view_unsupported(tiny: dict[str, Any]) -> None:
    ins = tiny["t5"].inspect("The cat sat.")
    with pytest.raises(UnsupportedModelError, match=r"t5.*encoder-decoder"):
        ins.views.neuron()
    bert = tiny["bert"].inspect("The cat sat.")
    with pytest.raises(InputError, match="queries must have shape"):
        neuron_view(bert.capture, np.zeros(3), np.zeros(3))


def test_cli_report(tiny_dirs: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    from inspector.cli import main

    out = tmp_path / "r" / "cat.html"
    argv = ["report", str(tiny_dirs["bert"]), "The cat sat.", "--pair", "A dog."]
    assert main([*argv, "-o", str(out), "--mkdir"]) == 0
    assert "sections" in capsys.readouterr().out
    assert len(page_data(out.read_text(encoding="utf-8"))["views"][0]["parts"]) == 5
    assert main(["report", str(tiny_dirs["bert"]), "x", "-o", str(tmp_path / "x.txt")]) == 2
    assert "html" in capsys.readouterr().err
