"""Decoder: SmolLM2-135M-Instruct at 128 and 512 tokens: speed and memory of hooked capture.

Ratios, each measured in this run:

- ``inspect()`` / bare eager forward (goal <= 1.10). The bare forward is the same model call
  (eager attention, ``logits_to_keep=1``, no ``output_attentions``) on the same ids.
- peak RSS added by a full capture vs a 3-layer capture (``layers=[0, 15, 29]``), each in a
  fresh subprocess that loads the model from a state-dict copy and polls its RSS with psutil
  every millisecond while the capture runs; the bare forward's own peak is shown for context.
- ``generate(max_new_tokens=32)`` with capture / plain ``model.generate`` with eager attention
  (goal <= 1.3), both greedy with ``min_new_tokens=32`` so both produce 32 tokens.

Timings take the minimum over interleaved repeats, which is robust to a busy machine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench._timing import best_time as _best
from bench._timing import checked, in_process, run_script

SENTENCE = (
    "The quick brown fox jumps over the lazy dog while researchers inspect attention heads, "
    "separators, punctuation and unbelievably long sub-word pieces in transformer models. "
)
LAYERS = [0, 15, 29]

_CHILD = r"""
import json, os, sys, threading, time
os.environ["HF_HUB_OFFLINE"] = "1"
import psutil, torch
import inspector
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
folder, n_tokens, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
model = AutoModelForCausalLM.from_config(
    AutoConfig.from_pretrained(folder), attn_implementation="eager"
)
model.load_state_dict(torch.load(os.path.join(folder, "weights.pt")), strict=False)
m = inspector.load((model, AutoTokenizer.from_pretrained(folder)))
text = sys.argv[4]
ins = m.inspect(text, truncation=True, max_length=n_tokens, layers=[0])  # warm-up
ids = torch.tensor(ins.token_ids)[None]
proc = psutil.Process()
peak = [0]
done = threading.Event()
def poll():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.001)
before = proc.memory_info().rss
thread = threading.Thread(target=poll)
thread.start()
if mode == "bare":
    with torch.inference_mode():
        m.model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1)
    kept = 0
else:
    layers = None if mode == "full" else json.loads(sys.argv[5])
    ins = m.inspect(text, truncation=True, max_length=n_tokens, layers=layers)
    kept = ins.attention.nbytes
done.set()
thread.join()
print(json.dumps({"peak": max(peak[0], proc.memory_info().rss) - before, "kept": kept}))
"""


def _text_of(tokenizer, n_tokens: int) -> str:
    """A text of at least ``n_tokens`` tokens (capture truncates it to exactly that)."""
    text = SENTENCE
    while len(tokenizer(text)["input_ids"]) < n_tokens:
        text += SENTENCE
    return text


def _interleaved(
    a: Callable[[], object], b: Callable[[], object], repeats: int
) -> tuple[float, float]:
    ta, tb = float("inf"), float("inf")
    a(), b()  # warm-up
    for _ in range(repeats):
        ta = min(ta, _best(a, 1))
        tb = min(tb, _best(b, 1))
    return ta, tb


def _memory(
    folder: str, n_tokens: int, mode: str, text: str, layers: list[int] = LAYERS
) -> dict[str, int]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    args = [folder, str(n_tokens), mode, text, json.dumps(layers)]
    return json.loads(checked(run_script(_CHILD, args, env=env)).strip().splitlines()[-1])


def main(
    model: str = "smollm2",
    sizes: tuple[int, ...] = (128, 512),
    layers: list[int] = LAYERS,
    repeats: int = 5,
    new_tokens: int = 32,
) -> str:
    import torch

    import inspector

    m = inspector.load(model)
    tok = m.tokenizer
    rows = [
        "| measure | " + " | ".join(f"{n} tokens" for n in sizes) + " | goal |",
        "|---|" + "---|" * len(sizes) + "---|",
    ]
    speed, mem_full, mem_part, mem_bare = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        # A GGUF-loaded model cannot save_pretrained(); a state dict loads in a second instead.
        torch.save(m.model.state_dict(), os.path.join(folder, "weights.pt"))
        m.model.config.save_pretrained(folder)
        tok.save_pretrained(folder)
        for n in sizes:
            text = _text_of(tok, n)
            ins = m.inspect(text, truncation=True, max_length=n, layers=[0])
            assert len(ins.tokens) == n
            ids = torch.tensor(ins.token_ids)[None]

            def bare(ids: torch.Tensor = ids) -> None:
                with torch.inference_mode():
                    m.model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1)

            def captured(text: str = text, n: int = n) -> None:
                m.inspect(text, truncation=True, max_length=n)

            t_cap, t_bare = _interleaved(captured, bare, repeats if n == sizes[0] else repeats - 2)
            speed.append((t_cap, t_bare))
            mem_full.append(_memory(folder, n, "full", text, layers))
            mem_part.append(_memory(folder, n, "part", text, layers))
            mem_bare.append(_memory(folder, n, "bare", text, layers))

    mib = 2**20
    rows.append(
        "| inspect() / bare eager forward | "
        + " | ".join(f"{c / b:.2f} ({c:.2f} s / {b:.2f} s)" for c, b in speed)
        + " | <= 1.10 |"
    )
    rows.append(
        f"| kept array, full capture ({m.bundle.n_layers} x {m.bundle.n_heads} heads) | "
        + " | ".join(f"{r['kept'] / mib:.1f} MiB" for r in mem_full)
        + " | |"
    )
    rows.append(
        f"| kept array, layers={layers} | "
        + " | ".join(f"{r['kept'] / mib:.1f} MiB" for r in mem_part)
        + " | 1/10 |"
    )
    rows.append(
        "| peak RSS added: full capture | "
        + " | ".join(f"{r['peak'] / mib:.0f} MiB" for r in mem_full)
        + " | |"
    )
    rows.append(
        f"| peak RSS added: {len(layers)}-layer capture | "
        + " | ".join(f"{r['peak'] / mib:.0f} MiB" for r in mem_part)
        + " | about 1/10 of full |"
    )
    rows.append(
        "| peak RSS added: bare forward (context) | "
        + " | ".join(f"{r['peak'] / mib:.0f} MiB" for r in mem_bare)
        + " | |"
    )

    # Generation: new tokens from a chat prompt, with capture vs plain eager generate().
    chat = [{"role": "user", "content": "Write one sentence about the sea."}]
    prompt_ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    if not isinstance(prompt_ids, torch.Tensor):
        prompt_ids = prompt_ids["input_ids"]
    kw = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}

    def plain() -> None:
        with torch.inference_mode():
            m.model.generate(input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids), **kw)

    def recorded() -> None:
        m.generate(
            messages=chat,
            max_new_tokens=new_tokens,
            do_sample=False,
            generation_options={"min_new_tokens": new_tokens},
        )

    t_gen, t_plain = _interleaved(recorded, plain, max(1, repeats - 2))
    n_prompt = prompt_ids.shape[-1]
    rows.append(
        f"| generate(max_new_tokens={new_tokens}) with capture / plain eager generate "
        f"({n_prompt}-token prompt) | {t_gen / t_plain:.2f} ({t_gen:.2f} s / {t_plain:.2f} s) | "
        + "| " * (len(sizes) - 1)
        + "<= 1.3 |"
    )
    return "\n".join(rows)


def smoke(models: dict[str, str]) -> str:
    """The same table on a tiny LLaMA-style GGUF model at 16 tokens, 4 new tokens, the memory
    runs in this process."""
    with in_process():
        return main(models["decoder"], sizes=(16,), layers=[0, 1], repeats=1, new_tokens=4)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(main())
