"""The report's image section on hand-made attention over a patch grid (no model)."""

from __future__ import annotations

import numpy as np

from inspector.capture.types import AttentionStack, Capture
from inspector.render.report import build_report
from inspector.render.sections import image as I

from factories import make_capture, make_tokens, parse, random_weights


def _image_capture(prefix: int = 1, grid: int = 3) -> Capture:
    names = ["[CLS]"] * prefix + [f"patch {r},{c}" for r in range(grid) for c in range(grid)]
    toks = make_tokens(names, special=[True] * prefix + [False] * grid * grid)
    w = random_weights(2, 2, len(names), seed=3, sharp=3.0)
    meta = {"model_name": "toy", "image_grid": [grid, grid], "image_prefix": prefix, "text": "x"}
    picture = np.zeros((12, 12, 3), dtype=np.uint8)
    picture[:6] = 200
    return Capture({"self": AttentionStack(w, toks, toks)}, meta, image=picture)


def test_colormap_runs_dark_to_bright() -> None:
    rgb = I.colormap(np.linspace(0, 1, 11)).astype(int)
    assert rgb.shape == (11, 3) and rgb.dtype == np.int64
    assert (np.diff(rgb.sum(axis=1)) > 0).all()
    assert rgb[0].tolist() == [0, 0, 4] and rgb[-1].tolist() == [252, 255, 164]


def test_patch_maps_read_the_cls_row_or_the_mean() -> None:
    cap = _image_capture()
    stack = cap.stacks["self"]
    maps = I.patch_maps(stack, 1, (3, 3))
    np.testing.assert_allclose(maps[1, 0].reshape(-1), stack.weights[1, 0, 0, 1:])
    none = _image_capture(prefix=0).stacks["self"]
    np.testing.assert_allclose(
        I.patch_maps(none, 0, (3, 3))[0, 1].reshape(-1), none.weights[0, 1].mean(axis=0)
    )


def test_overlay_blends_each_patch_with_its_colour() -> None:
    image = np.full((6, 6, 3), 100, dtype=np.uint8)
    values = np.array([[0.0, 1.0], [0.5, 0.25]])
    out = I.overlay(image, values, alpha=0.5).astype(float)
    colours = I.colormap(values / values.max()).astype(float)
    np.testing.assert_allclose(out[0, 4], 50 + colours[0, 1] / 2, atol=0.51)
    np.testing.assert_allclose(out[5, 0], 50 + colours[1, 0] / 2, atol=0.51)
    heat = I.heat_rgba(values)
    assert heat.shape == (2, 2, 4) and (heat[..., 3] == round(I.HEAT_ALPHA * 255)).all()


def test_section_only_for_images_and_its_pngs_decode() -> None:
    assert I.image_context(make_capture()) is None
    html = build_report(_image_capture()).html
    page = parse(html)
    srcs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(srcs) == 2 + 2 * 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "Attention on the image" in html
    assert "Attention on the image" not in build_report(make_capture()).html
