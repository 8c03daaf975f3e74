"""Views and reports: parsed HTML, determinism, size, compact data, encoder-decoder, errors."""

from __future__ import annotations

from typing import Any

import pytest

from factories import page_data


@pytest.mark.slow
def test_neuron_view_minilm_offline(minilm: Any) -> None:
    view = minilm.inspect("The cat sat on the mat.", "It slept.").views.neuron()
    data = page_data(view.html)
    assert [p["key"] for p in data["views"][0]["parts"]] == ["all", "aa", "bb", "ab", "ba"]
