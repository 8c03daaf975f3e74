"""Long inputs on tiny models: scans equal inspect, blockwise equals eager, the memory
pre-flight refuses before any model work, frames stream, retrieval heads run, pages build."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

import inspector
from inspector.errors import InputError, ResourceError

from factories import build_tiny_llama, cli_fails, figure_specs, parse

TEXT = "The cat sat on the mat because it was tired. A dog barked at the mailman, who ran."
MODELS = ("bert", "gpt2", "llama", "t5", "bart")


@pytest.fixture(scope="module")
def models(tiny):
    out = dict(tiny)
    out["llama"] = inspector.load(build_tiny_llama(tiny["gpt2"].tokenizer))
    return out


@pytest.fixture(scope="module")
def long_llama_dir(tiny, tmp_path_factory):
    """A tiny LLaMA with 512 positions saved to a folder (the tiny tokenizers need ~90 tokens
    for a needle and a question)."""
    model, tok = build_tiny_llama(tiny["gpt2"].tokenizer, positions=512)
    folder = tmp_path_factory.mktemp("tiny-llama-512")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _pool(w: np.ndarray, edges_q: np.ndarray, edges_k: np.ndarray, how: str) -> np.ndarray:
    out = np.zeros((*w.shape[:2], len(edges_q) - 1, len(edges_k) - 1))
    for i in range(len(edges_q) - 1):
        for j in range(len(edges_k) - 1):
            cell = w[:, :, edges_q[i] : edges_q[i + 1], edges_k[j] : edges_k[j + 1]]
            out[:, :, i, j] = cell.mean(axis=(2, 3)) if how == "mean" else cell.max(axis=(2, 3))
    return out


def _state(model: torch.nn.Module) -> tuple:
    from transformers import AttentionInterface

    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    return (
        sorted(c._attn_implementation for c in configs.values()),
        [k for k in AttentionInterface._global_mapping if k.startswith("inspector")],
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
        model.training,
    )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", ["eager", "blockwise"])
def test_scan_equals_inspect(models, name, method):
    """Metrics, sinks, rows, top-k and pooled maps of a scan equal those of the full capture:
    exactly on the eager path, within 1e-5 on the blockwise path (sdpa + q/k recomputation),
    for BERT, GPT-2, LLaMA with GQA and the encoder/decoder/cross parts of T5 and BART."""
    m = models[name]
    before = _state(m.model)
    ins = m.inspect(TEXT)
    scan = m.scan(TEXT, rows=[-1, 2], topk=3, pool=5, method=method, block_rows=4)
    assert scan.metadata["method"] == method
    tol = 0 if method == "eager" else 1e-5
    for kind, stack in ins.capture.stacks.items():
        got = scan.head_metrics(kind=kind)
        want = ins.capture.stacks[kind]
        from inspector.analysis.metrics import head_metrics

        ref = head_metrics(want)
        numeric = [c for c in ref.columns if c != "sink_token"]
        np.testing.assert_allclose(
            got[numeric].to_numpy(float),
            ref[numeric].to_numpy(float),
            atol=max(tol, 1e-9),
            rtol=1e-6,
        )
        s = scan.stack(kind)
        w = stack.weights
        np.testing.assert_allclose(s.rows, w[:, :, list(s.row_positions)], atol=tol)
        np.testing.assert_allclose(
            s.pooled_mean, _pool(w, s.pool_rows, s.pool_cols, "mean"), rtol=2**-11, atol=1e-6
        )
        np.testing.assert_allclose(
            s.pooled_max, _pool(w, s.pool_rows, s.pool_cols, "max"), rtol=2**-11, atol=1e-6
        )
        if kind in ("self", "encoder"):
            top = scan.topk if kind in ("self", "encoder") else None
            assert top is not None
            best = top.groupby(["layer", "head", "query_pos"])["weight"].max()
            expect = w.max(axis=-1).reshape(-1)
            np.testing.assert_allclose(best.to_numpy(), expect, atol=tol)
    assert _state(m.model) == before, "the scan left the model changed"


@pytest.mark.parametrize("name", ["llama", "t5"])
def test_blockwise_with_a_subset_of_heads(models, name):
    """Kept heads that do not cover whole key/value groups take the copying path."""
    m = models[name]
    heads = [1, 3] if name == "llama" else [1]
    ins = m.inspect(TEXT, layers=[1], heads=heads)
    scan = m.scan(TEXT, layers=[1], heads=heads, rows=slice(0, None), method="blockwise")
    for kind, stack in ins.capture.stacks.items():
        np.testing.assert_allclose(scan.stack(kind).rows, stack.weights, atol=1e-5)


def test_blockwise_restores_the_model_when_the_forward_fails(models):
    m = models["llama"]
    before = _state(m.model)
    from inspector.analysis.scan import ScanAccumulator
    from inspector.capture.scan import run_scan, scan_layout

    class Boom(ScanAccumulator):
        def block(self, *args: object) -> None:
            raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        run_scan(m.bundle, scan_layout(m.bundle, TEXT), Boom(), method="blockwise")
    assert _state(m.model) == before
    assert m.scan(TEXT, method="blockwise").metadata["method"] == "blockwise"


class _Calls:
    """Counts forward calls of a model (a pre-hook the test adds itself)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.n = 0
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, *args: object) -> None:
        self.n += 1


@pytest.mark.parametrize(
    "run",
    [
        lambda m: m.inspect(TEXT, max_memory="1kB"),
        lambda m: m.generate("The cat", max_new_tokens=8, max_memory="1kB"),
        lambda m: m.scan(TEXT, max_memory="1kB"),
    ],
    ids=["inspect", "generate", "scan"],
)
def test_preflight_refuses_and_never_runs_the_model(models, run):
    m = models["gpt2"]
    calls = _Calls(m.model)
    try:
        with pytest.raises(ResourceError) as info:
            run(m)
    finally:
        calls.handle.remove()
    assert calls.n == 0
    text = str(info.value)
    assert "1 kB (max_memory)" in text and "nothing was run" in text


def test_refusal_advice_fits_the_command(models):
    m = models["gpt2"]
    with pytest.raises(ResourceError, match="scan\\(\\)"):
        m.inspect(TEXT, max_memory="1kB")
    with pytest.raises(ResourceError) as info:
        m.generate("The cat", max_new_tokens=8, max_memory="1kB")
    assert "max_new_tokens" in str(info.value) and "shorter input" not in str(info.value)


def test_estimate_memory(models):
    m = models["gpt2"]
    est = inspector.estimate_memory(m, n_tokens=40)
    assert est.parts["kept attention"] == 2 * 2 * 40 * 40 * 4
    assert est.fits
    assert not inspector.estimate_memory(m, TEXT, max_memory="1kB").fits
    gen = inspector.estimate_memory(m, n_tokens=10, what="generate", max_new_tokens=30)
    assert gen.parts["kept attention"] == 2 * 2 * 40 * 40 * 4
    assert inspector.estimate_memory(m, n_tokens=40, what="scan").total > 0
    with pytest.raises(InputError):
        inspector.estimate_memory(m)


def test_frame_refuses_beyond_the_budget_and_parquet_streams(models, tmp_path):
    ins = models["bert"].inspect(TEXT)
    with pytest.raises(ResourceError, match="to_parquet"):
        ins.frame(max_memory="1kB")
    full = ins.frame()
    path = ins.to_parquet(tmp_path / "a.parquet")
    back = inspector.read_parquet(path)
    pd.testing.assert_frame_equal(
        back.astype({"query_token": str, "key_token": str}),
        full.astype({"query_token": str, "key_token": str}),
    )
    assert back.attrs["inspector"]["model_name"] == full.attrs["inspector"]["model_name"]
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).num_row_groups == len(ins.stack.layers)  # one row group per layer
    csv = pd.read_csv(ins.to_csv(tmp_path / "a.csv"), keep_default_na=False)
    np.testing.assert_allclose(csv["weight"].to_numpy(), full["weight"].to_numpy(), rtol=1e-6)
    # encoder-decoder: kinds stream in the frame's order with a kind column
    t5 = models["t5"].inspect(TEXT)
    back = inspector.read_parquet(t5.to_parquet(tmp_path / "t5.parquet"))
    assert back["kind"].astype(str).tolist() == t5.frame()["kind"].astype(str).tolist()


def test_frame_pieces_split_big_layers(models):
    from inspector.frames import capture_frame, frame_pieces

    cap = models["gpt2"].inspect(TEXT).capture
    pieces = list(frame_pieces(cap, piece_rows=50))
    assert max(len(p) for p in pieces) <= 50 * 2
    whole = pd.concat(pieces, ignore_index=True)
    ref = capture_frame(cap)
    np.testing.assert_array_equal(whole["weight"].to_numpy(), ref["weight"].to_numpy())
    np.testing.assert_array_equal(whole["query_pos"].to_numpy(), ref["query_pos"].to_numpy())


def test_retrieval_heads_run_and_agree_across_paths(long_llama_dir):
    m = inspector.load(str(long_llama_dir))
    hay = " ".join(["The sky was grey over the harbour and the boats stayed in."] * 6)
    runs = {
        method: inspector.retrieval_heads(
            m,
            hay,
            needle="Blue keys open red doors.",
            question="What opens red doors?",
            answer="Blue keys",
            lengths=[200],
            depths=[0.0, 1.0],
            method=method,
            max_new_tokens=4,
        )
        for method in ("eager", "blockwise")
    }
    a, b = runs["eager"], runs["blockwise"]
    assert list(a.heads.index.names) == ["layer", "head"]
    assert len(a.heads) == 2 * 4 and len(a.trials) == 2
    assert a.trials["n_tokens"].between(190, 200).all()
    t = a.trials
    assert (t["needle_start"] <= t["answer_start"]).all() and (
        t["answer_end"] < t["needle_end"]
    ).all()
    assert t["depth_used"].tolist() == [0.0, 1.0]
    pd.testing.assert_frame_equal(a.trials, b.trials)
    np.testing.assert_allclose(
        a.heads["score_all_trials"].to_numpy(), b.heads["score_all_trials"].to_numpy()
    )
    assert set(a.success.columns) == {0.0, 1.0}
    html = a.report().html
    assert "retrieval-heads" in figure_specs(html)


def test_retrieval_protocols_and_the_stop_rule(long_llama_dir):
    from inspector.analysis.retrieval import LastRowArgmax
    from inspector.capture.scan import generate_last_rows
    from inspector.corpus.retrieval import needle_prompt

    m = inspector.load(str(long_llama_dir))
    bundle = m.bundle
    hay = "The sky was grey over the harbour. The boats stayed in.\n" * 12
    needle, question = "Blue keys open red doors.", "What opens red doors?"
    prompt = needle_prompt(bundle, hay, needle, question, 200, 0.5, "red doors")
    ids = prompt.tokens.ids.tolist()
    answer_ids = ids[prompt.answer[0] : prompt.answer[1]]
    assert bundle.tokenizer.decode(answer_ids).strip() == "red doors"
    assert 0.4 < prompt.depth_used < 0.6

    def generate(**kw):
        acc = LastRowArgmax(len(prompt.tokens), 8)
        return generate_last_rows(bundle, prompt.tokens, acc, max_new_tokens=8, **kw)

    free = generate(stop_at_eos=False)
    assert len(free) == 8
    k = free.index(free[2])  # the first step that generates this id
    assert generate(stop_after=lambda i: i == free[2], stop_at_eos=False) == free[: k + 1]
    config = bundle.model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = free[0]  # the first token generated is now the end token
    try:
        assert generate() == free[:1]
        assert generate(stop_at_eos=False) == free  # the paper's loop does not stop there
    finally:
        config.eos_token_id = saved

    kw = dict(needle=needle, question=question, lengths=[200], depths=[0.5], progress=False)
    wu = inspector.retrieval_heads(m, hay, answer="red doors", **kw)
    old = inspector.retrieval_heads(m, hay, protocol="needle", **kw)
    assert wu.metadata["protocol"] == "wu" and wu.metadata["max_new_tokens"] == 50
    n_needle = len(bundle.tokenizer(needle, add_special_tokens=False)["input_ids"])
    assert old.metadata["max_new_tokens"] == n_needle + 10
    tw, to = wu.trials.iloc[0], old.trials.iloc[0]
    assert (tw["answer_start"], tw["answer_end"]) == prompt.answer
    assert (to["answer_start"], to["answer_end"]) == (to["needle_start"], to["needle_end"])
    with pytest.raises(InputError, match="answer="):
        inspector.retrieval_heads(m, hay, **kw)


def test_retrieval_refuses_encoders(models):
    from inspector.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="decoder"):
        inspector.retrieval_heads(models["bert"], TEXT * 3, lengths=[40], depths=[0.5])


def test_scan_report_and_exports(models, tmp_path):
    m = models["gpt2"]
    scan = m.scan(TEXT, rows=[-1, 3], topk=2)
    report = scan.report(tmp_path / "s.html")
    assert [s.id for s in report.sections] == ["overview", "rows", "pooled", "sinks", "heads"]
    method = scan.metadata["method"]
    assert f"{method} (bounded scan, a block of query rows at a time)" in report.html
    assert "no full attention map was ever held" in report.html
    assert "Statistics of a bounded scan" in report.html and 'class="ins-banner"' not in report.html
    page = parse(report.html)
    data = [json.loads(b) for a, b in page.scripts if a.get("class") == "ins-scan-data"]
    assert data[0]["row_positions"] == list(scan.row_positions)
    with pytest.raises(AttributeError, match="read-only"):
        scan.tokens = []
    figs = figure_specs(report.html)
    assert {"scan-glance", "scan-sinks", "scan-sink-curve"} <= set(figs)
    # every head's distance profile, from the scan's own accumulator
    profile = figs["scan-glance"]["panels"][0]
    assert len(profile["profile"]) == len(scan.layers)
    maps = [json.loads(b) for a, b in page.scripts if a.get("class") == "ins-scan-maps-data"]
    assert maps[0]["zoom"]["shape"][:2] == [len(scan.layers), len(scan.heads)]
    heads = inspector.read_parquet(scan.to_parquet(tmp_path / "s.parquet"))
    assert {"layer", "head", "entropy", "first_k_share", "sink_token"} <= set(heads.columns)
    assert heads.attrs["inspector"]["table"] == "heads"
    rows = scan.table("rows")
    assert len(rows) == 2 * 2 * 2 * len(scan.tokens)
    spans = scan.spans(-1, k=3)
    assert {"start", "end", "weight", "text"} <= set(spans.columns)


def test_long_inspection_reports_switch_to_the_scan_page(models, monkeypatch):
    import re
    import warnings

    api_long = importlib.import_module("inspector.render.scan_choice")
    from inspector.render.budget import PageBudgetWarning

    ins = models["gpt2"].inspect(TEXT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PageBudgetWarning)  # a short input: no scan page, no word
        full = ins.report()
    assert "rows" not in [s.id for s in full.sections] and 'class="ins-banner"' not in full.html
    monkeypatch.setattr(api_long, "LONG_REPORT_CELLS", 10)
    with pytest.warns(PageBudgetWarning, match=r"the report is the scan page .*scan=False"):
        report = ins.report()
    assert [s.id for s in report.sections][:2] == ["overview", "rows"]
    # said at the top of the page, with how to get the full report and what it costs
    banner = re.search(r'<p class="ins-banner" role="note">(.*?)</p>', report.html, re.S)
    assert banner is not None and report.html.index('class="ins-banner"') < report.html.index(
        "<main>"
    )
    text = banner.group(1)
    cells = ins.attention.size
    assert f"{cells:,} attention weights are more than the full report draws (10;" in text
    assert "--full" in text and "scan=False" in text and "more memory while it builds" in text
    # the words say how the page was made: from a capture, not a bounded scan
    assert "no full attention map was ever held" not in report.html
    assert "Statistics of a full capture" in report.html
    assert "capture (every weight held, then measured)" in report.html
    assert "Statistics of a bounded scan" not in report.html
    # asked for: the full report at any size, without a warning; or the scan page, without one
    with warnings.catch_warnings():
        warnings.simplefilter("error", PageBudgetWarning)
        assert "rows" not in [s.id for s in ins.report(scan=False).sections]
        assert 'class="ins-banner"' not in ins.report(scan=True).html


def test_cli_report_says_when_it_writes_the_scan_page(tiny_dirs, tmp_path, monkeypatch, capsys):
    api_long = importlib.import_module("inspector.render.scan_choice")
    from inspector.cli import main

    monkeypatch.setattr(api_long, "LONG_REPORT_CELLS", 10)
    out = tmp_path / "r.html"
    assert main(["report", str(tiny_dirs["gpt2"]), TEXT, "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("inspector: warning: "), err
    assert "the report is the scan page" in err and "--full" in err
    assert 'class="ins-banner"' in out.read_text(encoding="utf-8")
    assert main(["report", str(tiny_dirs["gpt2"]), TEXT, "--full", "-o", str(out)]) == 0
    assert capsys.readouterr().err == ""
    html = out.read_text(encoding="utf-8")
    assert 'class="ins-banner"' not in html and 'id="head-view"' in html


def test_scan_validates_its_arguments(models):
    m = models["gpt2"]
    for kw in ({"topk": 0}, {"pool": 0}, {"rows": [999]}, {"method": "magic"}, {"block_rows": 0}):
        with pytest.raises(InputError):
            m.scan(TEXT, **kw)
    with pytest.raises(InputError):
        m.scan(TEXT, max_memory="a lot")


def test_cli_scan_and_retrieval(tiny_dirs, long_llama_dir, tmp_path, capsys):
    from inspector.cli import main

    text_file = tmp_path / "in.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "scan.parquet"
    rc = main(["scan", str(tiny_dirs["gpt2"]), "--file", str(text_file), "--topk", "2",
               "--rows", "0,-1", "--no-progress", "-o", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    line = capsys.readouterr().out
    assert "strongest sinks" in line and "scan.topk.parquet" in line
    assert (tmp_path / "scan.rows.parquet").exists() and (tmp_path / "scan.topk.parquet").exists()
    rc = main(
        ["scan", str(tiny_dirs["gpt2"]), TEXT, "--no-progress", "-o", str(tmp_path / "s.html")]
    )
    assert rc == 0
    cli_fails(
        [
            "scan",
            str(tiny_dirs["gpt2"]),
            TEXT,
            "--max-memory",
            "1kB",
            "-o",
            str(tmp_path / "x.html"),
        ],
        capsys,
        "nothing was run",
    )
    cli_fails(
        ["scan", str(tiny_dirs["gpt2"]), "-o", str(tmp_path / "x.html")], capsys, "TEXT or --file"
    )
    hay = tmp_path / "hay.txt"
    hay.write_text(" ".join(["The sky was grey and the boats stayed in."] * 8), encoding="utf-8")
    rc = main(["retrieval", str(long_llama_dir), "--haystack", str(hay), "--lengths", "250",
               "--depths", "0.5", "--max-new-tokens", "3", "--no-progress",
               "-o", str(tmp_path / "r.csv")])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "trials" in out and "protocol wu" in out
    assert set(pd.read_csv(tmp_path / "r.csv").columns) >= {"layer", "head", "retrieval_score"}
    base = ["retrieval", str(long_llama_dir), "--haystack", str(hay), "--lengths", "250",
            "--depths", "0.5", "--max-new-tokens", "3", "--no-progress", "--needle",
            "Blue keys open red doors.", "--question", "What opens red doors?"]  # fmt: skip
    cli_fails([*base, "-o", str(tmp_path / "x.csv")], capsys, "--answer")
    cli_fails([*base, "--answer", "green", "-o", str(tmp_path / "x.csv")], capsys, "not a part of")
    cli_fails(
        [*base, "--answer", "red", "--protocol", "needle", "-o", str(tmp_path / "x.csv")],
        capsys,
        "protocol='wu' only",
    )
    assert not (tmp_path / "x.csv").exists()
    rc = main([*base, "--answer", "red doors", "--protocol", "wu", "-o", str(tmp_path / "w.csv")])
    assert rc == 0, capsys.readouterr().err
    assert "answer retrieved in" in capsys.readouterr().out


# ------------------------------------------------------------------- atlas batches (issue 15)


def test_atlas_batches_fit_the_budget(tiny):
    from inspector.capture.batch import batch_bytes, plan_batches
    from inspector.capture.memory import MemoryLimit
    from inspector.corpus.engine import measure_batch, resolve_spec
    from inspector.corpus.options import AtlasOptions

    from factories import numeric_stats, small_atlas

    m = tiny["bert"]
    texts = ["The cat sat."] * 12 + [" ".join(["word"] * 60), "A dog barked at the mailman."]
    lengths = [min(64, len(m.bundle.tokenizer(t)["input_ids"])) for t in texts]  # truncated
    one = batch_bytes(m.bundle, 1, max(lengths))
    plan = plan_batches(m.bundle, lengths, max_memory=6 * one)
    assert len(plan.groups) > 1
    assert sorted(i for g in plan.groups for i in g) == list(range(len(texts)))
    assert all(c <= 0.5 * plan.budget.bytes for c in plan.costs)
    assert plan_batches(m.bundle, lengths).groups == (tuple(range(len(texts))),)  # fits: as is
    whole = small_atlas(m, texts, batch_size=100)
    split = small_atlas(m, texts, batch_size=100, max_memory=6 * one)
    np.testing.assert_allclose(
        numeric_stats(whole.summary), numeric_stats(split.summary), atol=1e-5
    )
    with pytest.raises(ResourceError, match="--max-length") as info:
        small_atlas(m, texts, max_memory=one)
    assert "--layers" not in str(info.value)
    calls = []
    options = AtlasOptions(metrics=["entropy"], distances=False, bins=10)
    spec, metric_fn, _ = resolve_spec(m.bundle, options)
    measure_batch(
        m.bundle,
        texts,
        spec,
        metric_fn,
        None,
        max_memory=MemoryLimit.of(3 * one),
        before_risky=lambda: calls.append(1),
    )
    assert calls == [1]  # a pass over a quarter of the budget: checkpoint first
