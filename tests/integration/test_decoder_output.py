"""Decoder output a person can read: chat templates by default, readable tokens in frames.

Runs on the tiny LLaMA-style GGUF (it has a chat template) and the tiny GPT-2 (it has none).
"""

from __future__ import annotations

import numpy as np
import pytest

import inspector
from inspector.cli import main

PROMPT = "The cat sat"


@pytest.fixture(scope="module")
def chat_model(tiny_gguf):
    return inspector.load(str(tiny_gguf))


def test_generate_uses_the_chat_template_when_the_model_has_one(chat_model):
    ins = chat_model.generate(PROMPT, max_new_tokens=3)
    assert ins.metadata["chat"] is True
    assert ins.metadata["messages"] == [{"role": "user", "content": PROMPT}]
    prompt = "".join(ins.tokens[: ins.generation.prompt_length])
    assert prompt.startswith("<|endoftext|>user") and prompt.endswith("assistant\u010a")
    same = chat_model.generate(messages=[{"role": "user", "content": PROMPT}], max_new_tokens=3)
    assert same.tokens == ins.tokens  # chat=None on a prompt == messages=[one user turn]
    np.testing.assert_array_equal(same.attention, ins.attention)


def test_chat_false_sends_the_raw_prompt(chat_model):
    raw = chat_model.generate(PROMPT, chat=False, max_new_tokens=3)
    assert raw.metadata["chat"] is False and "messages" not in raw.metadata
    assert "".join(raw.tokens[: raw.generation.prompt_length]).replace("\u0120", " ") == PROMPT


def test_models_without_a_template_get_the_raw_prompt(tiny):
    ins = tiny["gpt2"].generate(PROMPT, max_new_tokens=2)
    assert ins.metadata["chat"] is False
    assert tiny["gpt2"].generate(PROMPT, chat=False, max_new_tokens=2).tokens == ins.tokens
    t5 = tiny["t5"].generate(PROMPT, max_new_tokens=2)  # encoder-decoder: never a chat
    assert t5.metadata["chat"] is False


def test_readable_tokens_keep_the_raw_ones(tiny):
    ins = tiny["gpt2"].inspect("The cat sat on the mat.\nIt slept.")
    assert "\u0120the" in ins.tokens and "\u010a" in ins.tokens  # raw byte-level marks
    readable = ins.readable_tokens
    assert readable[ins.tokens.index("\u0120the")] == "␣the"
    assert readable[ins.tokens.index("\u010a")] == "⏎"
    tokens = ins.tokens_frame()
    assert list(tokens["token"]) == ins.tokens and list(tokens["readable"]) == readable


def test_readable_frame_has_the_same_size_and_rows(tiny):
    ins = tiny["gpt2"].inspect("The cat sat on the mat.")
    raw, shown = ins.frame(), ins.frame(readable=True)
    assert shown.memory_usage(deep=False).sum() == raw.memory_usage(deep=False).sum()
    for col in ("query_token", "key_token"):
        np.testing.assert_array_equal(shown[col].cat.codes, raw[col].cat.codes)
        assert "␣the" in set(shown[col]) and "\u0120the" in set(raw[col])
    np.testing.assert_array_equal(shown["weight"], raw["weight"])
    assert raw.attrs["inspector"]["token_names"] == "raw"
    assert shown.attrs["inspector"]["token_names"] == "readable"
    assert raw.attrs["inspector"]["tokens"] == shown.attrs["inspector"]["tokens"]  # raw kept


def test_generation_steps_readable(tiny):
    ins = tiny["gpt2"].generate(PROMPT, max_new_tokens=3)
    raw, shown = ins.generation.steps(top_k=1), ins.generation.steps(top_k=1, readable=True)
    pos = raw["position"].to_numpy()
    assert list(shown["token"]) == [ins.readable_tokens[p] for p in pos]
    assert list(raw["token"]) == [ins.tokens[p] for p in pos]


def test_model_readable_tokens(tiny):
    assert tiny["gpt2"].readable_tokens(["\u0120cat", "\u010a", "<|endoftext|>"]) == [
        "␣cat",
        "⏎",
        "<|endoftext|>",
    ]


def test_cli_generate_chat_by_default_and_the_answer_as_text(tiny_gguf, tmp_path, capsys):
    out = tmp_path / "g.parquet"
    base = ["generate", str(tiny_gguf), PROMPT, "--max-new-tokens", "4", "-o", str(out)]
    assert main(base) == 0
    line = capsys.readouterr().out.strip()
    assert "prompt tokens (chat template) + 4 generated tokens" in line, line
    assert "\u0120" not in line and "\u010a" not in line  # decoded text, not raw tokens
    assert main([*base, "--no-chat"]) == 0
    line = capsys.readouterr().out.strip()
    assert "(chat template)" not in line and "the 4-token limit" in line


def test_explanation_and_comparison_reprs_use_layer_dot_head(tiny):
    ins = tiny["gpt2"].inspect("The cat sat on the mat.")
    text = repr(ins.explain(method="gradient", top=2))
    assert "top heads " in text and "L0H" not in text and len(text) < 300
    other = tiny["gpt2"].inspect("The dog sat on the mat.")
    assert "most changed head " in repr(inspector.compare(ins, other))
