"""Why this token: SmolLM2-135M's direct logit attribution and information flow routes at
512 to 8,192 tokens, every measurement in its own subprocess.

Columns, each the wall time (the fastest of three runs up to 2,048 tokens, else one) and the
peak RSS added during the first run (psutil polled every millisecond, over the RSS before it),
on the same token ids:

- ``eager fwd`` / ``sdpa fwd``: a bare forward (``logits_to_keep=1``, no cache);
- ``logit_attribution``: ``ins.explain.logit_attribution()`` of the last position (the model
  runs once with hooks on its residual stream; its logit lens comes with it);
- ``information_flow``: ``ins.explain.information_flow()`` (threshold 0.04): the model runs
  once with sdpa, keeping each layer's queries, keys and block inputs, then the walk expands the
  nodes it reaches (with the per-token attribution of the same pass).

The inspection they explain is made before the clock starts (``layers=[0], heads=[0]``).
Goals (issue 20): ``logit_attribution`` <= 1.5x the bare forward at 512 tokens;
``information_flow`` <= 3x the bare sdpa forward at 512 tokens, and at 8,192 tokens under 5
minutes and under 2 GB peak added memory. The growth exponent of each column is the
least-squares slope of log(value) against log(tokens).

``INSPECTOR_BENCH_TRACE_SIZES=128,256`` runs other sizes (a quick check while developing).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench._timing import MEASURE_SOURCE, in_process, run_script

SIZES = (512, 2048, 8192)
MODES = ("eager", "sdpa", "logit_attribution", "information_flow")
GOALS = {"logit_attribution": 1.5, "information_flow": 3.0}

_CHILD = r"""
import gc, json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
import inspector
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
folder, mode, text_file, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = AutoConfig.from_pretrained(folder)
model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
model.load_state_dict(torch.load(os.path.join(folder, "weights.pt")), strict=False)
model.eval()
tok = AutoTokenizer.from_pretrained(folder)
m = inspector.load((model, tok))
text = open(text_file, encoding="utf-8").read()
ids = torch.tensor(tok(text)["input_ids"][:n])[None]
if mode == "sdpa":
    model.set_attn_implementation("sdpa")
def forward(x):
    with torch.inference_mode():
        model(input_ids=x, attention_mask=torch.ones_like(x), logits_to_keep=1, use_cache=False)
ins = None
if mode in ("logit_attribution", "information_flow"):
    ins = m.inspect(text, truncation=True, max_length=n, layers=[0], heads=[0])
    small = m.inspect(text, truncation=True, max_length=32, layers=[0], heads=[0])
    getattr(small.explain, mode)()  # warm-up: finds the wiring once
else:
    forward(ids[:, :64])  # warm-up
gc.collect()
def run():
    if ins is None:
        forward(ids)
        return {}
    result = getattr(ins.explain, mode)()
    if mode == "information_flow":
        return {"nodes": len(result.nodes), "edges": len(result.edges), "answer": result.answer()}
    return {}
extra, seconds, added = measure(run)
for _ in range(2 if n <= 2048 else 0):  # short runs: the fastest of three
    start = time.perf_counter()
    run()
    seconds = min(seconds, time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "peak": added, **extra}))
"""


def _sizes() -> tuple[int, ...]:
    raw = os.environ.get("INSPECTOR_BENCH_TRACE_SIZES")
    return tuple(int(x) for x in raw.split(",")) if raw else SIZES


def _run(folder: str, mode: str, text_file: str, n: int) -> dict[str, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    out = run_script(MEASURE_SOURCE + _CHILD, [folder, mode, text_file, str(n)], env=env)
    if out.returncode != 0:
        return {"seconds": math.nan, "peak": math.nan, "error": out.stderr[-300:]}  # type: ignore[dict-item]
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(model_name: str = "smollm2", sizes: Sequence[int] | None = None) -> str:
    """``sizes``: token counts (default :data:`SIZES`, or ``INSPECTOR_BENCH_TRACE_SIZES``)."""
    import torch

    import inspector
    from bench.bench_long import _text, growth

    m = inspector.load(model_name)
    sizes = list(sizes or _sizes())
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as folder:
        torch.save(m.model.state_dict(), os.path.join(folder, "weights.pt"))
        m.model.config.save_pretrained(folder)
        m.tokenizer.save_pretrained(folder)
        text_file = os.path.join(folder, "text.txt")
        Path(text_file).write_text(_text(m.tokenizer, max(sizes)), encoding="utf-8")
        del m
        for n in sizes:
            for mode in MODES:
                results[mode].append(_run(folder, mode, text_file, n))
    mib = 2**20
    rows = [
        "| tokens | " + " | ".join(f"{m} s / MiB" for m in MODES)
        + " | attribution / eager fwd, / sdpa fwd | flow / sdpa fwd | flow nodes, edges |",
        "|" + "---|" * (len(MODES) + 4),
    ]  # fmt: skip
    for i, n in enumerate(sizes):
        r = {mode: results[mode][i] for mode in MODES}
        cells = [f"{r[m]['seconds']:.2f} / {r[m]['peak'] / mib:.0f}" for m in MODES]
        dla, flow = r["logit_attribution"], r["information_flow"]
        rows.append(
            f"| {n:,} | " + " | ".join(cells)
            + f" | {dla['seconds'] / r['eager']['seconds']:.2f}, "
            f"{dla['seconds'] / r['sdpa']['seconds']:.2f}"
            + f" | {flow['seconds'] / r['sdpa']['seconds']:.2f}"
            + f" | {flow.get('nodes', 'n/a')}, {flow.get('edges', 'n/a')} |"
        )  # fmt: skip
    rows.append(
        "| growth exponent | "
        + " | ".join(
            f"{growth(sizes, [x['seconds'] for x in results[m]]):.2f} / "
            f"{growth(sizes, [x['peak'] for x in results[m]]):.2f}"
            for m in MODES
        )
        + " | | | |"
    )
    last = results["information_flow"][-1]
    rows.append(
        f"\nAt {sizes[-1]:,} tokens information_flow took {last['seconds']:.0f} s and added "
        f"{last['peak'] / 2**30:.2f} GiB (goals: under 5 minutes, under 2 GB); its answer: "
        f"{last.get('answer', 'n/a')}"
    )
    rows.append(
        "\nGoals: logit_attribution <= 1.5x the bare forward at 512 tokens; information_flow "
        "<= 3x the bare sdpa forward at 512 tokens."
    )
    errors = [r.get("error") for m in MODES for r in results[m] if r.get("error")]
    if errors:
        rows.append(f"\nfailed runs: {errors}")
    return "\n".join(rows)


def smoke(models: dict[str, str]) -> str:
    """The same table on the tiny LLaMA-style GGUF model at 16 and 32 tokens, in this process."""
    with in_process():
        return main(models["decoder"], sizes=(16, 32))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(main())
