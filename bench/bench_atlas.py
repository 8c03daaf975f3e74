"""Corpus atlas on MiniLM with the UD English EWT dev sentences (CC BY-SA 4.0).

Ratios against baselines measured in the same run:

- atlas throughput / bare batched forward (tokenize with padding + model forward with
  ``output_attentions``, same batch size, no statistics); goal >= 0.8;
- peak RSS of whole atlas runs over 500 vs 2,000 sentences, each in a fresh subprocess (goal:
  within 10%: the aggregates have a fixed size);
- batch size 1 vs 32;
- the Ray engine with 2 local workers vs the local engine (wall time including Ray's start-up and
  each worker loading the model).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench._timing import checked, in_process, run_script

TREEBANK = (
    Path(__file__).resolve().parents[1].parent / "shared/data/ud-english-ewt/en_ewt-ud-dev.conllu"
)
N_THROUGHPUT = 160
N_BATCH = 64
N_RAY = 128
RSS_SIZES = (500, 2000)
RSS_MAX_LENGTH = 24  # the RSS runs truncate inputs to keep the bench within ~5 minutes


def _sentences(n: int) -> list[str]:
    out: list[str] = []
    for line in TREEBANK.read_text(encoding="utf-8").splitlines():
        if line.startswith("# text = "):
            out.append(line[len("# text = ") :].strip())
    while len(out) < n:  # the dev set has 2,001 sentences
        out += out[: n - len(out)]
    return out[:n]


def _bare_forward(bundle: object, texts: list[str], batch_size: int) -> float:
    import torch

    tok, model = bundle.tokenizer, bundle.model  # type: ignore[attr-defined]
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            out = model(**enc, output_attentions=True, return_dict=True)
        torch.stack(out.attentions, dim=1).float().cpu().numpy()  # the same copy-out
    return len(texts) / (time.perf_counter() - start)


def _atlas_rate(bundle: object, texts: list[str], batch_size: int, **kw: object) -> float:
    from inspector.corpus.engine import run_atlas
    from inspector.corpus.options import AtlasOptions

    start = time.perf_counter()
    options = AtlasOptions(batch_size=batch_size, progress=False, **kw)  # type: ignore[arg-type]
    run_atlas(bundle, texts, options)  # type: ignore[arg-type]
    return len(texts) / (time.perf_counter() - start)


_RSS_CHILD = """
import json, os, resource, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from bench.bench_atlas import _sentences, RSS_MAX_LENGTH
from inspector.models.loading import load_model
from inspector.corpus.engine import run_atlas
from inspector.corpus.options import AtlasOptions
n = int(sys.argv[1])
bundle = load_model(sys.argv[2])
texts = _sentences(n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
atlas = run_atlas(bundle, iter(texts), AtlasOptions(max_length=RSS_MAX_LENGTH, progress=False))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": atlas.metadata["n_texts"], "before": before, "peak": peak}))
"""


def _rss(n: int, model: str = "minilm") -> dict[str, float]:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = checked(run_script(_RSS_CHILD, [str(n), model], env=env, cwd=root))
    return json.loads(out.strip().splitlines()[-1])


def _ray_rate(texts: list[str], batch_size: int, model: str) -> tuple[float | None, str]:
    try:
        import ray
    except ImportError:
        return None, "ray not installed (pip install 'attention-inspector[ray]')"
    from inspector.corpus.options import AtlasOptions
    from inspector.corpus.ray_engine import run_atlas_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        options = AtlasOptions(batch_size=batch_size, progress=False)
        run_atlas_ray(model, texts, options, num_workers=2)
        return len(texts) / (time.perf_counter() - start), ""
    finally:
        ray.shutdown()


def main(
    model: str = "minilm",
    n_throughput: int = N_THROUGHPUT,
    n_batch: int = N_BATCH,
    n_ray: int = N_RAY,
    rss_sizes: tuple[int, int] = RSS_SIZES,
    ray: bool = True,
) -> str:
    """``ray=False`` leaves out the Ray engine's row (its start-up alone takes seconds)."""
    import torch

    from inspector.models.loading import load_model

    if not TREEBANK.exists():
        return f"treebank not found at {TREEBANK}; skipped"
    bundle = load_model(model)
    texts = _sentences(max(n_throughput, n_ray))
    _bare_forward(bundle, texts[:32], 32)  # warm-up
    rows: list[tuple[str, str, str]] = []

    bare = _bare_forward(bundle, texts[:n_throughput], 32)
    full = _atlas_rate(bundle, texts[:n_throughput], 32)
    no_dist = _atlas_rate(bundle, texts[:n_throughput], 32, distances=False)
    rows.append(("bare batched forward, batch 32", f"{bare:.1f} sent/s", "1.00 (baseline)"))
    rows.append(
        ("atlas, all metrics + JS head distances", f"{full:.1f} sent/s", f"{full / bare:.2f}")
    )
    rows.append(
        ("atlas, all metrics, no distances", f"{no_dist:.1f} sent/s", f"{no_dist / bare:.2f}")
    )

    one = _atlas_rate(bundle, texts[:n_batch], 1)
    many = _atlas_rate(bundle, texts[:n_batch], 32)
    rows.append(("atlas batch 1", f"{one:.1f} sent/s", "1.00 (baseline)"))
    rows.append(("atlas batch 32", f"{many:.1f} sent/s", f"{many / one:.2f}"))

    small, large = (_rss(n, model) for n in rss_sizes)
    rows.append(
        (
            f"peak RSS, {rss_sizes[0]} sentences",
            f"{small['peak'] / 1024:.0f} MiB",
            "1.00 (baseline)",
        )
    )
    rows.append(
        (
            f"peak RSS, {rss_sizes[1]} sentences",
            f"{large['peak'] / 1024:.0f} MiB",
            f"{large['peak'] / small['peak']:.3f}",
        )
    )

    local = _atlas_rate(bundle, texts[:n_ray], 32)
    ray_rate, why = _ray_rate(texts[:n_ray], 32, model) if ray else (None, "not run (ray=False)")
    rows.append((f"local engine, {n_ray} sentences", f"{local:.1f} sent/s", "1.00 (baseline)"))
    if ray_rate is None:
        rows.append(("Ray engine, 2 local workers", "n/a", why))
    else:
        rows.append(
            (
                "Ray engine, 2 local workers (incl. start-up)",
                f"{ray_rate:.1f} sent/s",
                f"{ray_rate / local:.2f}",
            )
        )

    lines = [
        f"{bundle.name} ({bundle.n_layers} x {bundle.n_heads} heads), UD EWT dev sentences, "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs. RSS runs: max_length "
        f"{RSS_MAX_LENGTH}, subprocess each.",
        "",
        "| measurement | value | ratio |",
        "|---|---:|---:|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def smoke(models: dict[str, str]) -> str:
    """The same table on a tiny encoder: a few sentences, two small RSS runs (in this
    process), no Ray."""
    with in_process():
        return main(models["encoder"], 8, 4, 4, (4, 8), ray=False)


if __name__ == "__main__":
    print(main())
