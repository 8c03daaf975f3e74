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


WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def wordpiece_vocabulary(
    texts: Sequence[str] = CORPUS, vocab_size: int = VOCAB_SIZE
) -> dict[str, int]:
    """A WordPiece vocabulary built in a fixed order: the specials, every character, every
    character as a continuation (``##c``), then the words by count and spelling.

    tokenizers' WordPieceTrainer breaks ties at random from one process to the next (which
    pieces make the vocabulary, and their ids), so every number of a test on the BERT family
    could move between runs. Words outside :data:`CORPUS` split into known prefixes and
    single-character pieces (``mailmanship`` → ``mailman ##s ##h ##i ##p``).
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    norm = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    chars = sorted({c for w in counts for c in w})
    words = sorted(counts, key=lambda w: (-counts[w], w))
    tokens = [*WORDPIECE_SPECIALS, *chars, *(f"##{c}" for c in chars), *words]
    return {t: i for i, t in enumerate(list(dict.fromkeys(tokens))[:vocab_size])}


def wordpiece_tokenizer(
    corpus: Sequence[str] = CORPUS, vocab_size: int = VOCAB_SIZE, max_length: int = 64
) -> object:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(wordpiece_vocabulary(corpus, vocab_size), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    for special in WORDPIECE_SPECIALS:  # matched whole in any text, as a trained vocabulary's
        tok.add_special_tokens([special])
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
        model_max_length=max_length,
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
    specials = ["<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(
        CORPUS, UnigramTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, unk_token="<unk>")
    )
    # The trainer's scores and order differ from one process to the next (last bits, and the
    # characters it appends in whatever order it met them), so token ids, and every number of
    # a test on these families, moved from run to run: round the scores and fix the order.
    pieces = [(p, round(score, 2)) for p, score in json.loads(tok.to_str())["model"]["vocab"]]
    rest = sorted((p for p in pieces if p[0] not in specials), key=lambda p: (-p[1], p[0]))
    vocab = [(p, 0.0) for p in specials] + rest
    tok.model = models.Unigram(vocab, unk_id=specials.index("<unk>"))
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


#: Added tokens that close a double-quoted attribute, a single-quoted one and a script element
#: (issue 18): a model folder or hub tokenizer may hold any such token.
ATTRIBUTE_ATTACKS = (
    '" tabindex=1 autofocus onfocus=alert(2)//',
    "' onmouseover=alert(1) x='",
    "</script><script>alert(3)</script>",
)
#: A text holding every one of :data:`ATTRIBUTE_ATTACKS`, each tokenized as one added token.
HOSTILE_TEXT = (
    f"The cat {ATTRIBUTE_ATTACKS[0]} sat {ATTRIBUTE_ATTACKS[1]} on the mat "
    f"{ATTRIBUTE_ATTACKS[2]} because it was tired."
)


def hostile_tokenizer(kind: str) -> Any:
    """The tiny ``bert`` (WordPiece) or ``gpt2`` (byte-level) tokenizer plus the added tokens of
    :data:`ATTRIBUTE_ATTACKS`, matched literally in any text."""
    from tokenizers import AddedToken

    tok: Any = wordpiece_tokenizer() if kind == "bert" else bytelevel_tokenizer(template=False)
    tok.add_tokens([AddedToken(t, normalized=False) for t in ATTRIBUTE_ATTACKS])
    return tok


def build_hostile(kind: str, folder: Path) -> Path:
    """A tiny model of ``kind`` with :func:`hostile_tokenizer`, saved to ``folder``."""
    model, _ = build_tiny(kind)
    tok = hostile_tokenizer(kind)
    model.resize_token_embeddings(len(tok))  # type: ignore[attr-defined]
    model.save_pretrained(folder)  # type: ignore[attr-defined]
    tok.save_pretrained(folder)
    return folder


#: Every kind of page, and what :func:`hostile_pages` builds it from.
PAGE_KINDS = ("report", "explain", "generation", "compare", "atlas", "scan")


def hostile_pages(folder: Path) -> dict[str, Path]:
    """Every kind of page, built from tiny models whose tokenizers hold the attribute- and
    script-closing tokens of :data:`ATTRIBUTE_ATTACKS`, as they appear in :data:`HOSTILE_TEXT`.
    Returns ``{kind: page path}`` for every kind in :data:`PAGE_KINDS`."""
    import inspector

    bert = inspector.load(str(build_hostile("bert", folder / "hostile-bert")))
    gpt2 = inspector.load(str(build_hostile("gpt2", folder / "hostile-gpt2")))
    ins = bert.inspect(HOSTILE_TEXT)
    other = bert.inspect(HOSTILE_TEXT.replace("cat", "dog"))
    pages = {kind: folder / f"{kind}.html" for kind in PAGE_KINDS}
    ins.report(pages["report"])
    gpt2.inspect(HOSTILE_TEXT).explain.report(pages["explain"], progress=False)
    gpt2.generate(HOSTILE_TEXT, max_new_tokens=3).report(pages["generation"])
    inspector.compare(ins, other).report(pages["compare"])
    texts = [HOSTILE_TEXT, *ATTRIBUTE_ATTACKS, CORPUS[0]]
    inspector.atlas(bert, texts, batch_size=2, progress=False).report(pages["atlas"])
    gpt2.scan(HOSTILE_TEXT, rows=[-1, 3], topk=3, progress=False).report(pages["scan"])
    return pages


#: Words whose presence makes :func:`build_rule_classifier`'s label "negated".
NEGATIONS = frozenset({"not", "n't", "no", "never", "nothing", "nobody", "none", "nor", "cannot"})


def negated(text: str) -> bool:
    """The rule :func:`build_rule_classifier` learns: the text holds a negation word."""
    import re

    words = re.findall(r"n't|[a-z]+", text.lower())
    return any(w in NEGATIONS for w in words)


def build_rule_classifier(
    texts: Sequence[str], *, steps: int = 300, seed: int = 0
) -> tuple[object, object]:
    """A tiny BERT sequence classifier (2 layers, 4 heads, 64 wide; its own WordPiece vocabulary
    of 2,000 from ``texts``) trained for ``steps`` batches of 32 (half of each label; ``texts``
    must hold at least 16 of each) to say whether a
    text holds a negation word (:data:`NEGATIONS`): a classifier whose decision rests on known
    tokens, so a faithful explanation has something to find. Deterministic for a given seed
    (one thread, fixed order); about a minute on a busy 2-core CPU."""
    import torch
    import transformers as tf

    tok = wordpiece_tokenizer(texts, vocab_size=2000, max_length=512)
    torch.manual_seed(seed)
    cfg = tf.BertConfig(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        num_labels=2,
        id2label={0: "affirmative", 1: "negated"},
        label2id={"affirmative": 0, "negated": 1},
    )
    model = tf.BertForSequenceClassification(cfg)
    labels = torch.tensor([int(negated(t)) for t in texts])
    by_label = [np.flatnonzero(labels.numpy() == k) for k in (0, 1)]
    rng = np.random.default_rng(seed)
    optim = torch.optim.AdamW(model.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(steps):
            batch = np.concatenate([rng.choice(ix, size=16, replace=False) for ix in by_label])
            enc = tok([texts[i] for i in batch], padding=True, truncation=True, return_tensors="pt")
            loss = model(**enc, labels=labels[batch]).loss
            optim.zero_grad()
            loss.backward()
            optim.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model, tok


#: The chat template of :func:`build_tiny_gguf`: a user turn, then the assistant's header.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}"
)


def build_tiny_gguf(path: Path, *, seed: int = 0) -> Path:
    """A tiny LLaMA-style GGUF file (2 layers, 4 query heads sharing 2 key/value heads, float32
    tensors) with the byte-level tokenizer and a chat template, like the embedded SmolLM2."""
    import json

    import gguf

    tok = bytelevel_tokenizer(template=False)
    spec = json.loads(tok.backend_tokenizer.to_str())  # type: ignore[attr-defined]
    vocab = spec["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    special = set(tok.all_special_tokens)  # type: ignore[attr-defined]
    n_vocab, hidden, n_layers, n_heads, n_kv, ff = len(tokens), 32, 2, 4, 2, 64
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(n_layers)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ff)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_rope_dimension_count(hidden // n_heads)
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_eos_token_id(vocab["<|endoftext|>"])
    w.add_chat_template(TINY_CHAT_TEMPLATE)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    w.add_tensor("token_embd.weight", weight(n_vocab, hidden))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    w.add_tensor("output.weight", weight(n_vocab, hidden))
    kv_dim = hidden // n_heads * n_kv
    for i in range(n_layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", weight(hidden, hidden))
        w.add_tensor(f"blk.{i}.attn_k.weight", weight(kv_dim, hidden))
        w.add_tensor(f"blk.{i}.attn_v.weight", weight(kv_dim, hidden))
        w.add_tensor(f"blk.{i}.attn_output.weight", weight(hidden, hidden))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ff, hidden))
        w.add_tensor(f"blk.{i}.ffn_up.weight", weight(ff, hidden))
        w.add_tensor(f"blk.{i}.ffn_down.weight", weight(hidden, ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def build_tiny_llama(
    tokenizer: object,
    *,
    layers: int = 2,
    positions: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 8,
) -> object:
    """A tiny LLaMA with 4 query heads sharing 2 key/value heads (GQA), rotary positions;
    ``tokenizer`` is any tiny tokenizer (the GPT-2 one fits its 300-token vocabulary). SmolLM2's
    head layout at a tiny size: ``layers=30, heads=9, kv_heads=3, head_dim=4`` (270 heads)."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=300,
        hidden_size=heads * head_dim,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
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
    """A scan of a long causal input with SmolLM2's shape, built from synthetic statistics (no
    model, no T x T array): what a page of 8k tokens has to draw. Each head mixes an attention
    sink (the first token), a local part decaying with distance and a broad part, in random
    proportions, so its pooled map, sink share and distance profile look like a real head's and
    differ from head to head; the tokens are byte-level pieces (``Ġthe``, ``Ċ``) with readable
    forms (``␣the``, ``⏎``)."""
    from inspector.analysis.scan import ScanData, ScanStack, distance_edges, pool_edges

    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", ",", ".", "and", "then", "it", "slept"]
    pieces = ["H", "illi", "ard"]
    strings = ["<|im_start|>"]
    for i in range(1, n_tokens):
        if i % 7 < 3:  # a word of three pieces: Ġ H illi ard
            strings.append(("Ġ" if i % 7 == 0 else "") + pieces[i % 7])
        elif i % 40 < 7:
            strings.append("Ċ")
        else:
            word = words[i % 12]
            strings.append(word if word in ",." else "Ġ" + word)
    toks = make_tokens(strings, special=[i == 0 for i in range(n_tokens)])
    positions = tuple(sorted({r % n_tokens for r in rows}))
    edges = pool_edges(n_tokens, pool)
    nb = len(edges) - 1
    centre = (edges[:-1] + edges[1:] - 1) / 2.0
    sink = rng.uniform(0.0, 0.9, (layers, heads)) * (np.arange(layers) >= layers // 3)[:, None]
    local = rng.uniform(0.05, 0.95, (layers, heads)) * (1 - sink)
    scale = 2.0 ** rng.uniform(0, 6, (layers, heads))  # tokens over which the local part decays
    broad = 1.0 - sink - local
    # pooled maps: the three parts, per (query block, key block), masked above the diagonal
    dist = np.maximum(centre[:, None] - centre[None, :], 0.0).astype(np.float32)
    seen = np.tri(nb, dtype=np.float32)
    q_len = (centre[:, None] + 1.0).astype(np.float32)
    f32 = {k: v.astype(np.float32)[..., None, None] for k, v in
           {"sink": sink, "local": local, "broad": broad, "scale": scale}.items()}  # fmt: skip
    pooled = np.exp(-dist / f32["scale"]) * (f32["local"] / f32["scale"])
    pooled += f32["broad"] / q_len
    pooled[..., 0] += f32["sink"][..., 0] / max(1, int(edges[1]))
    pooled *= seen * rng.lognormal(0.0, 0.15, pooled.shape).astype(np.float32)
    # exact rows: the same mixture, row by row
    keys = np.arange(n_tokens)
    row = np.zeros((layers, heads, len(positions), n_tokens), dtype=np.float32)
    for i, p in enumerate(positions):
        d = np.where(keys <= p, p - keys, np.inf)
        part = local[..., None] * np.exp(-d / scale[..., None]) + broad[..., None] * (keys <= p)
        part = part / part.sum(-1, keepdims=True) * (1 - sink[..., None])
        part[..., 0] += sink
        row[:, :, i] = part
    # distance profile: local mass in the near bins, broad mass as the bins' width
    d_edges = distance_edges(n_tokens)
    width = np.diff(d_edges).astype(float)
    near = np.exp(-d_edges[:-1] / scale[..., None]) * width
    near /= near.sum(-1, keepdims=True)
    mass = local[..., None] * near + broad[..., None] * width / width.sum()
    first_share = np.clip(sink[..., None] + rng.normal(0, 0.02, (layers, heads, n_tokens)), 0, 1)
    mass *= (1 - first_share.mean(-1))[..., None] / mass.sum(-1, keepdims=True)
    key_mass = rng.random((layers, heads, n_tokens)) ** 16 * (1 - sink[..., None])
    key_mass /= key_mass.sum(-1, keepdims=True)
    key_mass[..., 0] += sink
    key_mass /= key_mass.sum(-1, keepdims=True)
    metrics = {name: rng.random((layers, heads)) for name in ("entropy", "to_first", "to_prev")}
    metrics["to_next"] = np.full((layers, heads), np.nan)
    stack = ScanStack(
        kind="self",
        query=toks,
        key=toks,
        causal=True,
        layers=tuple(range(layers)),
        heads=tuple(range(heads)),
        metrics=metrics,
        key_mass=key_mass,
        first_share=first_share.astype(np.float32),
        sink_tokens=4,
        row_positions=positions,
        rows=row,
        topk_pos=None,
        topk_weight=None,
        pool_rows=edges,
        pool_cols=edges,
        pooled_mean=pooled.astype(np.float16),
        pooled_max=(pooled * 4).astype(np.float16),
        distance_edges=d_edges,
        distance_mass=mass,
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


def small_atlas(model: object, texts: object, **kw: Any) -> Any:
    """The local atlas engine on a few metrics, quietly: ``kw`` are
    :class:`~inspector.corpus.options.AtlasOptions` (``max_memory`` as the facade takes it)."""
    from inspector.capture.memory import MemoryLimit
    from inspector.corpus.engine import run_atlas
    from inspector.corpus.options import AtlasOptions

    kw.setdefault("metrics", ATLAS_METRICS)
    kw.setdefault("progress", False)
    kw["max_memory"] = MemoryLimit.of(kw.get("max_memory"))
    return run_atlas(model.bundle, texts, AtlasOptions(**kw))  # type: ignore[attr-defined]


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


# ============================================================================ family matrix
# One tiny model per architecture family (2 layers, 4 heads, hidden 32, 300-token vocabulary),
# built offline from its config: the rows of tests/integration/test_families.py and of the
# README's support table (tests/support_table.py writes it). Add a family here, run the matrix,
# then `python tests/support_table.py --write`.

#: The input every family reads (a short target for encoder-decoders, longer than the input so
#: that cross attention's values can be solved from its output by least squares).
FAMILY_TEXT = "The cat sat on the mat because it was tired."
FAMILY_SOURCE = "The cat sat on the mat."
FAMILY_TARGET = "A dog barked at the mailman, who ran away quickly!"

_L, _H, _D = 2, 4, 32
_BERTLIKE = {
    "hidden_size": _D,
    "num_hidden_layers": _L,
    "num_attention_heads": _H,
    "intermediate_size": 64,
    "max_position_embeddings": 80,
}
_ROBERTA_IDS = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
_GPT_IDS = {"bos_token_id": 0, "eos_token_id": 0}
_LLAMALIKE = {
    **_BERTLIKE,
    "num_key_value_heads": 2,  # grouped-query attention: 2 query heads per key/value head
    "head_dim": _D // _H,
    **_GPT_IDS,
}
_BARTLIKE = {
    "d_model": _D,
    "encoder_layers": _L,
    "decoder_layers": _L,
    "encoder_attention_heads": _H,
    "decoder_attention_heads": _H,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_position_embeddings": 80,
    "decoder_start_token_id": 2,
    "forced_eos_token_id": None,
    **_ROBERTA_IDS,
}
_T5LIKE = {
    "d_model": _D,
    "d_kv": _D // _H,
    "d_ff": 64,
    "num_layers": _L,
    "num_decoder_layers": _L,
    "num_heads": _H,
    "decoder_start_token_id": 0,
    "pad_token_id": 0,
    "eos_token_id": 1,
}

#: model_type -> (tokenizer: wordpiece / bytelevel / bytelevel-template / sentencepiece,
#: transformers class, config keywords). The architecture comes from the model itself.
FAMILY_SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert": ("wordpiece", "BertForMaskedLM", _BERTLIKE),
    "roberta": ("bytelevel-template", "RobertaForMaskedLM", {**_BERTLIKE, **_ROBERTA_IDS}),
    "distilbert": (
        "wordpiece",
        "DistilBertForMaskedLM",
        {"dim": _D, "n_layers": _L, "n_heads": _H, "hidden_dim": 64, "max_position_embeddings": 80},
    ),
    "albert": ("wordpiece", "AlbertForMaskedLM", {**_BERTLIKE, "embedding_size": 16}),
    "electra": ("wordpiece", "ElectraForMaskedLM", {**_BERTLIKE, "embedding_size": _D}),
    "deberta": (
        "wordpiece",
        "DebertaForMaskedLM",
        {**_BERTLIKE, "relative_attention": True, "pos_att_type": ["c2p", "p2c"]},
    ),
    "deberta-v2": (
        "wordpiece",
        "DebertaV2ForMaskedLM",
        {**_BERTLIKE, "relative_attention": True, "pos_att_type": ["c2p", "p2c"]},
    ),
    "xlm-roberta": ("bytelevel-template", "XLMRobertaForMaskedLM", {**_BERTLIKE, **_ROBERTA_IDS}),
    "mpnet": ("bytelevel-template", "MPNetForMaskedLM", {**_BERTLIKE, **_ROBERTA_IDS}),
    "modernbert": (
        "wordpiece",
        "ModernBertForMaskedLM",
        {
            **_BERTLIKE,
            "global_attn_every_n_layers": 2,  # layer 1 attends to a local window of 8
            "local_attention": 8,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 3,
            "cls_token_id": 2,
            "sep_token_id": 3,
        },
    ),
    "camembert": ("bytelevel-template", "CamembertForMaskedLM", {**_BERTLIKE, **_ROBERTA_IDS}),
    "gpt2": (
        "bytelevel",
        "GPT2LMHeadModel",
        {"n_embd": _D, "n_layer": _L, "n_head": _H, "n_positions": 80, **_GPT_IDS},
    ),
    "gpt_neox": ("bytelevel", "GPTNeoXForCausalLM", {**_BERTLIKE, **_GPT_IDS}),
    "gptj": (
        "bytelevel",
        "GPTJForCausalLM",
        {"n_embd": _D, "n_layer": _L, "n_head": _H, "rotary_dim": 4, "n_positions": 80, **_GPT_IDS},
    ),
    "opt": (
        "bytelevel",
        "OPTForCausalLM",
        {**_BERTLIKE, "ffn_dim": 64, "word_embed_proj_dim": _D, "pad_token_id": 1, **_GPT_IDS},
    ),
    "bloom": (
        "bytelevel",
        "BloomForCausalLM",
        {"hidden_size": _D, "n_layer": _L, "n_head": _H, **_GPT_IDS},
    ),
    # multi-query attention: one key/value head for the 4 query heads
    "falcon": ("bytelevel", "FalconForCausalLM", {**_BERTLIKE, **_GPT_IDS}),
    "llama": ("bytelevel", "LlamaForCausalLM", _LLAMALIKE),
    "mistral": ("bytelevel", "MistralForCausalLM", _LLAMALIKE),
    "mixtral": (
        "bytelevel",
        "MixtralForCausalLM",
        {**_LLAMALIKE, "num_local_experts": 2, "num_experts_per_tok": 1},
    ),
    "qwen2": ("bytelevel", "Qwen2ForCausalLM", _LLAMALIKE),
    "qwen3": ("bytelevel", "Qwen3ForCausalLM", _LLAMALIKE),
    "qwen2_moe": (
        "bytelevel",
        "Qwen2MoeForCausalLM",
        {
            **_LLAMALIKE,
            "num_experts": 2,
            "num_experts_per_tok": 1,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 32,
        },
    ),
    "gemma": ("bytelevel", "GemmaForCausalLM", _LLAMALIKE),
    "gemma2": (
        "bytelevel",
        "Gemma2ForCausalLM",
        {**_LLAMALIKE, "sliding_window": 64, "query_pre_attn_scalar": 8},
    ),
    "gemma3_text": (
        "bytelevel",
        "Gemma3ForCausalLM",
        {**_LLAMALIKE, "sliding_window": 64, "query_pre_attn_scalar": 8},
    ),
    "phi": ("bytelevel", "PhiForCausalLM", {**_BERTLIKE, **_GPT_IDS}),
    "phi3": ("bytelevel", "Phi3ForCausalLM", {**_LLAMALIKE, "pad_token_id": 0}),
    "starcoder2": ("bytelevel", "Starcoder2ForCausalLM", _LLAMALIKE),
    "olmo": ("bytelevel", "OlmoForCausalLM", {**_LLAMALIKE, "pad_token_id": 1}),
    "olmo2": ("bytelevel", "Olmo2ForCausalLM", {**_LLAMALIKE, "pad_token_id": 1}),
    "cohere": ("bytelevel", "CohereForCausalLM", {**_LLAMALIKE, "pad_token_id": 1}),
    "stablelm": ("bytelevel", "StableLmForCausalLM", _LLAMALIKE),
    "smollm3": ("bytelevel", "SmolLM3ForCausalLM", {**_LLAMALIKE, "pad_token_id": 1}),
    "granite": ("bytelevel", "GraniteForCausalLM", _LLAMALIKE),
    "t5": ("sentencepiece", "T5ForConditionalGeneration", _T5LIKE),
    "mt5": ("sentencepiece", "MT5ForConditionalGeneration", _T5LIKE),
    # local attention: blocks of local_radius + 1 = 3 tokens see their own and both neighbours
    "longt5": (
        "sentencepiece",
        "LongT5ForConditionalGeneration",
        {**_T5LIKE, "encoder_attention_type": "local", "local_radius": 2},
    ),
    "bart": ("bytelevel-template", "BartForConditionalGeneration", _BARTLIKE),
    "mbart": ("bytelevel-template", "MBartForConditionalGeneration", _BARTLIKE),
    "pegasus": ("bytelevel-template", "PegasusForConditionalGeneration", _BARTLIKE),
    "marian": (
        "bytelevel-template",
        "MarianMTModel",
        {**_BARTLIKE, "decoder_start_token_id": 1},
    ),
    # sliding-window attention: a window of 2 tokens on each side
    "led": (
        "bytelevel-template",
        "LEDForConditionalGeneration",
        {
            **_BARTLIKE,
            "attention_window": 4,
            "max_encoder_position_embeddings": 80,
            "max_decoder_position_embeddings": 80,
        },
    ),
}

#: What is particular about a family, for the README's support table.
FAMILY_NOTES: dict[str, str] = {
    "albert": "one attention module shared by all layers (hooked per call)",
    "deberta": "disentangled attention; fused `in_proj`, value bias added after it",
    "deberta-v2": "disentangled relative attention",
    "modernbert": "fused `Wqkv`; global and local-window layers",
    "gpt2": "fused `c_attn` (Conv1D)",
    "gpt_neox": "fused qkv, interleaved per head",
    "bloom": "ALiBi; fused qkv per head; found by structure (no `_can_record_outputs`)",
    "falcon": (
        "multi-query (1 key/value head); switched to eager in place; found by structure "
        "(no `_can_record_outputs`)"
    ),
    "phi3": "fused `qkv_proj`",
    "mixtral": "mixture of experts",
    "qwen2_moe": "mixture of experts",
    "gemma2": "logit soft-capping, sliding window",
    "longt5": (
        "local attention (blocks of 3) expanded to (query, key); transient-global is refused"
    ),
    "led": "sliding-window attention expanded to (query, key); no global tokens",
}
for _t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma3_text", "starcoder2", "olmo"):
    FAMILY_NOTES.setdefault(_t, "grouped-query attention (2 query heads per key/value head)")

#: The attention output projections, by stack, as regular expressions over module names: the
#: tests' own statement of where each family's head outputs meet (independent of inspector's
#: family table and structure search). The input of these modules is ``(batch, seq, heads * d)``.
_BERT_OUT = {"self": r"encoder\.layer\.\d+\.attention\.output\.dense$"}
_LLAMA_OUT = {"self": r"layers\.\d+\.self_attn\.o_proj$"}
_BART_OUT = {
    "encoder": r"encoder\.layers\.\d+\.self_attn\.out_proj$",
    "decoder": r"decoder\.layers\.\d+\.self_attn\.out_proj$",
    "cross": r"decoder\.layers\.\d+\.encoder_attn\.out_proj$",
}
_T5_OUT = {
    "encoder": r"encoder\.block\.\d+\.layer\.0\.\w+\.o$",
    "decoder": r"decoder\.block\.\d+\.layer\.0\.SelfAttention\.o$",
    "cross": r"decoder\.block\.\d+\.layer\.1\.EncDecAttention\.o$",
}
_LLAMA_TYPES = (
    "llama mistral mixtral qwen2 qwen3 qwen2_moe gemma gemma2 gemma3_text phi3 starcoder2 olmo "
    "olmo2 cohere stablelm smollm3 granite"
)
_OUTPUT_GROUPS: tuple[tuple[str, dict[str, str]], ...] = (
    ("bert roberta electra xlm-roberta camembert deberta deberta-v2", _BERT_OUT),
    ("distilbert", {"self": r"layer\.\d+\.attention\.out_lin$"}),
    ("albert", {"self": r"albert_layers\.0\.attention\.dense$"}),  # one module, every layer
    ("mpnet", {"self": r"layer\.\d+\.attention\.attn\.o$"}),
    ("modernbert", {"self": r"layers\.\d+\.attn\.Wo$"}),
    ("gpt2", {"self": r"h\.\d+\.attn\.c_proj$"}),
    ("gpt_neox", {"self": r"layers\.\d+\.attention\.dense$"}),
    ("gptj", {"self": r"h\.\d+\.attn\.out_proj$"}),
    ("opt", {"self": r"layers\.\d+\.self_attn\.out_proj$"}),
    ("bloom falcon", {"self": r"h\.\d+\.self_attention\.dense$"}),
    ("phi", {"self": r"layers\.\d+\.self_attn\.dense$"}),
    (_LLAMA_TYPES, _LLAMA_OUT),
    ("t5 mt5 longt5", _T5_OUT),
    ("bart mbart pegasus marian", _BART_OUT),
    ("led", {**_BART_OUT, "encoder": r"encoder\.layers\.\d+\.self_attn\.output$"}),
)
FAMILY_OUTPUTS: dict[str, dict[str, str]] = {
    model_type: outputs for types, outputs in _OUTPUT_GROUPS for model_type in types.split()
}

_TOKENIZERS = {
    "wordpiece": wordpiece_tokenizer,
    "bytelevel": lambda: bytelevel_tokenizer(template=False),
    "bytelevel-template": lambda: bytelevel_tokenizer(template=True),
    "sentencepiece": sentencepiece_tokenizer,
}


def build_family(model_type: str) -> tuple[Any, Any]:
    """The tiny random model of ``model_type`` (eval mode) and its locally built tokenizer."""
    import torch
    import transformers as tf

    tokenizer, cls, kw = FAMILY_SPECS[model_type]
    torch.manual_seed(0)
    config = tf.AutoConfig.for_model(model_type, vocab_size=VOCAB_SIZE + 100, **kw)
    model = getattr(tf, cls)(config)
    model.eval()
    return model, _TOKENIZERS[tokenizer]()


# ---------------------------------------------------------------- vision transformers
#: model_type -> (transformers class, image processor class): tiny (2 layers, 4 heads, 32x32
#: pixels in 8x8 patches), with the processors' PIL/numpy implementations (no torchvision).
VISION_SPECS: dict[str, tuple[str, str]] = {
    "vit": ("ViTForImageClassification", "ViTImageProcessorPil"),
    "deit": ("DeiTForImageClassificationWithTeacher", "DeiTImageProcessorPil"),
    "clip_vision_model": ("CLIPVisionModel", "CLIPImageProcessorPil"),
    "siglip_vision_model": ("SiglipVisionModel", "SiglipImageProcessorPil"),
}
IMAGE_SIZE = 32
PATCH_SIZE = 8


def build_vision(model_type: str) -> tuple[Any, Any]:
    """A tiny random vision transformer of ``model_type`` (eval mode) and its image processor."""
    import torch
    import transformers as tf

    cls, processor = VISION_SPECS[model_type]
    torch.manual_seed(0)
    config = tf.AutoConfig.for_model(
        model_type,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    model = getattr(tf, cls)(config)
    model.eval()
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    return model, getattr(tf, processor)(size=size, crop_size=size)


def make_image(width: int = 48, height: int = 40) -> Any:
    """A generated RGB picture (PIL): a colour gradient with a bright square and a dark disc."""
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), np.full_like(x, 96.0)], axis=-1
    )
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle([4, 4, width // 3, height // 3], fill=(255, 255, 255))
    draw.ellipse([width // 2, height // 2, width - 4, height - 4], fill=(10, 10, 10))
    return image


# ------------------------------------------------------------------ route graphs (no model)


def make_routes(strings: Sequence[str] | int = HOSTILE, *, layers: int = 3, heads: int = 4,
                seed: int = 0, fan: int = 3, width: int = 12) -> Any:  # fmt: skip
    """A :class:`~inspector.explain.route_result.Routes` built by hand (no model): a walk from
    the last position down through ``layers`` layers, each reached node fed by the residual and
    by ``fan`` earlier positions through random heads (at most ``width`` positions reached per
    layer, as real walks stay narrow), with an attribution, per-token split and logit lens of
    matching shapes. For page tests at any length."""
    from inspector.explain.attribution import Attribution
    from inspector.explain.route_result import build_routes, node_name

    rng = np.random.default_rng(seed)
    toks = make_tokens(strings)
    n = len(toks)
    pos = n - 1
    edges, head_edges, vectors, rows = [], [], {}, {}
    reached = {pos}
    for li in reversed(range(layers)):
        nxt = set()
        for q in sorted(reached):
            a, top = node_name("A", li, q), node_name("I", li, q)
            vectors[top] = rng.normal(size=4)
            vectors[a] = rng.normal(size=4)
            edges.append((li, "residual", a, top, q, q, 0.8))
            if q == pos:
                vectors[node_name("M", li, q)] = rng.normal(size=4)
                edges.append((li, "mlp", node_name("M", li, q), top, q, q, 0.2))
                edges.append((li, "mlp", a, node_name("M", li, q), q, q, 0.2))
            edges.append((li, "residual", node_name("I", li - 1, q), a, q, q, 0.6))
            nxt.add(q)
            for k in rng.choice(q + 1, size=min(fan, q + 1), replace=False).tolist():
                if k == q or (k not in nxt and len(nxt) >= width):
                    continue
                w = float(rng.uniform(0.05, 0.2))
                edges.append((li, "attention", node_name("I", li - 1, k), a, k, q, w))
                h = int(rng.integers(heads))
                head_edges.append((li, k, q, h, w))
                row = rng.dirichlet(np.ones(q + 1))
                keys = np.argsort(-row)[:64]
                rows[(li, q, h)] = [(int(t), float(row[t])) for t in keys]
                nxt.add(k)
        reached = nxt
    for k in reached:
        vectors[node_name("X", 0, k)] = rng.normal(size=4)
    index = pd.MultiIndex.from_product([range(layers), range(heads)], names=["layer", "head"])
    values = rng.normal(size=layers * heads)
    frame = pd.DataFrame({"kind": "head", "component": [f"L{la} H{h}" for la, h in index],
                          "attribution": values}, index=index)  # fmt: skip
    mlp = pd.DataFrame(
        {"kind": "mlp", "component": [f"MLP L{la}" for la in range(layers)],
         "attribution": rng.normal(size=layers)},
        index=pd.MultiIndex.from_arrays([range(layers), [-1] * layers], names=["layer", "head"]),
    )  # fmt: skip
    frame = pd.concat([frame, mlp])
    total = float(frame["attribution"].sum())
    frame.attrs.update(token=toks.tokens[0], token_id=0, position=pos, against=None,
                       against_id=None, logit=total, unembedding_bias=0.0, remainder=0.0,
                       probability=0.5, logit_scale=1.0)  # fmt: skip
    split = pd.DataFrame(
        {"layer": np.repeat(range(layers), heads * n), "head": np.tile(np.repeat(range(heads), n),
         layers), "kind": "head", "source_pos": np.tile(np.arange(n), layers * heads),
         "source_token": np.tile(np.asarray(toks.readable, dtype=object), layers * heads),
         "attribution": rng.normal(size=layers * heads * n) / n}
    ).set_index(["layer", "head"])  # fmt: skip
    lens = pd.DataFrame({"layer": range(-1, layers), "rank": rng.integers(0, 9, layers + 1),
                         "logit": rng.normal(size=layers + 1), "prob": rng.uniform(size=layers + 1),
                         "top": [[toks.tokens[0], toks.tokens[-1]]] * (layers + 1),
                         "promoted": [[toks.tokens[1]]] * (layers + 1)})  # fmt: skip

    def lens_fn(vecs: np.ndarray, _tid: int) -> dict[str, Any]:
        return {"rank": [0] * len(vecs), "logit": vecs[:, 0].tolist(),
                "top": [[toks.tokens[0], toks.tokens[-1], "</script>"]] * len(vecs)}  # fmt: skip

    walk = {"edges": edges, "head_edges": head_edges, "vectors": vectors, "rows": rows,
            "n_layers": layers}  # fmt: skip
    return build_routes(
        walk, toks, toks.tokens[0], 0, threshold=0.04, position=pos, lens=lens_fn, state=None,
        model_name="toy", attribution=Attribution(frame, split, lens),
    )  # fmt: skip


def keep_hooks(kept: dict[str, list[Any]]) -> tuple[Any, Any]:
    """``(pre, post)``: hook makers appending a module's input / output (batch row 0, float64)
    to ``kept[key]`` (the routes' references read the model with them)."""

    def pre(key: str) -> Any:
        return lambda _m, a, kw: kept[key].append((a[0] if a else kw["hidden_states"])[0].double())

    def post(key: str) -> Any:
        return lambda _m, _a, o: kept[key].append((o[0] if isinstance(o, tuple) else o)[0].double())

    return pre, post


def eager_attention(model: Any, ids: Any, handles: Sequence[Any]) -> list[Any]:
    """Run ``model`` on ``ids`` with ``handles`` registered (always removed) and return each
    layer's eager ``(head, q, k)`` weights in float64."""
    import torch

    try:
        with torch.no_grad():
            out = model(ids[None], output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return [a[0].double() for a in out.attentions]
