"""Long inputs: SmolLM2-135M at about 1k, 2k, 4k and 8k tokens, every measurement in its own
subprocess.

Columns, each the wall time and the peak RSS added (psutil polled every millisecond, over the
RSS before the run) of one run on the same token ids:

- ``eager fwd``: a bare forward with eager attention (``logits_to_keep=1``, no cache);
- ``sdpa fwd``: the same forward with ``sdpa`` attention (no weights at all);
- ``scan eager``: ``m.scan(text, method="eager")`` (hooks cut each eager layer into row blocks);
- ``scan blockwise``: ``m.scan(text, method="blockwise")`` (sdpa forward, weights recomputed a
  block of rows at a time from post-rotary q/k).

Ratios against the forwards measured in the same run, with the goals of issue 12: scan time
<= 1.3x the eager forward; scan (eager) peak added memory <= 1.1x the eager forward's; the
blockwise path <= 1.5x the sdpa forward's memory at 8k tokens. The growth exponent of each
column is the least-squares slope of log(value) against log(tokens).

``INSPECTOR_BENCH_LONG_SIZES=256,512`` runs other sizes (a quick check while developing);
``INSPECTOR_BENCH_LONG_SKIP=eager@8192,scan_eager@8192`` leaves out runs (shown as n/a), and
``INSPECTOR_BENCH_LONG_MODES=sdpa,scan_blockwise`` runs only some columns.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._timing import in_process, run_script

SIZES = (1024, 2048, 4096, 8192)
MODES = ("eager", "sdpa", "scan_eager", "scan_blockwise")

_CHILD = r"""
import json, os, sys, threading, time
os.environ["HF_HUB_OFFLINE"] = "1"
import psutil, torch
import inspector
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
folder, mode, ids_file = sys.argv[1], sys.argv[2], sys.argv[3]
attn = "sdpa" if mode == "sdpa" else "eager"
config = AutoConfig.from_pretrained(folder)
model = AutoModelForCausalLM.from_config(config, attn_implementation=attn)
model.load_state_dict(torch.load(os.path.join(folder, "weights.pt")), strict=False)
model.eval()
tok = AutoTokenizer.from_pretrained(folder)
m = inspector.load((model, tok))  # switches the model to eager attention
if mode == "sdpa":
    model.set_attn_implementation("sdpa")
text = open(ids_file, encoding="utf-8").read()
n = int(sys.argv[4])
ids = torch.tensor(tok(text)["input_ids"][:n])[None]
def forward(x):
    with torch.inference_mode():
        model(input_ids=x, attention_mask=torch.ones_like(x), logits_to_keep=1, use_cache=False)
def scan(method, length):
    return m.scan(text, truncation=True, max_length=length, method=method, max_memory="1TB")
forward(ids[:, :64])  # warm-up
if mode.startswith("scan"):
    scan(mode.split("_", 1)[1], 64)
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
start = time.perf_counter()
result = None
if mode in ("eager", "sdpa"):
    forward(ids)
else:
    result = scan(mode.split("_", 1)[1], n)
seconds = time.perf_counter() - start
done.set()
thread.join()
out = {"seconds": seconds, "peak": max(peak[0], proc.memory_info().rss) - before}
if result is not None and len(sys.argv) > 5:  # the scan page of this run
    start = time.perf_counter()
    result.report(sys.argv[5])
    out["page_seconds"] = time.perf_counter() - start
print(json.dumps(out))
"""


def _sizes() -> tuple[int, ...]:
    raw = os.environ.get("INSPECTOR_BENCH_LONG_SIZES")
    return tuple(int(x) for x in raw.split(",")) if raw else SIZES


def _skipped() -> set[str]:
    return {s for s in os.environ.get("INSPECTOR_BENCH_LONG_SKIP", "").split(",") if s}


def _run(
    folder: str, mode: str, text_file: str, n: int, page: str | None = None
) -> dict[str, float]:
    modes = os.environ.get("INSPECTOR_BENCH_LONG_MODES")
    if f"{mode}@{n}" in _skipped() or (modes and mode not in modes.split(",")):
        return {"seconds": math.nan, "peak": math.nan}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    out = run_script(_CHILD, [folder, mode, text_file, str(n), *([page] if page else [])], env=env)
    if out.returncode != 0:
        return {"seconds": math.nan, "peak": math.nan, "error": out.stderr[-300:]}  # type: ignore[dict-item]
    return json.loads(out.stdout.strip().splitlines()[-1])


def growth(sizes: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(size)."""
    pts = [
        (math.log(s), math.log(v))
        for s, v in zip(sizes, values, strict=True)
        if v > 0 and math.isfinite(v)
    ]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else math.nan


def _refusal_seconds(model: Any, text: str, n_tokens: int = 4096, budget: str = "4GB") -> float:
    """Seconds until an ``n_tokens`` capture over ``budget`` is refused (it never runs)."""
    from inspector.errors import ResourceError

    start = time.perf_counter()
    try:
        model.inspect(text, truncation=True, max_length=n_tokens, max_memory=budget)
    except ResourceError:
        return time.perf_counter() - start
    raise AssertionError(f"a {n_tokens:,}-token capture fit in {budget}: the estimate is wrong")


def _text(tokenizer: object, n: int) -> str:
    here = Path(__file__).resolve().parents[2] / "shared/data/ud-english-ewt/en_ewt-ud-dev.conllu"
    if here.exists():
        lines = here.read_text(encoding="utf-8").splitlines()
        text = " ".join(line[9:] for line in lines if line.startswith("# text = "))
    else:
        text = "The quick brown fox jumps over the lazy dog. " * 2000
    while len(tokenizer(text)["input_ids"]) < n:  # type: ignore[operator]
        text += " " + text
    return text


def main(
    model: str = "smollm2",
    sizes: tuple[int, ...] | None = None,
    refusal: tuple[int, str] = (4096, "4GB"),
    draw: bool = True,
) -> str:
    """``sizes``: default :data:`SIZES` or ``INSPECTOR_BENCH_LONG_SIZES``; ``refusal``: the
    capture (tokens, budget) that must be refused before it runs; ``draw=False``: no Chromium."""
    import torch

    import inspector
    from bench._timing import draw_seconds

    m = inspector.load(model)
    sizes = list(sizes or _sizes())
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder:
        torch.save(m.model.state_dict(), os.path.join(folder, "weights.pt"))
        m.model.config.save_pretrained(folder)
        m.tokenizer.save_pretrained(folder)
        text_file = os.path.join(folder, "text.txt")
        text = _text(m.tokenizer, max(max(sizes), refusal[0]))
        Path(text_file).write_text(text, encoding="utf-8")
        refused = _refusal_seconds(m, text, *refusal)
        del m
        page = os.path.join(folder, "scan.html")
        for n in sizes:
            for mode in MODES:
                last = n == max(sizes) and mode == "scan_blockwise"
                results[mode].append(_run(folder, mode, text_file, n, page if last else None))
        drawn = (
            draw_seconds(Path(page), "[data-scan-drawn]") if draw and os.path.exists(page) else None
        )
        page_mb = os.path.getsize(page) / 1e6 if os.path.exists(page) else math.nan
    mib = 2**20
    head = "| tokens | " + " | ".join(f"{m} s / MiB" for m in MODES)
    rows = [head + " | scan eager / eager fwd (time, mem) | blockwise / sdpa mem |"]
    rows.append("|" + "---|" * (len(MODES) + 3))
    for i, n in enumerate(sizes):
        cells = [
            f"{results[m][i]['seconds']:.1f} / {results[m][i]['peak'] / mib:.0f}" for m in MODES
        ]
        e, s = results["eager"][i], results["sdpa"][i]
        se, sb = results["scan_eager"][i], results["scan_blockwise"][i]
        ratio = f"{se['seconds'] / e['seconds']:.2f}, {se['peak'] / max(e['peak'], 1):.2f}"
        rows.append(
            f"| {n:,} | "
            + " | ".join(cells)
            + f" | {ratio} | {sb['peak'] / max(s['peak'], 1):.2f} |"
        )
    rows.append(
        "| growth exponent | "
        + " | ".join(
            f"{growth(sizes, [r['seconds'] for r in results[m]]):.2f} / "
            f"{growth(sizes, [r['peak'] for r in results[m]]):.2f}"
            for m in MODES
        )
        + " | | |"
    )
    built = results["scan_blockwise"][-1].get("page_seconds", math.nan)
    rows.append(
        f"\nScan page of the {max(sizes):,}-token blockwise scan: {page_mb:.1f} MB, built in "
        f"{built:.2f} s, drawn in Chromium in "
        f"{'n/a' if drawn is None else f'{drawn:.2f} s'} (goal: under 10 MB, drawn in 3 s). "
        f"A {refusal[0]:,}-token capture over a {refusal[1]} budget is refused in "
        f"{refused * 1e3:.0f} ms "
        f"without running the model (goal: under 1 s)."
    )
    rows.append(
        "\nGoals: scan time <= 1.3x eager fwd; scan eager peak <= 1.1x eager fwd's; "
        "blockwise <= 1.5x sdpa fwd's memory at 8k."
    )
    errors = [r.get("error") for m in MODES for r in results[m] if r.get("error")]
    if errors:
        rows.append(f"\nfailed runs: {errors}")
    return "\n".join(rows)


def smoke(models: dict[str, str]) -> str:
    """The same table on a tiny LLaMA-style GGUF model at 32 tokens (one size), no Chromium;
    a 64-token capture over a 1 kB budget must be refused; the runs in this process."""
    with in_process():  # each run in this process: the same code, no interpreter start-ups
        return main(models["decoder"], sizes=(32,), refusal=(64, "1KB"), draw=False)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(main())
