"""Faithfulness scoreboard cost, as a ratio to the forward passes it needs, and the README's
"Which map to trust" runs.

``python -m bench faithfulness`` (``main``): SmolLM2 on 10 UD EWT dev sentences, the issue's nine
token-level methods (:data:`BASE_METHODS`); the time of the whole scoreboard against the time of
running the deleted inputs it scored as plain forwards, 64 equal-length inputs a pass (what the
scoreboard did before it ran a decoder's deletions as prefix trees), measured in the same run.
Goal (issue 21): 9 methods x 500 sentences on SmolLM2 in under an hour on a 2-core CPU, i.e.
7.2 s a sentence. ``time N`` runs those nine methods over the first ``N`` sentences (default 500)
and writes ``bench/data/faithfulness_smollm2_time.json``: the wall time, the counts, and the
largest difference from the committed SmolLM2 run's values of the same methods.

``python -m bench.bench_faithfulness run MODEL N OUT`` runs the scoreboard over the first ``N``
sentences of the UD EWT dev set (checkpointed: rerun the same command to resume after an
interruption; the checkpoint is in ``bench/results/``) and writes ``OUT`` (default
``bench/data/faithfulness_MODEL.csv``: text, method, metric, value) and ``OUT.json`` (metadata: run
time, counts). ``MODEL`` is ``smollm2`` (next-token target), ``minilm`` (embedding projection) or
``classifier`` (the tiny negation classifier of ``tests/factories.py``, trained on the dev
sentences after the first 200, here at once). ``extend MODEL`` scores the sentences after the
ones a committed result file holds, up to the run's size, and merges them into it (a run whose
checkpoint was lost goes on from its last snapshot; resumable the same way). ``snapshot MODEL``
writes the result files from a run's checkpoint (what a run still going, or stopped, has
scored). ``table`` prints the README tables from the result files in ``bench/data/``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: Checkpoints of runs going on (git-ignored, as every bench output there).
RESULTS = HERE / "results"
#: The committed result files the README's tables are printed from.
DATA = HERE / "data"
EWT_DEV = HERE.parents[1] / "shared/data/ud-english-ewt/en_ewt-ud-dev.conllu"
#: The issue's nine token-level methods, and the methods of the encoder runs: every registered one
#: that can explain an encoder (the trace methods explain next-token predictions; the MiniLM run
#: started before they were registered, and naming them keeps its checkpoint resumable). The
#: SmolLM2 run scores every registered method.
BASE_METHODS = (
    "attention", "attention_mean", "rollout", "attention_flow", "norms", "gradient_x_input",
    "integrated_gradients", "occlusion", "random",
)  # fmt: skip
#: The README runs: model -> (result file, sentences asked for).
RUNS = {
    "smollm2": (DATA / "faithfulness_smollm2.csv", 500),
    "minilm": (DATA / "faithfulness_minilm.csv", 500),
    "classifier": (DATA / "faithfulness_classifier.csv", 200),
}


def checkpoint_of(out: Path) -> Path:
    """Where the run writing ``out`` keeps its checkpoint."""
    return RESULTS / (out.name + ".ckpt.npz")


N_BENCH = 10
#: Where ``time`` writes what it measured.
TIMING = DATA / "faithfulness_smollm2_time.json"


def ewt_texts(n: int | None = None) -> list[str]:
    from inspector.corpus.sources import text_source

    texts = [t for t in text_source(EWT_DEV) if isinstance(t, str) and t.strip()]
    return texts if n is None else texts[:n]


def rule_classifier() -> Any:
    """The tiny negation classifier, trained on the dev sentences after the first 200."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    import inspector

    from factories import build_rule_classifier  # type: ignore[import-not-found]

    model, tok = build_rule_classifier(ewt_texts()[200:])
    return inspector.load((model, tok))


def _load(name: str) -> Any:
    import inspector

    return rule_classifier() if name == "classifier" else inspector.load(name)


def write(result: Any, name: str, n: int, out: Path, **extra: Any) -> dict[str, Any]:
    """``out`` (the tidy frame) and ``out.json`` (the run's metadata, without the texts)."""
    result.frame.to_csv(out, index=False, float_format="%.6g")
    skip = ("texts", "text_index", "targets", "labels")
    meta = {k: v for k, v in result.metadata.items() if k not in skip}
    targets = {str(t) for t in result.metadata.get("targets") or []}
    if len(targets) > 1:  # one token per text: what they have in common
        meta["target"] = re.sub(r"of (token|class) '.*?'", r"of the explained \1", targets.pop())
    meta.update(model=name, n_sentences_asked=n, n_sentences_scored=result.n_texts, **extra)
    out.with_name(out.name + ".json").write_text(json.dumps(meta, indent=1, default=str))
    return meta


def snapshot(name: str) -> dict[str, Any]:
    """The result files from a run still going (or stopped): what its checkpoint holds."""
    from inspector.corpus.scoreboard import load_scoreboard

    out, n = RUNS[name]
    info, result = load_scoreboard(checkpoint_of(out))
    return write(result, name, n, out, partial=True, n_items_read=info["n_done"])


def run(name: str, n: int, out: Path) -> dict[str, Any]:
    """The scoreboard over the first ``n`` dev sentences, resumable, written to ``out``."""
    import inspector

    m = _load(name)
    checkpoint = checkpoint_of(out)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = inspector.faithfulness(
        m,
        EWT_DEV,
        None if name == "smollm2" else list(BASE_METHODS),
        limit=n,
        checkpoint=checkpoint,
        resume=checkpoint.exists(),
        checkpoint_every=60.0,
        progress=True,
    )
    meta = write(result, name, n, out, this_session_seconds=time.perf_counter() - start)
    if checkpoint.exists():
        checkpoint.unlink()
    return meta


#: Metadata that add up when two parts of a run are merged.
ADDITIVE = (
    "n_texts", "n_tokens", "forward_rows", "forward_passes", "deletion_rows", "seconds",
    "deletion_seconds", "run_seconds", "n_items", "n_bad_lines", "n_skipped_texts",
)  # fmt: skip


def extend(name: str) -> dict[str, Any]:
    """Score the sentences after those ``RUNS[name]``'s file holds and merge them into it."""
    import pandas as pd

    import inspector

    out, n = RUNS[name]
    done = json.loads(out.with_name(out.name + ".json").read_text())
    start = int(done["n_sentences_scored"])
    if start >= n:
        return done
    checkpoint = RESULTS / f"{out.name}.from{start}.ckpt.npz"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    result = inspector.faithfulness(
        _load(name),
        ewt_texts(n)[start:],
        None if name == "smollm2" else list(BASE_METHODS),
        checkpoint=checkpoint,
        resume=checkpoint.exists(),
        checkpoint_every=60.0,
        progress=True,
    )
    part = result.frame.assign(text=result.frame["text"] + start)
    merged = pd.concat([pd.read_csv(out), part], ignore_index=True)
    merged.to_csv(out, index=False, float_format="%.6g")
    meta = dict(done)
    for key in ADDITIVE:
        if key in result.metadata:
            meta[key] = meta.get(key, 0) + result.metadata[key]
    seconds = result.metadata.get("method_seconds") or {}
    meta["method_seconds"] = {
        k: meta.get("method_seconds", {}).get(k, 0.0) + seconds.get(k, 0.0)
        for k in {**meta.get("method_seconds", {}), **seconds}
    }
    meta["skipped"] = list(done.get("skipped", [])) + [
        {**s, "text": int(s["text"]) + start} for s in result.metadata.get("skipped", [])
    ]
    meta["n_sentences_scored"] = start + result.n_texts
    meta["this_session_seconds"] = time.perf_counter() - clock
    for key in ("partial", "n_items_read"):
        meta.pop(key, None)
    out.with_name(out.name + ".json").write_text(json.dumps(meta, indent=1, default=str))
    checkpoint.unlink(missing_ok=True)
    return meta


def result_of(path: Path) -> Any:
    """A result file read back as a faithfulness result (the README's tables come from here)."""
    import pandas as pd

    from inspector.analysis.faithfulness_table import Faithfulness

    frame = pd.read_csv(path).astype({"text": "int64", "method": str, "metric": str})
    meta_path = path.with_name(path.name + ".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    scores = pd.DataFrame(columns=["text", "method", "position", "token", "score"])
    return Faithfulness(frame, scores, meta)


def versus_floor(r: Any) -> str:
    """Which methods beat the random floor on each metric: the paired 95% interval of the
    difference, text by text, excludes 0 on the better side."""
    stats = r.stats()
    lines = []
    for metric, higher in (("comprehensiveness", True), ("sufficiency", False), ("tau_loo", True)):
        better, worse = [], []
        for method in r.ranking(metric):
            s = stats.get((method, metric), {})
            low, high, diff = s.get("vs_random_low"), s.get("vs_random_high"), s.get("vs_random")
            if method == "random" or low is None or high is None or diff is None:
                continue
            cell = f"{method} {diff:+.3f}"
            if (low > 0) if higher else (high < 0):
                better.append(cell)
            elif (high < 0) if higher else (low > 0):
                worse.append(cell)
        lines.append(
            f"{metric}: better than random: {', '.join(better) or 'none'}; "
            f"worse: {', '.join(worse) or 'none'}"
        )
    return "\n".join(lines)


def table(name: str) -> str:
    """One README table, best first, with the run's counts and the comparison with the floor."""
    path, _ = RUNS[name]
    r = result_of(path)
    meta = r.metadata
    minutes = float(meta.get("run_seconds", 0.0)) / 60
    asked = meta.get("n_sentences_asked", r.n_texts)
    partial = " (the run did not finish)" if meta.get("partial") else ""
    return (
        f"{r.markdown()}\n\n{name}: {r.n_texts} of the first {asked} sentences{partial}, "
        f"target: {meta.get('target')}; {meta.get('forward_rows', 0):,} inputs in "
        f"{meta.get('forward_passes', 0):,} passes, {minutes:.0f} min\n{versus_floor(r)}"
    )


def main() -> str:
    import inspector

    return measure(inspector.load("smollm2"), ewt_texts(N_BENCH), "SmolLM2", list(BASE_METHODS))


def measure(m: Any, texts: list[str], name: str, methods: list[str] | None = None) -> str:
    """The scoreboard's time on ``texts`` against plain forwards of the deleted inputs it scored
    (``methods``: default every registered method with token scores)."""
    import numpy as np
    import torch

    import inspector
    from inspector.capture.perturb import MAX_ROWS, id_inputs, last_logits_only
    from inspector.capture.run import forward

    inspector.faithfulness(m, texts[:1], methods, progress=False)  # warm-up
    start = time.perf_counter()
    result = inspector.faithfulness(m, texts, methods, progress=False)
    total = time.perf_counter() - start
    meta = result.metadata
    # the floor: the scored inputs' tokens as plain forwards, MAX_ROWS rows of their mean length
    rows, passes = int(meta["forward_rows"]), int(meta["forward_passes"])
    tokens, ran = int(meta["deletion_tokens"]), int(meta["run_tokens"])
    length = max(1, round(tokens / max(1, int(meta["deletion_rows"]))))
    ids = np.full((MAX_ROWS, length), 100)
    inputs = id_inputs(m.bundle, ids)
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(-(-rows // MAX_ROWS)):
            forward(m.bundle, inputs, **last_logits_only(m.bundle))
    floor = time.perf_counter() - start
    per = total / result.n_texts
    seconds = meta.get("method_seconds") or {}
    n_tok = int(meta["n_tokens"]) // max(1, result.n_texts)
    lines = [
        f"{name}, {result.n_texts} UD EWT dev sentences ({n_tok} content tokens on average), "
        f"{len(result.methods)} methods; {torch.get_num_threads()} threads",
        "",
        "| part | seconds | x the plain forwards |",
        "|---|---:|---:|",
        f"| whole scoreboard | {total:.1f} | {total / floor:.2f} |",
        f"| deleted inputs ({rows:,} inputs, {tokens:,} tokens; {ran:,} tokens run in {passes:,} "
        f"passes: {ran / max(1, tokens):.2f} of them) | {meta['deletion_seconds']:.1f} | "
        f"{meta['deletion_seconds'] / floor:.2f} |",
    ]
    for method, sec in seconds.items():
        lines.append(f"| scores: {method} | {sec:.1f} | {sec / floor:.2f} |")
    lines += [
        f"| plain forwards of the same inputs, {MAX_ROWS} a pass (the baseline) | {floor:.1f} | "
        f"1.00 |",
        "",
        f"{per:.1f} s a sentence here ({n_tok} content tokens on average).",
    ]
    if name == "SmolLM2" and TIMING.exists():
        timed = json.loads(TIMING.read_text())
        n_timed = int(timed["n_sentences"])
        lines.append(
            f"The committed `time` run: {timed['minutes']:.1f} min for {n_timed} sentences "
            f"({int(timed['n_tokens']) / max(1, n_timed):.1f} content tokens on average; "
            f"{timed['seconds_per_sentence']:.1f} s a sentence; goal: under 60 min)."
        )
    return "\n".join(lines)


def time_run(n: int = 500) -> dict[str, Any]:
    """The issue's nine methods over the first ``n`` sentences, timed, and compared with the
    committed SmolLM2 run (whose values came from inputs run one length at a time)."""
    import pandas as pd
    import torch

    import inspector

    m = inspector.load("smollm2")
    start = time.perf_counter()
    result = inspector.faithfulness(m, ewt_texts(n), list(BASE_METHODS), progress=True)
    seconds = time.perf_counter() - start
    keys = ["text", "method", "metric"]
    committed = pd.read_csv(RUNS["smollm2"][0])
    both = result.frame.merge(committed, on=keys, suffixes=("", "_committed"))
    diff = (both["value"] - both["value_committed"]).abs()
    meta = result.metadata
    out = {
        "n_sentences": result.n_texts,
        "methods": list(BASE_METHODS),
        "seconds": seconds,
        "minutes": seconds / 60,
        "seconds_per_sentence": seconds / max(1, result.n_texts),
        "threads": torch.get_num_threads(),
        "n_tokens": meta.get("n_tokens"),
        "deletion_rows": meta.get("deletion_rows"),
        "deletion_tokens": meta.get("deletion_tokens"),
        "run_tokens": meta.get("run_tokens"),
        "forward_passes": meta.get("forward_passes"),
        "deletion_seconds": meta.get("deletion_seconds"),
        "method_seconds": meta.get("method_seconds"),
        "compared_values": len(both),
        "max_abs_difference": float(diff.max()) if len(both) else None,
        "max_abs_difference_where": (
            both.loc[diff.idxmax(), keys].to_dict() if len(both) else None
        ),
    }
    TIMING.write_text(json.dumps(out, indent=1, default=str))
    RESULTS.mkdir(parents=True, exist_ok=True)  # the values, to look into a difference
    result.frame.to_csv(RESULTS / "faithfulness_smollm2_time.csv", index=False)
    return out


#: The smoke mode's methods: one of each kind (weights, model, the floor), a fixed table size.
SMOKE_METHODS = ["attention", "rollout", "occlusion", "random"]


def smoke(models: dict[str, str]) -> str:
    """The same table on the tiny masked LM, three sentences, four methods."""
    import inspector

    texts = ["The cat sat on the [MASK].", "It was not [MASK].", "A dog barked at the [MASK]."]
    return measure(inspector.load(models["encoder"]), texts, "tiny encoder", SMOKE_METHODS)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        name, n = sys.argv[2], int(sys.argv[3])
        out = Path(sys.argv[4]) if len(sys.argv) > 4 else RUNS[name][0]
        out.parent.mkdir(parents=True, exist_ok=True)
        print(json.dumps(run(name, n, out), indent=1, default=str))
    elif len(sys.argv) > 1 and sys.argv[1] == "extend":
        print(json.dumps(extend(sys.argv[2]), indent=1, default=str))
    elif len(sys.argv) > 1 and sys.argv[1] == "snapshot":
        print(json.dumps(snapshot(sys.argv[2]), indent=1, default=str))
    elif len(sys.argv) > 1 and sys.argv[1] == "time":
        print(json.dumps(time_run(*map(int, sys.argv[2:3])), indent=1, default=str))
    elif len(sys.argv) > 1 and sys.argv[1] == "table":
        for which in sys.argv[2:] or list(RUNS):
            print(f"\n### {which}\n\n{table(which)}")
    else:
        print(main())
