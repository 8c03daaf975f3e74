"""Correctness at the edges and our own error lines (issue 15): incomplete checkpoints, which
weights load, devices, [UNK], texts with no visible token, encoder-decoders with stacks of other
shapes, treebanks that are not trees, comparisons with little in common, sampling options,
command lines that are not UTF-8, full disks."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import inspector
from inspector.errors import InputError, InspectorWarning, ModelLoadError

from factories import (
    CORPUS,
    EWT_DEV,
    VOCAB_SIZE,
    assert_equals_forward,
    bytelevel_tokenizer,
    cli_fails,
    parse,
    sentencepiece_tokenizer,
)

TEXT = "The cat sat on the mat because it was tired."


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_weights(folder: Path, change) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    save_file(change(load_file(path)), path, metadata={"format": "pt"})


# ----------------------------------------------------------------------- incomplete weights


def test_a_checkpoint_without_layer_1_is_refused(tiny_dirs, tmp_path, capsys):
    folder = _copy(tiny_dirs["bert"], tmp_path / "no-layer-1")
    _rewrite_weights(folder, lambda sd: {k: v for k, v in sd.items() if "layer.1." not in k})
    with pytest.raises(ModelLoadError) as info:
        inspector.load(str(folder))
    message = str(info.value)
    assert "lacks 16 weight(s) of the transformer itself: bert.encoder.layer.1.*" in message
    assert "initialised at random" in message and "complete checkpoint" in message
    cli_fails(["inspect", str(folder), TEXT, "-o", str(tmp_path / "x.csv")], capsys, "lacks 16")
    assert not (tmp_path / "x.csv").exists()


def test_unexpected_and_misshaped_weights_are_refused(tiny_dirs, tmp_path):
    deeper = _copy(tiny_dirs["bert"], tmp_path / "deeper")

    def add_layer(sd):  # type: ignore[no-untyped-def]
        extra = {
            k.replace("layer.1.", "layer.2."): v.clone() for k, v in sd.items() if "layer.1." in k
        }
        return {**sd, **extra}

    _rewrite_weights(deeper, add_layer)
    with pytest.raises(ModelLoadError, match=r"does not use: bert.encoder.layer.2.\* \(16"):
        inspector.load(str(deeper))
    embeddings = _copy(tiny_dirs["gpt2"], tmp_path / "no-embeddings")
    _rewrite_weights(embeddings, lambda sd: {k: v for k, v in sd.items() if "wpe" not in k})
    with pytest.raises(ModelLoadError, match=r"lacks 1 weight.*wpe"):
        inspector.load(str(embeddings))


def test_missing_task_head_weights_are_tolerated_and_said(tiny, tiny_dirs, tmp_path, capsys):
    folder = _copy(tiny_dirs["bert"], tmp_path / "no-mlm-head")
    _rewrite_weights(folder, lambda sd: {k: v for k, v in sd.items() if not k.startswith("cls.")})
    with pytest.warns(InspectorWarning, match=r"task-head weight.*cls\.predictions.*attention"):
        m = inspector.load(str(folder))
    assert m.bundle.extra["random_head_weights"]
    np.testing.assert_array_equal(m.inspect(TEXT).attention, tiny["bert"].inspect(TEXT).attention)
    # a bare BertModel from this MLM checkpoint: pooler missing, cls.* unused; both heads
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertModel"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(InspectorWarning, match="pooler"):
        inspector.load(str(folder))
    out = tmp_path / "x.csv"
    assert inspector.cli.main(["inspect", str(folder), TEXT, "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inspector: warning: ") and "pooler" in err[0]


# ------------------------------------------------------------------------- which weights load


class _Marker:
    """Unpickling this writes a marker file: proof that a pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def test_a_stray_safetensors_does_not_let_a_pickle_load(tiny, tiny_dirs, tmp_path, capsys):
    marker = tmp_path / "unpickled.txt"
    folder = _copy(tiny_dirs["bert"], tmp_path / "stray")
    (folder / "model.safetensors").rename(folder / "adapter.safetensors")
    with (folder / "pytorch_model.bin").open("wb") as f:
        pickle.dump(_Marker(str(marker)), f)
    with pytest.raises(ModelLoadError, match=r"adapter.safetensors is not a checkpoint"):
        inspector.load(str(folder))
    cli_fails(["inspect", str(folder), TEXT, "-o", str(tmp_path / "x.csv")], capsys, "pickle")
    assert not marker.exists()
    # model.safetensors beside a pickle: the safetensors load, the pickle never runs
    both = _copy(tiny_dirs["bert"], tmp_path / "both")
    with (both / "pytorch_model.bin").open("wb") as f:
        pickle.dump(_Marker(str(marker)), f)
    m = inspector.load(str(both))
    np.testing.assert_array_equal(m.inspect(TEXT).attention, tiny["bert"].inspect(TEXT).attention)
    assert not marker.exists()
    # a trusted pickle loads with allow_pickle
    trusted = _copy(tiny_dirs["bert"], tmp_path / "trusted")
    (trusted / "model.safetensors").rename(trusted / "adapter.safetensors")
    torch.save(tiny["bert"].model.state_dict(), trusted / "pytorch_model.bin")
    m = inspector.load(str(trusted), allow_pickle=True)
    np.testing.assert_array_equal(m.inspect(TEXT).attention, tiny["bert"].inspect(TEXT).attention)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_devices_this_machine_lacks(tiny_dirs, tmp_path, capsys):
    for device, phrase in [
        ("cuda", "no cuda device"),
        ("cuda:1", "no cuda device"),
        ("banana", "unknown device 'banana'"),
    ]:
        with pytest.raises(InputError, match=phrase):
            inspector.load(str(tiny_dirs["bert"]), device=device)
    err = cli_fails(
        [
            "inspect",
            str(tiny_dirs["bert"]),
            TEXT,
            "--device",
            "cuda",
            "-o",
            str(tmp_path / "x.csv"),
        ],
        capsys,
        "no cuda device",
    )
    assert "--device cpu" in err


# ------------------------------------------------------------------------------------ [UNK]


def test_unknown_token_is_a_word_not_a_special_token(tiny):
    m = tiny["bert"]
    ins = m.inspect("The cat 🐈 sat ☃ on the mat.")
    unk = [i for i, t in enumerate(ins.tokens) if t == "[UNK]"]
    assert len(unk) == 2
    assert not ins.stack.query.special[unk].any()
    words = ins.stack.query.word_ids[~ins.stack.query.special]
    assert list(words) == sorted(words) and len(set(words)) == 9  # no gap, no renumbering
    query_words = ins.frame(level="word")["query_token"].unique().tolist()
    assert "🐈" in query_words and "☃" in query_words
    gpt2 = tiny["gpt2"].inspect("<|endoftext|> hello")  # its unknown token is also its eos
    assert gpt2.stack.query.special[0]
    with pytest.raises(InputError, match="no token but special ones"):
        tiny["gpt2"].inspect("<|endoftext|>")
    # ... but generation may start from it (unconditional generation)
    assert tiny["gpt2"].generate("<|endoftext|>", max_new_tokens=2).generation.prompt_length == 1


def test_the_probe_aligns_sentences_with_unknown_words(tiny, tmp_path):
    rows = ["The\tthe\tDET\t2\tdet", "🐈\t_\tNOUN\t3\tnsubj", "sat\tsit\tVERB\t0\troot"]
    text = "".join(
        f"{i}\t{form}\t{lemma}\t{upos}\t_\t_\t{head}\t{rel}\t_\t_\n"
        for i, (form, lemma, upos, head, rel) in enumerate((r.split("\t") for r in rows), 1)
    )
    path = tmp_path / "unk.conllu"
    path.write_text(f"# sent_id = 1\n{text}\n", encoding="utf-8")
    result = inspector.syntax_probe(tiny["bert"], path)
    assert result.metadata["skipped_unaligned"] == 0
    assert set(result.table["relation"]) == {"det", "nsubj"}


# --------------------------------------------------------------------- no visible token at all


@pytest.mark.parametrize("text", ["\u0301", "\u0301\u0302\ufe0f", "\ufe0f\u200d"])
def test_a_text_of_special_tokens_only_is_refused(tiny, tiny_dirs, tmp_path, capsys, text):
    with pytest.raises(InputError, match=r"no token but special ones \(\[CLS\], \[SEP\]\)"):
        tiny["bert"].inspect(text)
    with pytest.raises(InputError, match="text_pair has no token"):
        tiny["bert"].inspect(TEXT, text)
    out = tmp_path / "x.parquet"
    cli_fails(["inspect", str(tiny_dirs["bert"]), text, "-o", str(out)], capsys, "special ones")
    assert not out.exists()


# ------------------------------------------------------- encoder-decoders of unequal stacks


def _unequal(kind: str, folder: Path) -> Path:
    import transformers as tf

    torch.manual_seed(0)
    common = {"vocab_size": VOCAB_SIZE + 100}
    if kind == "bart":
        tok = bytelevel_tokenizer(template=True)
        cfg = tf.BartConfig(
            d_model=32, encoder_layers=3, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=64, bos_token_id=0, pad_token_id=1, eos_token_id=2,
            decoder_start_token_id=2, forced_eos_token_id=2, **common,
        )  # fmt: skip
        model = tf.BartForConditionalGeneration(cfg)
    else:
        tok = sentencepiece_tokenizer()
        cfg = tf.T5Config(
            d_model=32, d_kv=16, d_ff=64, num_layers=3, num_decoder_layers=1, num_heads=2,
            decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **common,
        )  # fmt: skip
        model = tf.T5ForConditionalGeneration(cfg)
    model.eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["bart", "t5"])
def test_encoder_decoders_with_stacks_of_other_shapes(kind, tmp_path):
    m = inspector.load(str(_unequal(kind, tmp_path / kind)))
    enc, dec = {"bart": ((3, 4), (2, 2)), "t5": ((3, 2), (1, 2))}[kind]
    assert m.bundle.stack_shape("encoder") == enc and m.bundle.stack_shape("decoder") == dec
    ins = m.inspect(TEXT, target="A dog barked.")
    assert ins.encoder.attention.shape[:2] == enc
    assert ins.decoder.attention.shape[:2] == ins.cross.attention.shape[:2] == dec
    assert_equals_forward(m, ins)
    gen = m.generate(TEXT, max_new_tokens=3)
    assert_equals_forward(m, gen, atol=1e-4)
    assert gen.cross.attention.shape[:2] == dec
    atlas = inspector.atlas(m, CORPUS, kind="decoder", progress=False, distances=False)
    assert atlas.metadata["n_layers"], atlas.metadata["n_heads"] == dec
    assert inspector.atlas(m, CORPUS, progress=False).distances.shape == (enc[0] * enc[1],) * 2
    with pytest.raises(InputError, match=f"decoder layer {dec[0]} is out of range"):
        m.inspect(TEXT, layers=[dec[0]])
    frame = ins.frame()
    assert frame.groupby("kind", observed=True)["layer"].nunique().to_dict() == {
        "encoder": enc[0], "decoder": dec[0], "cross": dec[0],
    }  # fmt: skip


# -------------------------------------------------------------------------- treebank checks


def test_the_probe_refuses_a_treebank_without_heads_and_skips_cycles(
    tiny, tiny_dirs, tmp_path, capsys
):
    ROW = "{}\t{}\t_\tX\t_\t_\t{}\t{}\t_\t_"

    def sentence(words: list[str], heads: list[str]) -> str:
        rel = ["root" if h == "0" else "dep" for h in heads]
        return "\n".join(ROW.format(i, w, h, r) for i, (w, h, r) in
                         enumerate(zip(words, heads, rel, strict=True), 1)) + "\n\n"  # fmt: skip

    words = ["the", "cat", "sat"]
    no_heads = tmp_path / "no-heads.conllu"
    no_heads.write_text(sentence(words, ["_", "_", "_"]) * 3, encoding="utf-8")
    with pytest.raises(InputError, match=r"of 3 sentence.s., 3 have no HEAD"):
        inspector.syntax_probe(tiny["bert"], no_heads)
    cli_fails(["probe", str(tiny_dirs["bert"]), str(no_heads)], capsys, "have no HEAD")
    mixed = tmp_path / "mixed.conllu"
    mixed.write_text(
        sentence(words, ["2", "3", "0"])
        + sentence(words, ["2", "3", "2"])  # 2 -> 3 -> 2: a cycle
        + sentence(words, ["_", "3", "0"]),
        encoding="utf-8",
    )
    result = inspector.syntax_probe(tiny["bert"], mixed)
    meta = result.metadata
    assert (meta["n_scored_sentences"], meta["skipped_not_a_tree"], meta["skipped_no_heads"]) == (
        1, 1, 1,
    )  # fmt: skip
    assert inspector.cli.main(["probe", str(tiny_dirs["bert"]), str(mixed), "--no-progress"]) == 0
    assert "1 sentences scored (1 without heads, 1 not trees)" in capsys.readouterr().out
    three = tmp_path / "three.conllu"
    three.write_text("1\tThe\tDET\n2\tcat\tNOUN\n\n", encoding="utf-8")
    cli_fails(["probe", str(tiny_dirs["bert"]), str(three)], capsys, "line 1: 3 column(s)")


@pytest.mark.skipif(not EWT_DEV.exists(), reason="treebank not found")
def test_ewt_has_no_problem_sentences(ewt_slice):
    from inspector.corpus.treebank import read_treebank

    assert all(s.problem is None for s in read_treebank(ewt_slice))


# ------------------------------------------------------------------------------ comparisons


def test_compare_reports_the_aligned_share_and_warns_when_little_is_shared(tiny, tiny_dirs, capsys):
    m = tiny["bert"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        close = inspector.compare(m.inspect("The keys to the cabinet are"),
                                  m.inspect("The key to the cabinet is"))  # fmt: skip
    assert close.warning is None and 0.5 <= close.matched_share <= close.aligned_share <= 1.0
    with pytest.warns(InspectorWarning, match=r"only 2 of \d+ tokens"):
        far = inspector.compare(
            m.inspect("Unbelievable results were reported."), m.inspect("A dog barked at me!")
        )
    assert far.matched_share < 0.5 and "minimal pairs" in (far.warning or "")
    page = parse(far.report().html)
    warned = [a for t, a in page.tags if "ins-warning" in (a.get("class") or "").split()]
    assert len(warned) == 1  # one warning element in the page (CSS and JS name the class too)
    rc = inspector.cli.main(
        ["compare", str(tiny_dirs["bert"]), "Unbelievable results were reported.",
         "--text-b", "A dog barked at me!"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0 and captured.err.strip().startswith("inspector: warning: only 2 of")
    assert "of the longer input" in captured.out


# ------------------------------------------------------------------------ sampling options


def test_temperature_zero_is_greedy_and_bad_values_are_refused(tiny, tiny_dirs, tmp_path, capsys):
    m = tiny["gpt2"]
    greedy = m.generate(TEXT, max_new_tokens=4)
    zero = m.generate(TEXT, max_new_tokens=4, do_sample=True, temperature=0)
    assert zero.tokens == greedy.tokens
    np.testing.assert_array_equal(zero.attention, greedy.attention)
    for value in (-0.5, math.nan, math.inf, -math.inf):
        with pytest.raises(InputError, match="not a finite number >= 0; use 0 for greedy"):
            m.generate(TEXT, max_new_tokens=2, do_sample=True, temperature=value)
    with pytest.raises(InputError, match=r"top_p=1.5 must be in \(0, 1\]"):
        m.generate(TEXT, max_new_tokens=2, do_sample=True, top_p=1.5)
    with pytest.raises(InputError, match=r"generate.. refused the options"):
        m.generate(TEXT, max_new_tokens=2, generation_options={"min_p": 3.0, "do_sample": True})
    out = tmp_path / "g.csv"
    gpt2 = str(tiny_dirs["gpt2"])
    assert inspector.cli.main(["generate", gpt2, TEXT, "--temperature", "0", "-o", str(out)]) == 0
    for value in ("-1", "nan", "inf"):
        cli_fails(["generate", gpt2, TEXT, "--temperature", value, "-o", str(out)], capsys,
                  "temperature")  # fmt: skip


# -------------------------------------------------------------------------- our error lines


def _cli(args: list[bytes | str], tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from inspector.cli import main; sys.exit(main())",
            *args,
        ],
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_bytes_that_are_not_utf8_on_the_command_line(tiny_dirs, tmp_path):
    """A shell passes raw bytes: Python turns them into lone surrogates; we say so."""
    out = tmp_path / "x.csv"
    done = _cli(["inspect", str(tiny_dirs["bert"]), b"caf\xe9 au lait", "-o", str(out)], tmp_path)
    err = done.stderr.decode("utf-8", "backslashreplace").strip()
    assert done.returncode == 2 and err.count("\n") == 0, err
    assert err.startswith("inspector: error: text holds a lone surrogate (U+DCE9 at character 4)")
    assert "not UTF-8" in err and not out.exists()
    done = _cli(["inspect", str(tiny_dirs["bert"]), TEXT, "--pair", b"\xff", "-o", str(out)],
                tmp_path)  # fmt: skip
    assert done.returncode == 2 and b"text_pair holds a lone surrogate" in done.stderr


def test_files_that_are_not_utf8(tiny_dirs, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"A fine text.\nLatin-1: caf\xe9\n")
    cli_fails(["heads", str(tiny_dirs["bert"]), "--file", str(texts)], capsys,
              "texts.txt, line 2: not valid UTF-8")  # fmt: skip
    conllu = tmp_path / "t.conllu"
    conllu.write_bytes(b"1\tcaf\xe9\t_\tX\t_\t_\t0\troot\t_\t_\n\n")
    cli_fails(["probe", str(tiny_dirs["bert"]), str(conllu)], capsys,
              "t.conllu, line 1: not valid UTF-8")  # fmt: skip


def test_read_atlas_of_files_that_are_not_atlases(tmp_path):
    cases = {
        "x.txt": b"hello",
        "y.parquet": b"not parquet at all, but long enough to have a footer",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(
            InputError, match=r"not a readable atlas .Parquet. file.*inspector atlas"
        ):
            inspector.read_atlas(tmp_path / name)
    (tmp_path / "d.parquet").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        inspector.read_atlas(tmp_path / "d.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(InputError, match="not an atlas written by inspector"):
        inspector.read_atlas(tmp_path / "other.parquet")


def test_full_disk_on_the_command_line(tiny_dirs, small_disk, tmp_path, capsys):
    """A real 256 KiB filesystem: one line, exit 2, nothing left on it."""
    long_text = " ".join(CORPUS) * 2
    err = cli_fails(
        ["inspect", str(tiny_dirs["bert"]), long_text, "--truncate", "-o",
         str(small_disk / "x.csv")],
        capsys,
        "No space left on device",
    )  # fmt: skip
    assert err.startswith(f"inspector: error: could not write {small_disk / 'x.csv'}")
    assert "another disk" in err
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 3))
    filler = small_disk / "filler"
    with pytest.raises(OSError), filler.open("wb") as f:  # fill the disk to the last byte
        for _ in range(1000):
            f.write(b"\0" * 4096)
            f.flush()
    cli_fails(
        ["atlas", str(tiny_dirs["bert"]), str(corpus), "-o", str(small_disk / "a.parquet"),
         "--no-progress"],
        capsys,
        "No space left on device",
    )  # fmt: skip
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_an_unknown_failure_still_names_command_input_and_what_to_do(
    tiny_dirs, tmp_path, capsys, monkeypatch
):
    import inspector.api as api

    def broken(*_a, **_k):  # type: ignore[no-untyped-def]
        raise RuntimeError("something deep\nin a library")

    monkeypatch.setattr(api, "load", broken)
    err = cli_fails(
        ["inspect", str(tiny_dirs["bert"]), TEXT, "-o", str(tmp_path / "x.csv")], capsys, ""
    )
    assert err.startswith(f"inspector: error: inspect on {tiny_dirs['bert']}, 'The cat sat")
    assert "failed with RuntimeError: something deep in a library" in err
    assert "--debug" in err and "report it" in err


def test_a_dtype_that_is_not_floating_point(tiny_dirs, tmp_path, capsys):
    cli_fails(
        ["inspect", str(tiny_dirs["bert"]), TEXT, "--dtype", "int8", "-o", str(tmp_path / "x.csv")],
        capsys,
        "is not a floating-point dtype",
    )
