"""Report size, build time and draw time on MiniLM against bertviz's own head_view.

For one sentence at about 32, 128 and 512 tokens: our report's size / bertviz
``head_view(html_action="return")`` HTML size (goal <= 1/20 at 128 tokens; 512-token report
< 40 MB), report build time / bertviz build time (goal <= 1/5), and the time until the report has
drawn in headless Chromium (goal < 3 s at 128 tokens, < 10 s at every length; "drawn" = data
decoded, both bertviz views, the head grid, figures and tables done: views over
``inspector.render.budget.VIEW_LINES`` lines draw a window of tokens, so nothing waits for a
click).

Both builds start from an existing capture (the model runs once, outside the timing) and are
warm: each side builds once untimed, then the median of ``REPEATS`` timed builds is reported.
Import costs (first import of ``inspector.render`` / ``bertviz``) are measured once and printed
under the table, not counted in the build times.

A decoder row: SmolLM2-135M at 1,024 tokens (past 2^25 weights, so the report is the scan page),
the report as ``inspector report`` builds it (``inspect()`` then ``report()``) against the bare
eager forward of the same ids (goal <= 10x), interleaved, best of ``DECODER_REPEATS`` each.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._timing import checked, draw_seconds, in_process, run_script

#: Timed builds per side and size (after one untimed warm-up build).
REPEATS = 3
#: Interleaved repeats of the decoder row (bare forward, inspect, report): the best of each.
DECODER_REPEATS = 3
DECODER_TOKENS = 1024

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "the",
    "mat",
    "because",
    "it",
    "was",
    "tired",
    "and",
    "the",
    "dog",
    "watched",
    "it",
    "from",
    "the",
    "old",
    "wooden",
    "door",
    "while",
    "rain",
    "fell",
    "softly",
    "over",
    "the",
    "quiet",
    "town",
]


def _sentence(model: Any, n_tokens: int) -> str:
    words: list[str] = []
    while True:
        words.append(WORDS[len(words) % len(WORDS)])
        if len(model.tokenizer(" ".join(words))["input_ids"]) >= n_tokens:
            return " ".join(words[:-1]) + "."


def _warm_median(build: Callable[[], Any], repeats: int = REPEATS) -> tuple[Any, float]:
    """Build once untimed, then return the last result and the median of ``repeats`` timings."""
    result = build()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = build()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def _bertviz_build(ins: Any) -> Callable[[], str]:
    """bertviz's head view from the same capture: torch tensors per layer, then its HTML."""
    import torch
    from bertviz import head_view

    def build() -> str:
        attention = [
            torch.from_numpy(ins.attention[i][None].copy()) for i in range(len(ins.stack.layers))
        ]
        return str(head_view(attention, ins.tokens, html_action="return").data)

    return build


def _import_seconds(module: str) -> float:
    """Seconds to import ``module`` in a fresh interpreter (its import cost, reported apart)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(checked(run_script(code, [])).strip().splitlines()[-1])


def decoder_rows() -> list[str]:
    """SmolLM2 at 1,024 tokens: report build (inspect + report) / bare eager forward."""
    import warnings

    import torch

    import inspector
    from inspector.render.budget import PageBudgetWarning

    model = inspector.load("smollm2")
    text = _sentence(model, DECODER_TOKENS)
    ids = torch.tensor(model.inspect(text, layers=[0]).token_ids)[None]

    def bare() -> None:
        with torch.inference_mode():
            model.model(input_ids=ids, attention_mask=torch.ones_like(ids))

    bare()  # warm-up
    best = {"forward": float("inf"), "inspect": float("inf"), "report": float("inf")}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", PageBudgetWarning)  # the scan page, said on purpose
        for _ in range(DECODER_REPEATS):
            start = time.perf_counter()
            bare()
            best["forward"] = min(best["forward"], time.perf_counter() - start)
            start = time.perf_counter()
            ins = model.inspect(text)
            best["inspect"] = min(best["inspect"], time.perf_counter() - start)
            start = time.perf_counter()
            report = ins.report(Path(tmp) / "decoder.html")
            best["report"] = min(best["report"], time.perf_counter() - start)
            full = "head-view" in [s.id for s in report.sections]
            kind = "full report" if full else "scan page"
            del ins, report
    build = best["inspect"] + best["report"]
    return [
        "| model, tokens | page | bare forward s | inspect s | report s | report build / forward |",
        "|---|---|---:|---:|---:|---:|",
        f"| SmolLM2-135M, {len(ids[0]):,} | {kind} | {best['forward']:.2f} | "
        f"{best['inspect']:.2f} | {best['report']:.2f} | **{build / best['forward']:.2f}x** "
        f"(goal ≤ 10x) |",
        "",
        f"Decoder row: best of {DECODER_REPEATS} interleaved runs each; report build = "
        f"inspect() + report(), as `inspector report` runs them.",
    ]


def main(
    model_name: str = "minilm",
    sizes: tuple[int, ...] = (32, 128, 512),
    repeats: int = REPEATS,
    draw: bool = True,
    decoder: bool = True,
) -> str:
    """``draw=False`` leaves out the Chromium draw times (shown as n/a); ``decoder=False`` the
    SmolLM2 row."""
    import inspector
    from inspector.render import build_report

    model = inspector.load(model_name)
    rows = [
        "| tokens | report MB | bertviz MB | size ratio | report s | bertviz s | time ratio "
        "| drawn in Chromium s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            ins = model.inspect(_sentence(model, n))  # the existing capture both sides start from
            report, build = _warm_median(functools.partial(build_report, ins.capture), repeats)
            path = report.save(Path(tmp) / f"r{n}.html")
            size = path.stat().st_size
            bv_html, bv_time = _warm_median(_bertviz_build(ins), repeats)
            bv_size = len(bv_html.encode())
            drawn = draw_seconds(path) if draw else None
            rows.append(
                f"| {len(ins.tokens)} | {size / 1e6:.2f} | {bv_size / 1e6:.1f} | "
                f"1/{bv_size / size:.0f} | {build:.3f} | {bv_time:.2f} | 1/{bv_time / build:.1f} | "
                f"{'n/a' if drawn is None else f'{drawn:.2f}'} |"
            )
    rows.append("")
    rows.append(
        f"Builds: median of {repeats} warm builds from an existing capture. Import (fresh "
        f"interpreter, not counted above): inspector.render "
        f"{_import_seconds('inspector.render'):.2f} s, bertviz {_import_seconds('bertviz'):.2f} s."
    )
    if decoder:
        rows.append("")
        rows.extend(decoder_rows())
    return "\n".join(rows)


def smoke(models: dict[str, str]) -> str:
    """The same table on a tiny encoder at 8 and 16 tokens, one build, no Chromium, the import
    times taken in this process."""
    with in_process():
        return main(models["encoder"], sizes=(8, 16), repeats=1, draw=False, decoder=False)


if __name__ == "__main__":
    print(main())
