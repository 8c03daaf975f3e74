"""Table-driven bad input for every public entry point: a specific error that says what to do.

Each row is (id, call, expected exception type, a phrase the message must contain). The calls
run on the tiny models of ``conftest``; nothing here may fail with a library's own exception."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import inspector
import inspector.api
from inspector.errors import (
    InputError,
    InspectorError,
    ModelLoadError,
    ResourceError,
    UnsupportedModelError,
)

from factories import build_vision, make_image

TEXT = "The cat sat on the mat because it was tired."


LONG = "cat " * 25_000  # 100k characters


CONLLU = "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_\n\n"


@functools.cache
def _vit() -> Any:
    """A tiny ViT with its image processor (built on first use)."""
    return inspector.load(build_vision("vit"))


def _picture() -> Any:
    return make_image()


def _ins(t: dict[str, Any], family: str = "bert", text: str = TEXT) -> Any:
    kw = {"target": "A dog."} if family in ("t5", "bart") else {}
    return t[family].inspect(text, **kw)


CASES: list[tuple[str, Callable[[dict[str, Any], Any], Any], type[BaseException], str]] = [
    # ---- inspect: text
    ("inspect-empty", lambda t, p: t["bert"].inspect(""), InputError, "empty"),
    ("inspect-whitespace", lambda t, p: t["bert"].inspect(" \n\t "), InputError, "empty"),
    (
        "inspect-control-only",
        lambda t, p: t["bert"].inspect("\x00\x01\x1b\x7f"),
        InputError,
        "control characters",
    ),
    ("inspect-100k", lambda t, p: t["bert"].inspect(LONG), InputError, "truncation=True"),
    ("inspect-100k-decoder", lambda t, p: t["gpt2"].inspect(LONG), InputError, "at most 64"),
    ("inspect-long-pair", lambda t, p: t["bert"].inspect(TEXT, LONG), InputError, "truncation"),
    ("inspect-wrong-type", lambda t, p: t["bert"].inspect(42), InputError, "string"),
    ("inspect-bytes", lambda t, p: t["bert"].inspect(b"cat"), InputError, "string"),
    ("inspect-pair-type", lambda t, p: t["bert"].inspect(TEXT, 3.5), InputError, "string"),
    ("inspect-pair-empty", lambda t, p: t["bert"].inspect(TEXT, "  "), InputError, "empty"),
    (
        "inspect-text-and-messages",
        lambda t, p: t["gpt2"].inspect(TEXT, messages=[{"role": "user", "content": "hi"}]),
        InputError,
        "not both",
    ),
    ("inspect-no-text", lambda t, p: t["bert"].inspect(), InputError, "give the text"),
    (
        "inspect-target-on-encoder",
        lambda t, p: t["bert"].inspect(TEXT, target="x"),
        InputError,
        "encoder-decoder",
    ),
    (
        "inspect-layer-range",
        lambda t, p: t["bert"].inspect(TEXT, layers=[2]),
        InputError,
        "out of range",
    ),
    (
        "inspect-head-range",
        lambda t, p: t["bert"].inspect(TEXT, heads=[-3]),
        InputError,
        "out of range",
    ),
    (
        "inspect-layer-type",
        lambda t, p: t["bert"].inspect(TEXT, layers=["0"]),
        InputError,
        "integers",
    ),
    (
        "inspect-layer-float",
        lambda t, p: t["bert"].inspect(TEXT, layers=[0.5]),
        InputError,
        "integers",
    ),
    (
        "inspect-no-layers",
        lambda t, p: t["bert"].inspect(TEXT, layers=[]),
        InputError,
        "at least one",
    ),
    (
        "inspect-max-length",
        lambda t, p: t["bert"].inspect(TEXT, max_length=0),
        InputError,
        "positive integer",
    ),
    ("inspect-dtype", lambda t, p: t["bert"].inspect(TEXT, dtype="int8"), InputError, "float16"),
    # ---- frames and exports
    ("frame-level", lambda t, p: _ins(t).frame(level="sentence"), InputError, "'token' or"),
    ("frame-layer", lambda t, p: _ins(t).frame(layers=[7]), InputError, "not captured"),
    ("to-parquet-suffix", lambda t, p: _ins(t).to_parquet(p / "x.csv"), InputError, ".parquet"),
    ("to-csv-into-folder", lambda t, p: _ins(t).to_csv(p), InputError, ".csv"),
    (
        "read-parquet-missing",
        lambda t, p: inspector.read_parquet(p / "no.parquet"),
        InputError,
        "does not exist",
    ),
    # ---- head analysis
    (
        "metrics-unknown",
        lambda t, p: _ins(t).heads.metrics(["entropy", "nope"]),
        InputError,
        "entropy",
    ),
    (
        "similarity-method",
        lambda t, p: _ins(t).heads.similarity(method="manhattan"),
        InputError,
        "js",
    ),
    ("nearest-out-of-range", lambda t, p: _ins(t).heads.nearest(9, 0), InputError, "9"),
    ("metrics-many-empty", lambda t, p: inspector.head_metrics(t["bert"], []), InputError, "text"),
    (
        "metrics-many-blank",
        lambda t, p: inspector.head_metrics(t["bert"], ["ok", " "]),
        InputError,
        "empty",
    ),
    ("compare-type", lambda t, p: inspector.compare(_ins(t), 42), InputError, "Inspection"),
    (
        "compare-other-model",
        lambda t, p: inspector.compare(_ins(t), _ins(t, "gpt2")),
        InputError,
        "tokenizer",
    ),
    # ---- views and report
    ("head-view-layer", lambda t, p: _ins(t).views.head(layer=9), InputError, "layer"),
    ("report-suffix", lambda t, p: _ins(t).report(p / "r.txt"), InputError, ".html"),
    ("report-into-folder", lambda t, p: _ins(t).report(p), InputError, "folder"),
    ("neuron-view-t5", lambda t, p: _ins(t, "t5").views.neuron(), UnsupportedModelError, "t5"),
    ("enc-dec-attention", lambda t, p: _ins(t, "t5").attention, InputError, ".encoder"),
    # ---- what mattered
    ("rollout-layer", lambda t, p: _ins(t).explain.rollout(start_layer=5), InputError, "layer"),
    (
        "rollout-reduce",
        lambda t, p: _ins(t).explain.rollout(head_reduce="median"),
        InputError,
        "mean",
    ),
    (
        "flow-too-long",
        lambda t, p: _ins(t, "bert", "cat " * 40).explain.attention_flow(),
        InputError,
        "32",
    ),
    (
        "explain-cross",
        lambda t, p: _ins(t, "t5").cross.explain(),
        UnsupportedModelError,
        "self-attention stack",
    ),
    (
        "explainer-unknown",
        lambda t, p: _ins(t, "gpt2").explain("magic"),
        InputError,
        "registered explainers",
    ),
    (
        "importance-target",
        lambda t, p: _ins(t, "gpt2").explain.ablation(target="nonsense:x"),
        InputError,
        "target",
    ),
    (
        "importance-token",
        lambda t, p: _ins(t, "gpt2").explain.ablation(target="token:zzzqqq"),
        InputError,
        "token",
    ),
    (
        "importance-many-empty",
        lambda t, p: inspector.head_importance(t["gpt2"], []),
        InputError,
        "text",
    ),
    # ---- generation
    ("generate-empty", lambda t, p: t["gpt2"].generate(""), InputError, "empty"),
    (
        "generate-zero",
        lambda t, p: t["gpt2"].generate(TEXT, max_new_tokens=0),
        InputError,
        "max_new_tokens",
    ),
    (
        "generate-beam",
        lambda t, p: t["gpt2"].generate(TEXT, generation_options={"num_beams": 3}),
        InputError,
        "beam",
    ),
    ("generate-encoder", lambda t, p: t["bert"].generate(TEXT), InspectorError, "generat"),
    (
        "generate-chat-no-template",
        lambda t, p: t["gpt2"].generate(TEXT, chat=True),
        InputError,
        "has no chat template",
    ),
    (
        "generate-chat-seq2seq",
        lambda t, p: t["t5"].generate(TEXT, chat=True),
        InputError,
        "is not a decoder",
    ),
    ("generate-chat-type", lambda t, p: t["gpt2"].generate(TEXT, chat="yes"), InputError, "chat"),
    (
        "generate-messages-no-chat",
        lambda t, p: t["gpt2"].generate(messages=[{"role": "user", "content": "hi"}], chat=False),
        InputError,
        "chat=False",
    ),
    # ---- corpus
    (
        "atlas-missing-file",
        lambda t, p: inspector.atlas(t["bert"], str(p / "none.txt")),
        InputError,
        "does not exist",
    ),
    ("atlas-empty", lambda t, p: inspector.atlas(t["bert"], []), InputError, "no text"),
    (
        "atlas-metric",
        lambda t, p: inspector.atlas(t["bert"], [TEXT], metrics=["nope"]),
        InputError,
        "entropy",
    ),
    (
        "atlas-engine",
        lambda t, p: inspector.atlas(t["bert"], [TEXT], engine="spark"),
        InputError,
        "local",
    ),
    # ---- issue 18 item 10: a Ray address, refused before Ray or the model loads
    (
        "atlas-ray-address-closed",
        lambda t, p: inspector.atlas(t["bert"], [TEXT], engine="ray", address="127.0.0.1:1"),
        InputError,
        "no Ray cluster answers at 127.0.0.1:1",
    ),
    (
        "atlas-ray-address-form",
        lambda t, p: inspector.atlas(t["bert"], [TEXT], engine="ray", address="head-node"),
        InputError,
        "is not HOST:PORT",
    ),
    (
        "atlas-address-local-engine",
        lambda t, p: inspector.atlas(t["bert"], [TEXT], address="127.0.0.1:6379"),
        InputError,
        "only engine='ray' uses",
    ),
    (
        "probe-missing",
        lambda t, p: inspector.syntax_probe(t["bert"], p / "none.conllu"),
        InputError,
        "does not exist",
    ),
    (
        "probe-not-conllu",
        lambda t, p: inspector.syntax_probe(
            t["bert"], _write(p, "x.conllu", "just some text\nwithout columns\n")
        ),
        InputError,
        "CoNLL-U",
    ),
    # ---- memory: every step that allocates refuses before it runs (issue 18)
    *[
        (f"{name}-max-memory", call, ResourceError, "needs about")
        for name, call in [
            ("inspect", lambda t, p: t["bert"].inspect(TEXT, max_memory="1kB")),
            ("inspect-image", lambda t, p: _vit().inspect(_picture(), max_memory="1kB")),
            ("generate", lambda t, p: t["gpt2"].generate(TEXT, max_memory="1kB")),
            ("head-metrics", lambda t, p: inspector.head_metrics(t["bert"], [TEXT], max_memory=1)),
            (
                "head-similarity",
                lambda t, p: inspector.head_similarity(t["bert"], [TEXT], max_memory=1),
            ),
            (
                "head-importance",
                lambda t, p: inspector.head_importance(t["gpt2"], [TEXT], max_memory="1kB"),
            ),
            (
                "head-importance-gradient",
                lambda t, p: _ins(t, "gpt2").explain.gradient(max_memory=1),
            ),
            ("explain", lambda t, p: _ins(t, "gpt2").explain(max_memory="1kB")),
            (
                "information-flow",
                lambda t, p: _ins(t, "gpt2").explain.information_flow(max_memory="1kB"),
            ),
            (
                "logit-attribution",
                lambda t, p: _ins(t, "gpt2").explain.logit_attribution(max_memory="1kB"),
            ),
            ("heads-similarity", lambda t, p: _ins(t).heads.similarity(max_memory="1kB")),
            ("attention-norms", lambda t, p: _ins(t).explain.norms(max_memory="1kB")),
            ("compare", lambda t, p: inspector.compare(_ins(t), _ins(t), max_memory="1kB")),
            ("report", lambda t, p: _ins(t).report(max_memory="1kB")),
            ("scan-page", lambda t, p: _ins(t).report(scan=True, max_memory="1kB")),
            ("to-parquet", lambda t, p: _ins(t).to_parquet(p / "x.parquet", max_memory="1kB")),
            ("to-csv", lambda t, p: _ins(t).to_csv(p / "x.csv", max_memory="1kB")),
            ("scan", lambda t, p: inspector.scan(t["gpt2"], TEXT, topk=5, max_memory="1kB")),
            (
                "scan-topk-table",
                lambda t, p: inspector.scan(t["gpt2"], TEXT, topk=5).to_parquet(
                    p / "s.parquet", "topk", max_memory="1kB"
                ),
            ),
        ]
    ],
    (
        "probe-max-memory",
        lambda t, p: inspector.syntax_probe(
            t["bert"], _write(p, "s.conllu", CONLLU), max_memory="1kB"
        ),
        ResourceError,
        "more than half of the 1 kB (max_memory)",
    ),
    # ---- images: modes and values that cannot reach the model faithfully are refused
    (
        "image-mode-La",
        lambda t, p: _vit().inspect(_picture().convert("LA").convert("La")),
        InputError,
        "mode 'La' are not supported",
    ),
    (
        "image-float-not-unit",
        lambda t, p: _vit().inspect(_picture().convert("F")),  # 0..255, not [0, 1]
        InputError,
        "must hold values in [0, 1]",
    ),
    (
        "image-int32-negative",
        lambda t, p: _vit().inspect(np.full((16, 16), -3, dtype=np.int32)),
        InputError,
        "integers from -3 to -3",
    ),
    (
        "image-int64-over-255",
        lambda t, p: _vit().inspect(np.full((16, 16), 999, dtype=np.int64)),
        InputError,
        "0..255 (uint16 arrays: 0..65535)",
    ),
    (
        "image-nan",
        lambda t, p: _vit().inspect(np.full((16, 16), np.nan)),
        InputError,
        "NaN",
    ),
    # ---- loading
    ("load-unknown", lambda t, p: inspector.load("no-such-short-name"), ModelLoadError, "minilm"),
    (
        "load-hub-offline",
        lambda t, p: inspector.load("someone/some-model"),
        ModelLoadError,
        "the Hugging Face hub could not be reached",
    ),
    (
        "load-hub-offline-says-folder",
        lambda t, p: inspector.load("someone/some-model"),
        ModelLoadError,
        "inspector.load('./some-model')",
    ),
    (
        "load-dtype-int8",
        lambda t, p: inspector.load(t["bert"].bundle.source, dtype="int8"),
        InputError,
        "dtype='int8' is not a floating-point dtype",
    ),
    (
        "load-dtype-unknown",
        lambda t, p: inspector.load(t["bert"].bundle.source, dtype="float99"),
        InputError,
        "dtype='float99'",
    ),
    ("load-number", lambda t, p: inspector.load(3), InputError, "name"),
    ("load-triple", lambda t, p: inspector.load((1, 2, 3)), InputError, "pair"),
    (
        "load-broken-config",
        lambda t, p: inspector.load(str(_write(p, "config.json", "{oops").parent)),
        ModelLoadError,
        "config",
    ),
    # ---- issue 18: rows, special-only input, files
    (
        "scan-rows-step-zero",
        lambda t, p: t["gpt2"].scan(TEXT, rows=slice(0, 5, 0)),
        InputError,
        "step cannot be 0",
    ),
    (
        "scan-rows-empty-slice",
        lambda t, p: t["gpt2"].scan(TEXT, rows=slice(100, 200)),
        InputError,
        "selects none of the",
    ),
    (
        "inspect-typed-specials-only",
        lambda t, p: t["bert"].inspect("[UNK] [SEP]"),
        InputError,
        "spells out special tokens only",
    ),
    (
        "write-read-only",
        lambda t, p: _ins(t).to_csv(_read_only(p, "x.csv")),
        InputError,
        "read-only (mode 0444)",
    ),
    (
        "scan-save-suffix",
        lambda t, p: t["gpt2"].scan(TEXT).save(p / "s.txt"),
        InputError,
        ".parquet or .csv",
    ),
    (
        "atlas-save-report-suffix",
        lambda t, p: inspector.atlas(t["bert"], [TEXT]).save(p / "a.parquet", report=p / "a.pdf"),
        InputError,
        ".html",
    ),
    (
        "output-is-input-hard-link",
        lambda t, p: inspector.api.check_not_input(_link(p), [p / "in.csv"]),
        InputError,
        "is the input",
    ),
    # ---- issue 21: retrieval heads under the paper's protocol need the answer
    (
        "retrieval-own-needle-without-answer",
        lambda t, p: inspector.retrieval_heads(
            t["gpt2"], TEXT, needle="Keys open doors.", question="What opens doors?"
        ),
        InputError,
        "give answer=",
    ),
    (
        "retrieval-answer-not-in-needle",
        lambda t, p: inspector.retrieval_heads(t["gpt2"], TEXT, answer="a sunny Monday"),
        InputError,
        "is not a part of the needle",
    ),
    (
        "retrieval-answer-under-needle-protocol",
        lambda t, p: inspector.retrieval_heads(
            t["gpt2"], TEXT, answer="a sandwich", protocol="needle"
        ),
        InputError,
        "protocol='wu' only",
    ),
    (
        "retrieval-protocol",
        lambda t, p: inspector.retrieval_heads(t["gpt2"], TEXT, protocol="kamradt"),
        InputError,
        "protocol must be one of 'wu', 'needle'",
    ),
]


def _write(folder: Any, name: str, text: str) -> Any:
    path = folder / name
    path.write_text(text)
    return path


def _read_only(folder: Any, name: str) -> Any:
    path = _write(folder, name, "keep me")
    path.chmod(0o444)
    return path


def _link(folder: Any) -> Any:
    """``out.csv``, a hard link to ``in.csv``."""
    os.link(_write(folder, "in.csv", "text\nThe cat sat.\n"), folder / "out.csv")
    return folder / "out.csv"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tiny, tmp_path, case):
    _, call, expected, phrase = case
    with pytest.raises(expected) as info:
        call(tiny, tmp_path)
    message = str(info.value)
    assert phrase.lower() in message.lower(), message
    assert "\n" not in message.strip() or len(message) < 600


def test_control_characters_inside_text_are_fine(tiny):
    ins = tiny["bert"].inspect("The cat\x00 sat\x1b on the mat.")
    assert "cat" in ins.tokens and "sat" in ins.tokens


def test_truncation_handles_100k_characters(tiny):
    ins = tiny["bert"].inspect(LONG, truncation=True)
    assert len(ins.tokens) == 64


CLI_CASES: list[tuple[str, list[str], str]] = [
    ("inspect-empty", ["inspect", "{bert}", "", "-o", "{tmp}/x.csv"], "empty"),
    ("inspect-long", ["inspect", "{bert}", LONG[:2000], "-o", "{tmp}/x.csv"], "--truncate"),
    (
        "inspect-layers",
        ["inspect", "{bert}", TEXT, "--layers", "9", "-o", "{tmp}/x.csv"],
        "out of range",
    ),
    ("inspect-suffix", ["inspect", "{bert}", TEXT, "-o", "{tmp}/x.xlsx"], ".parquet or .csv"),
    ("inspect-model", ["inspect", "nope-model", TEXT, "-o", "{tmp}/x.csv"], "minilm"),
    ("inspect-folder", ["inspect", "{tmp}", TEXT, "-o", "{tmp}/x.csv"], "config.json"),
    ("inspect-out-dir", ["inspect", "{bert}", TEXT, "-o", "/proc/nope/x.csv"], "cannot"),
    ("report-empty", ["report", "{bert}", " ", "-o", "{tmp}/r.html"], "empty"),
    ("report-suffix", ["report", "{bert}", TEXT, "-o", "{tmp}/r.pdf"], ".html"),
    ("heads-none", ["heads", "{bert}"], "text"),
    ("heads-file", ["heads", "{bert}", "--file", "{tmp}/none.txt"], "does not exist"),
    ("compare-nothing", ["compare", "{bert}", TEXT], "--text-b"),
    ("compare-models", ["compare", "{bert}", TEXT, "--model-b", "{gpt2}"], "tokenizer"),
    ("explain-suffix", ["explain", "{bert}", TEXT, "-o", "{tmp}/e.csv"], ".html"),
    (
        "explain-target",
        ["explain", "{gpt2}", TEXT, "--target", "bogus:1", "-o", "{tmp}/e.html"],
        "target",
    ),
    (
        "atlas-file",
        ["atlas", "{bert}", "{tmp}/none.txt", "-o", "{tmp}/a.parquet"],
        "does not exist",
    ),
    ("atlas-suffix", ["atlas", "{bert}", "{tmp}/none.txt", "-o", "{tmp}/a.csv"], ".parquet"),
    # a Ray address: one line at once (a closed port: not minutes of Ray's GCS retries)
    *[
        (name, ["atlas", "{bert}", "{tmp}/t.txt", "-o", "{tmp}/a.parquet", *ray], phrase)
        for name, ray, phrase in [
            (
                "atlas-ray-address",
                ["--engine", "ray", "--address", "127.0.0.1:1"],
                "no Ray cluster answers at 127.0.0.1:1 (connection refused); start one with",
            ),
            ("atlas-ray-address-form", ["--engine", "ray", "--address", "ray://h"], "HOST:PORT"),
            ("atlas-address-without-ray", ["--address", "auto"], "--engine ray --address"),
        ]
    ],
    ("probe-file", ["probe", "{bert}", "{tmp}/none.conllu"], "does not exist"),
    (
        "generate-zero",
        ["generate", "{gpt2}", TEXT, "--max-new-tokens", "0", "-o", "{tmp}/g.html"],
        "max_new_tokens",
    ),
    ("generate-suffix", ["generate", "{gpt2}", TEXT, "-o", "{tmp}/g.txt"], ".html"),
    ("generate-empty", ["generate", "{gpt2}", " ", "-o", "{tmp}/g.html"], "empty"),
    (
        "report-no-folder",
        ["report", "{bert}", TEXT, "-o", "{tmp}/no/such/dir/r.html"],
        "does not exist; create it first, or add --mkdir",
    ),
    ("heads-no-folder", ["heads", "{bert}", TEXT, "-o", "{tmp}/none/h.csv"], "--mkdir"),
    ("atlas-no-folder", ["atlas", "{bert}", "{tmp}/t.txt", "-o", "{tmp}/no/a.parquet"], "--mkdir"),
    (
        "inspect-dtype",
        ["inspect", "{bert}", TEXT, "--dtype", "int8", "-o", "{tmp}/x.csv"],
        "not a floating-point dtype",
    ),
    (
        "inspect-hub-offline",
        ["inspect", "someone/some-model", TEXT, "-o", "{tmp}/x.csv"],
        "hub could not be reached",
    ),
    # ---- issue 18: rows, special-only input, outputs that are inputs, read-only outputs
    (
        "scan-rows-step-zero",
        ["scan", "{gpt2}", TEXT, "--rows", "0:5:0", "-o", "{tmp}/s.csv"],
        "a slice's step cannot be 0",
    ),
    (
        "scan-rows-commas",
        ["scan", "{gpt2}", TEXT, "--rows", ",,,", "-o", "{tmp}/s.csv"],
        "expected query positions",
    ),
    (
        "scan-output-is-input",
        ["scan", "{gpt2}", "--file", "{tmp}/notes.csv", "-o", "{tmp}/notes.csv"],
        "is the input",
    ),
    (
        "scan-sidecar-is-input",
        ["scan", "{gpt2}", "--file", "{tmp}/notes.rows.csv", "-o", "{tmp}/notes.csv"],
        "is the input",
    ),
    (
        "retrieval-output-is-haystack",
        ["retrieval", "{gpt2}", "--haystack", "{tmp}/hay.csv", "-o", "{tmp}/hay.csv"],
        "is the input",
    ),
    (
        "heads-output-is-a-link-to-input",
        ["heads", "{bert}", "--file", "{tmp}/notes.csv", "-o", "{tmp}/link.csv"],
        "is the input",
    ),
    (
        "atlas-checkpoint-is-output",
        [
            "atlas",
            "{bert}",
            "{tmp}/notes.csv",
            "-o",
            "{tmp}/a.parquet",
            "--checkpoint",
            "{tmp}/a.parquet",
        ],
        "are one file",
    ),
    (
        "inspect-read-only-output",
        ["inspect", "{bert}", TEXT, "-o", "{tmp}/read-only.csv"],
        "read-only (mode 0444), so it was left as it is; add --force",
    ),
    (
        "inspect-typed-specials-only",
        ["inspect", "{bert}", "[SEP] [UNK]", "-o", "{tmp}/x.csv"],
        "spells out special tokens only",
    ),
    # ---- issue 21: the answer a needle of your own needs
    (
        "retrieval-needle-without-answer",
        [
            "retrieval",
            "{gpt2}",
            "--haystack",
            "{tmp}/hay.csv",
            "--needle",
            "Keys open doors.",
            "--question",
            "What opens doors?",
            "-o",
            "{tmp}/r.csv",
        ],
        "(CLI --answer)",
    ),
    (
        "retrieval-protocol",
        [
            "retrieval",
            "{gpt2}",
            "--haystack",
            "{tmp}/hay.csv",
            "--protocol",
            "x",
            "-o",
            "{tmp}/r.csv",
        ],
        "invalid choice",
    ),
    # every command takes --max-memory and refuses in one line before it allocates
    *[
        (f"{argv[0]}-max-memory", [*argv, "--max-memory", "1kB"], "needs about")
        for argv in [
            ["inspect", "{bert}", TEXT, "-o", "{tmp}/x.parquet"],
            ["report", "{bert}", TEXT, "-o", "{tmp}/r.html"],
            ["heads", "{bert}", TEXT, "-o", "{tmp}/h.csv"],
            ["compare", "{bert}", TEXT, "--text-b", "A dog.", "-o", "{tmp}/c.html"],
            ["explain", "{gpt2}", TEXT, "-o", "{tmp}/e.html"],
            ["generate", "{gpt2}", TEXT, "-o", "{tmp}/g.html"],
            ["scan", "{gpt2}", TEXT, "--topk", "5", "-o", "{tmp}/s.parquet"],
            ["trace", "{gpt2}", TEXT, "-o", "{tmp}/t.html"],
            [
                "retrieval",
                "{gpt2}",
                "--haystack",
                "{tmp}/hay.txt",
                "--lengths",
                "62",
                "--needle",
                "The cat sat.",
                "--question",
                "The mat?",
                "--answer",
                "sat",
                "--max-new-tokens",
                "1",
                "-o",
                "{tmp}/r.csv",
            ],
        ]
    ],
    (
        "atlas-max-memory",
        ["atlas", "{bert}", "{tmp}/t.txt", "--max-memory", "1kB", "-o", "{tmp}/a.parquet"],
        "more than half of the 1 kB",
    ),
    (
        "probe-max-memory",
        ["probe", "{bert}", "{tmp}/s.conllu", "--max-memory", "1kB", "-o", "{tmp}/p.csv"],
        "more than half of the 1 kB",
    ),
]


def _inputs(folder: Any) -> None:
    """The files the CLI cases name as inputs (and a read-only output)."""
    for name in ("notes.csv", "notes.rows.csv", "hay.csv"):
        _write(folder, name, "The cat sat on the mat.\n")
    os.link(folder / "notes.csv", folder / "link.csv")
    _read_only(folder, "read-only.csv")


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(tiny_dirs, tmp_path, capsys, case):
    from inspector.cli import main

    _, argv, phrase = case
    fill = {"bert": str(tiny_dirs["bert"]), "gpt2": str(tiny_dirs["gpt2"]), "tmp": str(tmp_path)}
    _inputs(tmp_path)
    for name, text in (("t.txt", TEXT + "\n"), ("hay.txt", TEXT * 40), ("s.conllu", CONLLU)):
        (tmp_path / name).write_text(text, encoding="utf-8")  # inputs the memory cases read
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    try:
        rc = main([a.format(**fill) for a in argv])
    except SystemExit as exc:  # an argument argparse refuses: the same one line, exit 2
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and err.startswith("inspector: error: "), err
    assert "Traceback" not in err
    assert phrase.lower() in err.lower(), err
    after = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # nothing written, not even half a file; no input changed


def test_a_ray_cluster_refusing_the_driver_is_one_line_naming_the_token(monkeypatch):
    """Ray retries a cluster that refuses this driver (no token: Ray looks for one by itself
    only at addresses it finds itself), then raises a ConnectionError; that is one line, with
    what token authentication needs when this environment has no token mode."""
    import types

    from inspector.corpus.ray_engine import _connect

    def refuse(**kw: Any) -> None:
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379.\n  (details)")

    fake = types.SimpleNamespace(init=refuse, exceptions=types.SimpleNamespace(RayError=OSError))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    for address, hint in (("10.0.0.1:6379", True), ("auto", False)):
        with pytest.raises(InputError) as info:
            _connect(fake, address)
        message = str(info.value)
        assert message.startswith("could not connect to ") and "\n" not in message
        assert "Failed to connect to Ray cluster at 10.0.0.1:6379. (details)" in message
        assert ("RAY_AUTH_MODE=token and its token" in message) == hint, message
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(InputError, match=r"6379\. \(details\)$"):
        _connect(fake, "10.0.0.1:6379")
