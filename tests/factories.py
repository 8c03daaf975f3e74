"""Shared builders for the tests: tokens, captures and tiny random models, offline.

Not a test module (nothing here is collected); every tier imports what it needs with
``from factories import ...`` (``tests/`` is on ``sys.path`` through the root conftest).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from inspector.capture.types import AttentionStack, Capture, Tokens

CORPUS = [
    "The cat sat on the mat because it was tired.",
    "A dog barked at the mailman, who ran away quickly!",
    "Attention heads look at previous tokens, separators and punctuation.",
    "Unbelievable results were reported in the paper's appendix.",
    'She said: "hello world" and then left the room.',
    "The keys to the cabinet are on the table.",
]

VOCAB_SIZE = 200

#: The UD English EWT development treebank (CC BY-SA 4.0), in the shared/ folder beside the repo.
EWT_DEV = Path(__file__).resolve().parents[2] / "shared/data/ud-english-ewt/en_ewt-ud-dev.conllu"

#: Token strings :func:`make_tokens` marks special unless told otherwise.
SPECIAL_STRINGS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]", "<s>", "</s>", "<pad>"})

#: Tokens that must never run, break a page or widen it (fuzzing of every page).
HOSTILE = [
    "[CLS]",
    "</script><script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    'it\'s "quoted"',
    "back\\slash",
    "שלום",
    "🐈‍⬛",
    "{{ 7*7 }}",
    "[SEP]",
]


def make_tokens(
    strings: Sequence[str] | int,
    special: Sequence[bool] | None = None,
    ids: Sequence[int] | None = None,
    *,
    pair_start: int | None = None,
    text: str | None = None,
) -> Tokens:
    """Tokens from strings (or ``n`` tokens ``t0 .. t{n-1}``): special tokens (by default those
    in :data:`SPECIAL_STRINGS`) have no word; ``pair_start`` starts the second sequence."""
    if isinstance(strings, int):
        strings = [f"t{i}" for i in range(strings)]
    n = len(strings)
    sp = np.array(
        [s in SPECIAL_STRINGS for s in strings] if special is None else special, dtype=bool
    )
    seq = np.zeros(n, dtype=np.int8)
    if pair_start is not None:
        seq[pair_start:] = 1
    seq[sp] = -1
    words = np.where(sp, -1, np.cumsum(~sp) - 1).astype(np.int32)
    return Tokens(
        tuple(strings),
        np.asarray(ids if ids is not None else np.arange(n), dtype=np.int64),
        sp,
        words,
        seq,
        np.full((n, 2), -1, dtype=np.int32),
        (text or " ".join(s for s, x in zip(strings, sp, strict=True) if not x),),
    )


def random_weights(
    layers: int, heads: int, n: int, *, seed: int = 0, causal: bool = False, sharp: float = 1.0
) -> np.ndarray:
    """Softmax of random logits, float32 ``(layer, head, n, n)``; rows sum to 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(layers, heads, n, n)) * sharp
    if causal:
        logits = np.where(np.triu(np.ones((n, n), bool), 1), -np.inf, logits)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


def random_stack(strings: Sequence[str], seed: int) -> AttentionStack:
    """A 2-layer, 2-head stack of Dirichlet rows over ``strings``."""
    toks = make_tokens(strings)
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(len(strings)), size=(2, 2, len(strings))).astype(np.float32)
    return AttentionStack(w, toks, toks)


def make_capture(
    tokens: Sequence[str] = HOSTILE,
    *,
    layers: int = 2,
    heads: int = 3,
    pair_start: int | None = None,
    seed: int = 0,
    text: str = "",
) -> Capture:
    """A self-attention capture of peaked random weights over ``tokens`` (hostile by default)."""
    rng = np.random.default_rng(seed)
    w = rng.random((layers, heads, len(tokens), len(tokens))) ** 4
    w = (w / w.sum(-1, keepdims=True)).astype(np.float32)
    toks = make_tokens(tokens, pair_start=pair_start, text=text or " ".join(tokens))
    meta = {"model_name": "toy", "n_layers": layers, "n_heads": heads, "text": toks.texts[0]}
    return Capture({"self": AttentionStack(w, toks, toks)}, meta)


class _Page(HTMLParser):
    """Collects what the tests look at: tags with attributes, script bodies, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._in: tuple[dict[str, str | None], list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = (dict(attrs), [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in is not None:
            self.scripts.append((self._in[0], "".join(self._in[1])))
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._in[1].append(data)
        else:
            self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


# ------------------------------------------------------------------------- tiny models


def wordpiece_tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        CORPUS, WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def bytelevel_tokenizer(template: bool) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>"] if template else ["<|endoftext|>"]
    tok.train_from_iterator(
        CORPUS,
        BpeTrainer(
            vocab_size=VOCAB_SIZE + 100,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", 0), ("</s>", 2)],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            model_max_length=64,
        )
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=64,
    )


def sentencepiece_tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import UnigramTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        CORPUS,
        UnigramTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=64,
    )


def build_tiny(kind: str) -> tuple[object, object]:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    common = {"vocab_size": VOCAB_SIZE + 100}
    if kind == "bert":
        tok = wordpiece_tokenizer()
        cfg = tf.BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            **common,
        )
        model = tf.BertForMaskedLM(cfg)
    elif kind == "gpt2":
        tok = bytelevel_tokenizer(template=False)
        cfg = tf.GPT2Config(
            n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0, **common
        )
        model = tf.GPT2LMHeadModel(cfg)
    elif kind == "t5":
        tok = sentencepiece_tokenizer()
        cfg = tf.T5Config(
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
            **common,
        )
        model = tf.T5ForConditionalGeneration(cfg)
    elif kind == "bart":
        tok = bytelevel_tokenizer(template=True)
        cfg = tf.BartConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,
            forced_eos_token_id=2,
            **common,
        )
        model = tf.BartForConditionalGeneration(cfg)
    else:  # pragma: no cover
        raise ValueError(kind)
    model.eval()
    return model, tok


def build_tiny_llama(tokenizer: object, *, layers: int = 2, positions: int = 64) -> object:
    """A tiny LLaMA with 4 query heads sharing 2 key/value heads (GQA), rotary positions;
    ``tokenizer`` is any tiny tokenizer (the GPT-2 one fits its 300-token vocabulary)."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = tf.LlamaForCausalLM(cfg)
    model.eval()
    return model, tokenizer


def make_scan_data(
    n_tokens: int = 8192,
    *,
    layers: int = 30,
    heads: int = 9,
    rows: Sequence[int] = (-1,),
    pool: int = 256,
    seed: int = 0,
) -> Any:
    """A scan of a long causal input with SmolLM2's shape, built from random statistics (no
    model, no T x T array): what a page of 8k tokens has to draw."""
    from inspector.analysis.scan import ScanData, ScanStack, pool_edges

    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", ",", ".", "and", "then", "it", "slept"]
    strings = [
        "<|im_start|>",
        *[("Ġ" if i % 3 else "") + words[i % 12] for i in range(1, n_tokens)],
    ]
    toks = make_tokens(strings, special=[i == 0 for i in range(n_tokens)])
    positions = tuple(sorted({r % n_tokens for r in rows}))
    edges = pool_edges(n_tokens, pool)
    nb = len(edges) - 1
    row = rng.random((layers, heads, len(positions), n_tokens)).astype(np.float32) ** 16
    row[..., 0] += 2.0
    row /= row.sum(-1, keepdims=True)
    key_mass = rng.random((layers, heads, n_tokens)) ** 16
    key_mass /= key_mass.sum(-1, keepdims=True)
    pooled = (rng.random((layers, heads, nb, nb)) * np.tri(nb)).astype(np.float32) / nb
    metrics = {name: rng.random((layers, heads)) for name in ("entropy", "to_first", "to_prev")}
    stack = ScanStack(
        kind="self",
        query=toks,
        key=toks,
        causal=True,
        layers=tuple(range(layers)),
        heads=tuple(range(heads)),
        metrics=metrics,
        key_mass=key_mass,
        first_share=rng.random((layers, heads, n_tokens)).astype(np.float32),
        sink_tokens=4,
        row_positions=positions,
        rows=row,
        topk_pos=None,
        topk_weight=None,
        pool_rows=edges,
        pool_cols=edges,
        pooled_mean=pooled,
        pooled_max=pooled * 4,
    )
    return ScanData({"self": stack}, {"model_name": "toy-long", "method": "blockwise"})


def forward_attentions(m, ins):
    """The model's own attentions from one forward pass over the final sequence."""
    import torch

    with torch.inference_mode():
        if ins.is_encoder_decoder:
            out = m.model(
                input_ids=torch.tensor(ins.encoder.token_ids)[None],
                decoder_input_ids=torch.tensor(ins.decoder.token_ids)[None],
                output_attentions=True,
            )
            refs = {
                "encoder": out.encoder_attentions,
                "decoder": out.decoder_attentions,
                "cross": out.cross_attentions,
            }
        else:
            out = m.model(input_ids=torch.tensor(ins.token_ids)[None], output_attentions=True)
            refs = {"self": out.attentions}
    return {k: torch.stack([a[0] for a in v]).float().numpy() for k, v in refs.items()}


def assert_equals_forward(m, ins, atol=1e-5):
    refs = forward_attentions(m, ins)
    for kind, stack in ins.capture.stacks.items():
        ref = refs[kind][list(stack.layers)][:, list(stack.heads)]
        np.testing.assert_allclose(stack.weights.astype(np.float32), ref, atol=atol)


class _HTMLChecker(HTMLParser):
    """Parses the whole page; counts elements so a truncated or broken page shows."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.count = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.count += 1


def parses(html: str) -> int:
    checker = _HTMLChecker()
    checker.feed(html)
    checker.close()
    assert html.rstrip().endswith("</html>")
    return checker.count


ATLAS_METRICS = ["entropy", "max_weight", "mean_distance", "to_prev", "to_special", "to_punct"]


ATLAS_TEXTS = [
    *CORPUS,
    "",
    "Short one.",
    "Another fairly long sentence about heads and their habits.",
]


def small_atlas(model: object, texts: object, **kw: object) -> object:
    """The local atlas engine on a few metrics, quietly."""
    from inspector.corpus.engine import run_atlas

    kw.setdefault("metrics", ATLAS_METRICS)
    kw.setdefault("progress", False)
    return run_atlas(model.bundle, texts, **kw)  # type: ignore[attr-defined]


def numeric_stats(frame: pd.DataFrame) -> np.ndarray:
    return frame.drop(columns=["metric"]).to_numpy(dtype=np.float64)


def page_data(html: str) -> dict[str, Any]:
    page = parse(html)
    blobs = [body for attrs, body in page.scripts if attrs.get("id") == "inspector-data"]
    assert len(blobs) == 1
    return json.loads(blobs[0])


def figure_specs(html: str) -> dict[str, dict[str, Any]]:
    """The figure data of a page (``figure.ins-fig`` > ``script.ins-fig-data``), by name."""
    page = parse(html)
    specs = [
        json.loads(body) for attrs, body in page.scripts if attrs.get("class") == "ins-fig-data"
    ]
    return {spec["name"]: spec for spec in specs}


def cli_fails(argv, capsys, match):
    """Run the CLI expecting one readable error line that contains ``match``."""
    from inspector.cli import main

    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert err.count("\n") == 0, err
    assert err.startswith("inspector: error:")
    assert "Traceback" not in err
    assert match in err, err
    return err


# A hand-written sentence with a multiword token (1-2) and an empty node (3.1), which are skipped.
MINI_CONLLU = """# sent_id = mini-1
# text = Don't stop now.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\t_\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\t_\t_\t3\tadvmod\t_\t_
3\tstop\tstop\tVERB\t_\t_\t0\troot\t_\t_
3.1\tgo\tgo\tVERB\t_\t_\t_\t_\t3:conj\t_
4\tnow\tnow\tADV\t_\t_\t3\tadvmod:tmod\t_\t_
5\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

"""
