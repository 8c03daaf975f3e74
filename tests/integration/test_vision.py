"""Vision transformers: an image through the model's own image processor, to a report.

Tiny random ViT, DeiT and CLIP's / SigLIP's vision towers (``tests/factories.py``:
``VISION_SPECS``) with their real image processors (PIL/numpy implementations) and a generated
picture: tokens, capture equal to transformers' own eager attentions, the image the model saw,
frames, metrics, rollout, the head view and the report's image section (PNGs decoded back);
norm-based attention, head importance and "what mattered" re-derived with the tests' own hooks.
"""

from __future__ import annotations

import base64
import io
import re
import warnings
from typing import Any

import numpy as np
import pytest
import torch
import transformers

import inspector
from inspector.errors import InputError, InspectorWarning, UnsupportedModelError

from factories import IMAGE_SIZE, PATCH_SIZE, VISION_SPECS, build_vision, make_image, parse

GRID = IMAGE_SIZE // PATCH_SIZE
PREFIX = {"vit": ["[CLS]"], "deit": ["[CLS]", "[DIST]"], "clip_vision_model": ["[CLS]"]}


@pytest.fixture(scope="module")
def vision(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only waits on a busy machine
    built = {}
    for model_type in VISION_SPECS:
        model, processor = build_vision(model_type)
        folder = tmp_path_factory.mktemp(model_type)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        built[model_type] = (inspector.load((model, processor)), folder, processor)
    yield built
    torch.set_num_threads(threads)


def _decode(url: str) -> np.ndarray:
    from PIL import Image

    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.mark.parametrize("model_type", list(VISION_SPECS))
def test_image_capture_equals_the_models_own_attention(vision, model_type):
    m, folder, processor = vision[model_type]
    assert m.bundle.modality == "image" and m.bundle.architecture == "encoder"
    hooks = {n: dict(x._forward_hooks) for n, x in m.model.named_modules()}
    image = make_image()
    ins = m.inspect(image)
    prefix = PREFIX.get(model_type, [])
    assert ins.tokens == prefix + [f"patch {r},{c}" for r in range(GRID) for c in range(GRID)]
    assert list(ins.stack.query.special[: len(prefix)]) == [True] * len(prefix)
    assert ins.metadata["image_grid"] == [GRID, GRID]
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    reference = getattr(transformers, VISION_SPECS[model_type][0]).from_pretrained(
        folder, attn_implementation="eager"
    )
    with torch.no_grad():  # transformers' own eager attention (on a copy: it hooks the model)
        ref = reference.eval()(pixel_values=pixels, output_attentions=True).attentions
    np.testing.assert_allclose(ins.attention, np.stack([a[0].numpy() for a in ref]), atol=1e-6)
    # the image the model saw: its pixel values without normalisation, as uint8
    seen = ins.capture.image
    assert seen.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and seen.dtype == np.uint8
    mean = np.asarray(processor.image_mean)[:, None, None]
    std = np.asarray(processor.image_std)[:, None, None]
    expected = (pixels[0].numpy() * std + mean) * 255
    np.testing.assert_allclose(seen.transpose(2, 0, 1), expected, atol=0.51)
    # the same image as an array (uint8, and float in [0, 1]) gives the same capture
    arr = np.asarray(image)
    np.testing.assert_array_equal(m.inspect(arr).attention, ins.attention)
    np.testing.assert_allclose(m.inspect(arr / 255.0).attention, ins.attention, atol=1e-6)
    # from the saved folder (model + processor)
    again = inspector.load(str(folder)).inspect(image)
    np.testing.assert_allclose(again.attention, ins.attention, atol=1e-6)
    assert hooks == {n: dict(x._forward_hooks) for n, x in m.model.named_modules()}


def test_frames_metrics_rollout_and_views(vision):
    m = vision["vit"][0]
    ins = m.inspect(make_image(), layers=[1], heads=[0, 2])
    assert ins.attention.shape == (1, 2, 1 + GRID * GRID, 1 + GRID * GRID)
    frame = ins.frame()
    assert set(frame["key_token"].astype(str)) >= {"[CLS]", "patch 3,3"}
    np.testing.assert_allclose(
        frame.groupby(["layer", "head", "query_pos"]).weight.sum(), 1, atol=1e-5
    )
    metrics = ins.heads.metrics()
    assert metrics.index.names == ["layer", "head"] and len(metrics) == 2
    full = m.inspect(make_image())
    roll = full.explain.rollout()
    np.testing.assert_allclose(roll.groupby("query_pos").weight.sum(), 1, atol=1e-5)
    page = parse(full.views.head().html)
    assert any(tag == "script" for tag, _ in page.tags)


@pytest.mark.parametrize("model_type", ["vit", "siglip_vision_model"])
def test_report_lays_every_head_and_rollout_over_the_image(vision, model_type, tmp_path):
    from inspector.explain.flow import rollout
    from inspector.render.sections.image import HEAT_ALPHA, colormap, patch_maps

    m = vision[model_type][0]
    ins = m.inspect(make_image())
    html = ins.report(tmp_path / "image.html").html
    assert "Attention on the image" in html
    assert not re.search(r"""(src|href)=["']https?:""", html)  # nothing from the network
    page = parse(html)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    urls = [a["src"] for a in images if str(a.get("src", "")).startswith("data:image/png")]
    n_layers, n_heads = ins.attention.shape[:2]
    assert len(urls) == 2 + n_layers * n_heads  # input, rollout, one map per head
    shown, rolled = _decode(urls[0]), _decode(urls[1])
    assert shown.shape == rolled.shape and shown.shape[2] == 3 and max(shown.shape[:2]) == 320
    assert not np.array_equal(shown, rolled)
    heat = _decode(urls[2])  # layer 0, head 0: one RGBA pixel per patch
    assert heat.shape == (GRID, GRID, 4)
    maps = patch_maps(ins.stack, 1 if model_type == "vit" else 0, (GRID, GRID))
    brightness = heat[..., :3].astype(int).sum(-1)
    assert np.unravel_index(brightness.argmax(), brightness.shape) == np.unravel_index(
        maps[0, 0].argmax(), maps[0, 0].shape
    )
    # the rollout overlay: over each patch, the image blended with that patch's colour
    roll = rollout(ins.stack)
    line = np.asarray(roll[0, 1:] if model_type == "vit" else roll.mean(0))
    colours = colormap((line / line.max()).reshape(GRID, GRID)).astype(float)
    block = shown.shape[0] // GRID
    heat = (rolled.astype(float) - shown.astype(float) * (1 - HEAT_ALPHA)) / HEAT_ALPHA
    tiles = heat.reshape(GRID, block, GRID, block, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(tiles, colours, atol=2.0)


def test_wrong_inputs_say_what_to_do(vision, tiny):
    m = vision["vit"][0]
    with pytest.raises(InputError, match="PIL image"):
        m.inspect("a text")
    with pytest.raises(InputError, match="not for images"):
        m.inspect(make_image(), target="x")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        m.inspect(np.full((8, 8, 3), 2.0))
    with pytest.raises(UnsupportedModelError, match="encoder"):
        m.generate("x")
    with pytest.raises(InputError, match="reads text"):
        tiny["bert"].inspect(make_image())


def _grey(image: Any) -> np.ndarray:
    """A generated picture as 8-bit grey levels (0..255, every level the model will see)."""
    return np.asarray(image.convert("L"))


#: PIL modes Pillow converts itself; each must give the capture of ``image.convert("RGB")``.
CONVERTED_MODES = ["1", "L", "P", "PA", "LA", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV"]


@pytest.mark.parametrize("mode", CONVERTED_MODES)
def test_every_colour_mode_reaches_the_model_as_pillow_converts_it(vision, mode):
    m = vision["vit"][0]
    image = make_image().convert(mode)
    want = m.inspect(image.convert("RGB")).attention
    np.testing.assert_array_equal(m.inspect(image).attention, want)


def test_16_bit_and_float_images_are_scaled_like_arrays(vision):
    """``I;16`` holding ``257 * v`` and ``F`` holding ``v / 255`` are the 8-bit image ``v``
    (before: 2 grey levels and black), as the same data given as arrays is."""
    from PIL import Image

    m = vision["vit"][0]
    grey = _grey(make_image())
    want = m.inspect(grey).attention
    sixteen = grey.astype(np.uint16) * 257
    images = {
        "I;16": Image.fromarray(sixteen),
        "I;16B": Image.fromarray(sixteen).convert("I").convert("I;16B"),
        "I (16-bit values)": Image.fromarray(sixteen.astype(np.int32)),
        "I (8-bit values)": Image.fromarray(grey.astype(np.int32)),
        "F": Image.fromarray((grey / 255.0).astype(np.float32)),
        "uint16 array": sixteen,
        "bool array": grey > 127,
    }
    assert images["I;16"].mode == "I;16" and images["I (16-bit values)"].mode == "I"
    assert images["F"].mode == "F" and images["I;16B"].mode == "I;16B"
    for name, image in images.items():
        got = m.inspect(image)
        if name == "bool array":  # as black and white 8-bit
            black_white = m.inspect(((grey > 127) * 255).astype(np.uint8)).attention
            np.testing.assert_array_equal(got.attention, black_white)
            continue
        np.testing.assert_allclose(got.attention, want, atol=1e-6, err_msg=name)
        assert len(np.unique(got.capture.image)) > 100, name  # the grey levels survive


def test_images_that_cannot_be_read_faithfully_are_refused(vision):
    from PIL import Image

    m = vision["vit"][0]
    grey = _grey(make_image())
    cases = {
        "mode 'La'": Image.new("La", (32, 32)),
        r"\[0, 1\]": Image.fromarray(grey.astype(np.float32)),  # F in 0..255, not [0, 1]
        "NaN": Image.fromarray(np.full((32, 32), np.nan, dtype=np.float32)),
        "from -5 to": Image.fromarray(np.full((32, 32), -5, dtype=np.int32)),  # mode I < 0
        "up to|0..65535": Image.fromarray(np.full((32, 32), 70000, dtype=np.int32)),
        "0..255": np.full((32, 32), 300, dtype=np.int64),  # not uint16: no 16-bit scale assumed
        "uint8, uint16 or float": np.full((32, 32), 1 + 2j),
    }
    for phrase, image in cases.items():
        with pytest.raises(InputError, match=phrase):
            m.inspect(image)


def test_a_huge_image_is_downscaled_before_the_processor_sees_it(vision, monkeypatch):
    """12000 x 12000 pixels: the processor gets at most MAX_PIXELS (and a warning says so); the
    whole call's numpy allocations stay far below one float copy of the image (1.7 GB)."""
    import tracemalloc

    from inspector.capture import image as image_module

    m, _, processor = vision["vit"]
    seen = []
    real = type(processor).__call__

    def spy(self, images=None, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(images.size)
        return real(self, images=images, **kwargs)

    monkeypatch.setattr(type(processor), "__call__", spy)
    side = 12000
    arr = np.empty((side, side), dtype=np.uint8)
    arr[:] = (np.arange(side, dtype=np.uint32) * 255 // side).astype(np.uint8)[None, :]
    tracemalloc.start()
    try:
        with pytest.warns(InspectorWarning, match="12000x12000 pixels; it was downscaled to"):
            ins = m.inspect(arr)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (width, height) = seen[-1]
    assert width * height <= image_module.MAX_PIXELS and width == height == side // 3
    assert peak < 400e6, peak
    assert "downscaled to 4000x4000" in ins.metadata["text"]
    # the same picture, small: a gradient from left to right survives the reduction
    shown = ins.capture.image.astype(int)
    assert (np.diff(shown[0, :, 0]) >= 0).all() and shown[0, -1, 0] > shown[0, 0, 0] + 200
    # PIL images too (resized by Pillow before converting)
    from PIL import Image

    monkeypatch.setattr(image_module, "MAX_PIXELS", 64 * 64)
    with pytest.warns(InspectorWarning, match="300x200 pixels; it was downscaled to 75x50"):
        m.inspect(make_image(300, 200))
    assert seen[-1] == (75, 50)
    small = Image.fromarray(_grey(make_image(60, 40)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.inspect(small)  # within the limit: untouched, no warning
    assert seen[-1] == (60, 40)


#: The attention output projections (the tests' own statement), ``(batch, seq, heads * d)`` in.
VISION_OUTPUTS = {
    "vit": r"layers\.\d+\.attention\.o_proj$",
    "deit": r"layers\.\d+\.attention\.o_proj$",
    "clip_vision_model": r"layers\.\d+\.self_attn\.out_proj$",
    "siglip_vision_model": r"layers\.\d+\.self_attn\.out_proj$",
}


@pytest.mark.parametrize("model_type", list(VISION_SPECS))
def test_norms_importance_and_what_mattered_on_an_image(vision, model_type):
    """Norm vectors give each head's real output; ablation equals zeroing the head's slice of
    the output projection's input with the test's own hook; "what mattered" agrees."""
    import re

    from inspector.explain import attention_norms

    m = vision[model_type][0]
    ins = m.inspect(make_image())
    pattern = re.compile(VISION_OUTPUTS[model_type])
    outs = [mod for name, mod in m.model.named_modules() if pattern.search(name)]
    n_l, n_h = ins.attention.shape[:2]
    assert len(outs) == n_l
    pixels = vision[model_type][2](images=make_image(), return_tensors="pt")["pixel_values"]
    z: list[torch.Tensor] = []
    handles = [o.register_forward_pre_hook(lambda _m, a: z.append(a[0][0].double())) for o in outs]
    with torch.no_grad():
        m.model(pixel_values=pixels)
    for h in handles:
        h.remove()
    norms = attention_norms(m.bundle, ins.stack, capture=ins.capture, keep_vectors=True)
    for li, out in enumerate(outs):
        w_o = out.weight.detach().double().T
        d = w_o.shape[0] // n_h
        for h in range(n_h):
            real = (z[li][:, h * d : (h + 1) * d] @ w_o[h * d : (h + 1) * d]).numpy()
            moved = ins.attention[li, h].astype(np.float64) @ norms.vectors[li, h]
            np.testing.assert_allclose(moved, real, atol=2e-4 * np.abs(real).max())

    def logit(out: Any) -> Any:
        hidden = out.logits if getattr(out, "logits", None) is not None else out.pooler_output
        return hidden[:, 1].float()

    ablation = ins.explain.ablation(target=logit, batch_size=4)
    with torch.no_grad():
        clean = float(logit(m.model(pixel_values=pixels))[0])
        for li, out in enumerate(outs):
            for h in range(n_h):

                def zero(_m: Any, a: Any, h: int = h) -> Any:
                    x = a[0].clone()
                    d = x.shape[-1] // n_h
                    x[..., h * d : (h + 1) * d] = 0
                    return (x, *a[1:])

                handle = out.register_forward_pre_hook(zero)
                value = float(logit(m.model(pixel_values=pixels))[0])
                handle.remove()
                assert ablation.loc[(li, h), "delta"] == pytest.approx(value - clean, abs=2e-5)
    expl = ins.explain(target=logit, top=2)
    np.testing.assert_allclose(expl.importance["delta"], ablation["delta"], atol=1e-6)
