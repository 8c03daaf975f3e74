"""The tests' tiny tokenizers are the same in every process (issue 18, item 10).

tokenizers' trainers break ties at random (the hash seed of the process): the WordPiece trainer
chose other pieces and ids from one run to the next, as the Unigram trainer did before, so every
number of a test on these families could move. Two processes under different ``PYTHONHASHSEED``
must build identical vocabularies and token ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

_CHILD = """
import hashlib, json
from factories import CORPUS, bytelevel_tokenizer, sentencepiece_tokenizer, wordpiece_tokenizer
out = {}
builds = {"wordpiece": wordpiece_tokenizer, "bytelevel": lambda: bytelevel_tokenizer(False),
          "sentencepiece": sentencepiece_tokenizer}
for name, build in builds.items():
    tok = build()
    vocab = json.dumps(sorted(tok.get_vocab().items(), key=lambda kv: kv[1]))
    ids = [tok(text)["input_ids"] for text in CORPUS + ["The mailmanship of unknown words."]]
    out[name] = [hashlib.sha256(vocab.encode()).hexdigest(), ids]
print(json.dumps(out))
"""


def _build(seed: int) -> dict[str, list[object]]:
    env = dict(os.environ, PYTHONHASHSEED=str(seed), TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TESTS), str(TESTS.parent), env.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tiny_tokenizers_are_the_same_in_every_process() -> None:
    first, second = _build(1), _build(3)
    for name in first:
        assert first[name] == second[name], f"the {name} tokenizer differs between processes"


def test_wordpiece_splits_unknown_words_into_known_pieces() -> None:
    from factories import wordpiece_tokenizer

    tok = wordpiece_tokenizer()
    assert tok.tokenize("The mailmanship!") == ["the", "mailman", "##s", "##h", "##i", "##p", "!"]  # type: ignore[attr-defined]
    assert tok.tokenize("[MASK] [SEP]") == ["[MASK]", "[SEP]"]  # type: ignore[attr-defined]
