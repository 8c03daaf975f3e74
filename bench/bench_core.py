"""Core: inspect() and the long frame against a bare eager forward pass, on MiniLM.

Ratios, each measured in this run: ``inspect()`` time / bare forward time (goal <= 1.10 at 512
tokens), full frame build time / bare forward time (goal <= 1.0 at 512), and
``frame().memory_usage(deep=True)`` / raw float32 attention bytes (goal <= 2.6).
The bare forward is the same model call with ``output_attentions=True`` on the same ids.
Timings take the minimum over interleaved repeats, which is robust to a busy machine.
"""

from __future__ import annotations

from bench._timing import best_time as _best

SENTENCE = (
    "The quick brown fox jumps over the lazy dog while researchers inspect attention heads, "
    "separators, punctuation and unbelievably long sub-word pieces in transformer models. "
)


def _text_of(tokenizer, n_tokens: int) -> str:
    words = (SENTENCE * 200).split()
    lo, hi = 1, len(words)
    while lo < hi:  # longest prefix of words that tokenizes to <= n_tokens
        mid = (lo + hi + 1) // 2
        if len(tokenizer(" ".join(words[:mid]))["input_ids"]) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def main(model: str = "minilm", sizes: tuple[int, ...] = (32, 128, 512), repeats: int = 7) -> str:
    import torch

    import inspector

    torch.manual_seed(0)
    m = inspector.load(model)
    rows = [
        "| tokens | bare forward (s) | inspect / forward | frame build / forward | "
        "frame bytes / raw bytes | frame rows |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        text = _text_of(m.tokenizer, n)
        ids = torch.tensor([m.tokenizer(text)["input_ids"]])
        mask = torch.ones_like(ids)

        def bare(ids: torch.Tensor = ids, mask: torch.Tensor = mask) -> object:
            with torch.inference_mode():
                return m.model(input_ids=ids, attention_mask=mask, output_attentions=True)

        bare()  # warm up
        t_fwd, t_ins = float("inf"), float("inf")
        for _ in range(repeats if n < 512 else max(1, repeats - 2)):  # interleaved: drift hits both
            t_fwd = min(t_fwd, _best(bare, 1))
            t_ins = min(t_ins, _best(lambda text=text: m.inspect(text), 1))
        ins = m.inspect(text)
        t_frame = _best(ins.frame, min(3, repeats))
        frame = ins.frame()
        mem = frame.memory_usage(deep=True).sum() / ins.attention.nbytes
        rows.append(
            f"| {len(ins.tokens)} | {t_fwd:.4f} | {t_ins / t_fwd:.2f} | {t_frame / t_fwd:.2f} | "
            f"{mem:.2f} | {len(frame):,} |"
        )
        del frame, ins
    return "\n".join(rows)


def smoke(models: dict[str, str]) -> str:
    """The same table on a tiny encoder at a tiny size, one repeat (the suite runs it)."""
    return main(models["encoder"], sizes=(8, 16), repeats=1)


if __name__ == "__main__":
    print(main())
