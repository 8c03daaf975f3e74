"""A vision transformer's report in headless Chromium: the image section's pictures load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import inspector

from factories import build_vision, make_image


@pytest.mark.browser
def test_image_section_pictures_load_offline(opened: Any, tmp_path: Path) -> None:
    m = inspector.load(build_vision("deit"))
    path = m.inspect(make_image()).report(tmp_path / "deit.html").save(tmp_path / "deit.html")
    o = opened(path)
    images = o.page.locator("#image img")
    assert images.count() == 2 + 2 * 4  # input, rollout, 2 layers x 4 heads
    widths = images.evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")
    assert all(w > 0 for w in widths)
    assert widths[2:] == [4] * 8  # one pixel per patch: a 4 x 4 grid
    cell = o.page.locator("#image .ins-img-cell").first
    background = cell.evaluate("e => getComputedStyle(e).backgroundImage")
    assert background.startswith('url("data:image/png;base64,')
    box = cell.bounding_box()
    assert box is not None and box["width"] == pytest.approx(box["height"], abs=1)
    o.check_clean()
