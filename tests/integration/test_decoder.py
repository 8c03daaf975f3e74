"""Hooked capture of kept layers/heads, float16 storage, GQA metadata, GGUF loading, SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest

import inspector
from inspector.capture.hooks import attention_sites
from inspector.capture.types import kv_head_map
from inspector.errors import InputError

TEXT = "The cat sat on the mat because it was tired."


def _inspect(m, **kw):
    if m.bundle.architecture == "encoder-decoder":
        kw.setdefault("target", "A dog barked.")
    return m.inspect(TEXT, **kw)


def _hook_count(model) -> int:
    return sum(len(mod._forward_hooks) for mod in model.modules())


def test_attention_sites_cover_every_layer(tiny_model):
    sites = attention_sites(tiny_model.model)
    kinds = (
        ("encoder", "decoder", "cross")
        if tiny_model.bundle.architecture == ("encoder-decoder")
        else ("self",)
    )
    assert set(sites) == set(kinds)
    for kind in kinds:
        assert len(sites[kind]) == tiny_model.bundle.n_layers


def test_kept_slices_equal_full_capture_exactly(tiny_model):
    full = _inspect(tiny_model)
    part = _inspect(tiny_model, layers=[1], heads=[0])
    for kind, stack in part.capture.stacks.items():
        assert stack.layers == (1,) and stack.heads == (0,)
        np.testing.assert_array_equal(stack.weights, full.capture.stacks[kind].weights[1:2, 0:1])


def test_hooked_capture_equals_output_attentions_path(tiny_model, monkeypatch):
    hooked = _inspect(tiny_model)
    monkeypatch.setattr("inspector.capture.run.bundle_sites", lambda bundle: {})
    fallback = _inspect(tiny_model)
    for kind, stack in hooked.capture.stacks.items():
        np.testing.assert_array_equal(stack.weights, fallback.capture.stacks[kind].weights)


def test_hooks_removed_after_capture_and_after_a_failing_forward(tiny_model):
    model = tiny_model.model
    before = _hook_count(model)
    _inspect(tiny_model, layers=[0])
    assert _hook_count(model) == before

    last = attention_sites(model)[
        "decoder" if tiny_model.bundle.architecture == ("encoder-decoder") else "self"
    ][-1].module

    def boom(module, args):
        raise RuntimeError("forward failed on purpose")

    handle = last.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="on purpose"):
            _inspect(tiny_model)
    finally:
        handle.remove()
    assert _hook_count(model) == before
    _inspect(tiny_model)  # still works afterwards


def test_float16_storage(tiny):
    m = tiny["gpt2"]
    full = m.inspect(TEXT)
    half = m.inspect(TEXT, dtype="float16")
    assert half.attention.dtype == np.float16
    assert half.capture.metadata["storage_dtype"] == "float16"
    np.testing.assert_allclose(half.attention.astype(np.float32), full.attention, atol=1e-3)
    assert half.frame()["weight"].size == full.frame()["weight"].size
    with pytest.raises(InputError, match="float16"):
        m.inspect(TEXT, dtype="int8")


def test_kv_head_map_and_groups(tiny):
    assert kv_head_map(9, 3) == (0, 0, 0, 1, 1, 1, 2, 2, 2)
    assert kv_head_map(4, 1) == (0, 0, 0, 0)
    assert kv_head_map(2, 2) == (0, 1)
    ins = tiny["gpt2"].inspect(TEXT)
    assert ins.metadata["kv_heads"] == [0, 1]
    assert ins.heads.kv_groups == {0: (0,), 1: (1,)}
    frame = ins.heads.with_kv_head(ins.frame())
    assert list(frame.columns[:3]) == ["layer", "head", "kv_head"]
    assert (frame["kv_head"] == frame["head"]).all()


def test_messages_need_a_chat_template(tiny):
    with pytest.raises(InputError, match="chat template"):
        tiny["gpt2"].inspect(messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(InputError, match="role"):
        tiny["gpt2"].inspect(messages=[{"content": "Hi"}])
    with pytest.raises(InputError, match="not both"):
        tiny["gpt2"].inspect("text", messages=[{"role": "user", "content": "Hi"}])


def test_messages_apply_the_chat_template(tiny):
    import copy

    m = tiny["gpt2"]
    tok = copy.deepcopy(m.tokenizer)
    tok.chat_template = (
        "{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|endoftext|>assistant:{% endif %}"
    )
    chat = inspector.load((m.model, tok))
    ins = chat.inspect(messages=[{"role": "user", "content": "The cat sat."}])
    assert ins.tokens[0] == "<|endoftext|>" and ins.stack.query.special[0]
    assert ins.metadata["messages"] == [{"role": "user", "content": "The cat sat."}]
    assert ins.metadata["text"].startswith("<|endoftext|>user: The cat sat.")
