"""Head analysis: per-head metrics and the full head-distance matrix against the forward pass.

Ratios, each measured in this run on MiniLM (6 layers x 12 heads): the time of
:func:`inspector.analysis.metrics.head_metrics` (all registered metrics + sink) and of
:func:`inspector.analysis.distances.head_distances` (JS, all 72 x 72 pairs) over the time of the
``inspect()`` forward passes that produced the attention. Goals: metrics <= 0.2x, distances <= 1x.
One input at 128 tokens (minimum over repeats, robust to a busy machine), and 200 UD-EWT sentences
(totals over the run).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench._timing import best_time as _best

SENTENCE = (
    "The quick brown fox jumps over the lazy dog while researchers inspect attention heads, "
    "separators, punctuation and unbelievably long sub-word pieces in transformer models. "
)
TREEBANK = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "ud-english-ewt"
    / "en_ewt-ud-dev.conllu"
)


def _sentences(n: int) -> list[str]:
    if TREEBANK.exists():
        texts = [
            line[len("# text = ") :].strip()
            for line in TREEBANK.read_text(encoding="utf-8").splitlines()
            if line.startswith("# text = ")
        ]
        texts = [t for t in texts if len(t.split()) >= 3]
    else:  # pragma: no cover - treebank missing: synthetic sentences
        texts = [" ".join(SENTENCE.split()[i % 10 : i % 10 + 12]) for i in range(n)]
    return texts[:n]


def main(
    model: str = "minilm", n_tokens: int = 128, n_sentences: int = 200, repeats: int = 5
) -> str:
    import inspector
    from inspector.analysis import distances, metrics

    m = inspector.load(model)
    text = (SENTENCE * 20).strip()
    ins = m.inspect(text, truncation=True, max_length=n_tokens)
    stack = ins.stack

    def fwd() -> object:
        return m.inspect(text, truncation=True, max_length=n_tokens)

    t_fwd = _best(fwd, repeats)
    t_met = _best(lambda: metrics.head_metrics(stack), repeats)
    t_js = _best(lambda: distances.head_distances(stack, "js"), min(3, repeats))
    t_cos = _best(lambda: distances.head_distances(stack, "cosine"), min(3, repeats))

    texts = _sentences(n_sentences)
    fwd_total = met_total = js_total = 0.0
    n_tokens = 0
    for sentence in texts:
        t = time.perf_counter()
        s = m.inspect(sentence, truncation=True).stack
        fwd_total += time.perf_counter() - t
        n_tokens += len(s.query)
        t = time.perf_counter()
        metrics.head_metrics(s)
        met_total += time.perf_counter() - t
        t = time.perf_counter()
        distances.head_distances(s, "js")
        js_total += time.perf_counter() - t

    rows = [
        (f"head metrics, 1 input x {len(stack.query)} tokens", t_met, t_fwd, 0.2),
        (f"head distances (JS), 1 input x {len(stack.query)} tokens", t_js, t_fwd, 1.0),
        (f"head distances (cosine), 1 input x {len(stack.query)} tokens", t_cos, t_fwd, 1.0),
        (f"head metrics, {len(texts)} sentences", met_total, fwd_total, 0.2),
        (f"head distances (JS), {len(texts)} sentences", js_total, fwd_total, 1.0),
    ]
    out = [
        f"{m.name} {len(stack.layers)} layers x {len(stack.heads)} heads; "
        f"{len(texts)} sentences = {n_tokens:,} tokens",
        "",
        "| measurement | time (s) | forward (s) | ratio to forward | goal | ok |",
        "|---|---:|---:|---:|---:|:-:|",
    ]
    for name, t, base, goal in rows:
        ratio = t / base
        out.append(
            f"| {name} | {t:.4f} | {base:.4f} | {ratio:.3f}x | <= {goal}x | "
            f"{'yes' if ratio <= goal else 'no'} |"
        )
    return "\n".join(out)


def smoke(models: dict[str, str]) -> str:
    """The same table on a tiny encoder: 16 tokens, 3 sentences, one repeat."""
    return main(models["encoder"], n_tokens=16, n_sentences=3, repeats=1)


if __name__ == "__main__":
    print(main())
