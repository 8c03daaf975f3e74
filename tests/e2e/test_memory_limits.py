"""Every CLI command on SmolLM2 under a memory limit the kernel enforces (a 2.5 GiB cgroup,
:mod:`memlimits`): each finishes, or refuses in one line with exit code 2, never killed (137).

The sizes are chosen above what each command needed before its step was estimated or bounded
(measured peaks on SmolLM2; the model itself takes ~1.1 GB, leaving ~1.8 GB): ``heads`` at 1k
tokens kept a full copy for its metrics (+1.1 GB), ``compare`` at 512 tokens held eight copies
of the maps (+2.2 GB), ``explain`` at 1k held norms, a float64 rollout copy and
full-vocabulary logits of 73 rows, ``scan --topk 400`` at 2k built a 3.7 GB table nobody
estimated, ``atlas`` and ``probe`` batches of 12-20 texts of 250-350 tokens need 2-3 GB unsplit,
two threads each passed the pre-flight before either allocated, and ``trace`` kept every
layer's queries, keys, block inputs and values (plus an eager first capture of 7 GB at 8k
tokens) with no estimate at all. The control run shows the
limit is real: the same ``inspect`` with a budget of 100 GB is killed. Each run gets a fresh
cgroup (a killed run's page cache would stay charged to its cgroup).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from factories import EWT_DEV
from memlimits import killed, memory_cgroup, peak_bytes, run_in

pytestmark = pytest.mark.slow

LIMIT = int(2.5 * 2**30)
#: A refusal: ``inspector: error: <what> needs about <size> (...), more than the <budget>;
#: nothing was run`` (a batch: ``more than half of the <budget>; nothing of this batch``).
REFUSAL = re.compile(
    r"^inspector: error: .*needs about .*more than (half of )?the .*nothing (of this batch )?"
    r"was run"
)


def _text(n_chars: int = 20_000) -> str:
    if not EWT_DEV.exists():
        pytest.skip(f"treebank not found at {EWT_DEV}")
    lines = EWT_DEV.read_text(encoding="utf-8").splitlines()
    texts = [line[len("# text = ") :] for line in lines if line.startswith("# text = ")]
    return " ".join(texts)[:n_chars]


def _long_sentences(path: Path, n: int, words: int) -> Path:
    """A CoNLL-U file of ``n`` sentences of ``words`` words each (a chain: word i heads i+1)."""
    vocab = _text(40_000).split()
    out = []
    for s in range(n):
        out.append(f"# sent_id = long-{s}")
        for i in range(1, words + 1):
            form = vocab[(s * words + i) % len(vocab)].replace("\t", " ")
            head = 0 if i == words else i + 1
            rel = "root" if head == 0 else "dep"
            out.append(f"{i}\t{form}\t{form}\tX\tX\t_\t{head}\t{rel}\t_\t_")
        out.append("")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _cases(tmp: Path) -> list[tuple[str, list[str], str, Path | None]]:
    """``(id, argv, expected, output)``: ``expected`` is ``refuse`` (the estimate exceeds the
    limit whatever else the machine holds) or ``finish`` (bounded; a refusal is accepted where
    the machine leaves less free than usual)."""
    text = _text()
    corpus = tmp / "corpus.txt"
    words = text.split()
    corpus.write_text(
        "\n".join(" ".join(words[i * 260 : (i + 1) * 260]) for i in range(12)) + "\n",
        encoding="utf-8",
    )
    haystack = tmp / "haystack.txt"
    haystack.write_text(text, encoding="utf-8")
    treebank = _long_sentences(tmp / "long.conllu", 20, 120)
    faith = tmp / "faith.txt"
    faith.write_text(" ".join(words[:400]) + "\n", encoding="utf-8")
    cut = ["--truncate", "--max-length"]
    return [
        ("inspect", ["inspect", "smollm2", text, *cut, "2048", "-o", f"{tmp}/i.parquet"],
         "refuse", tmp / "i.parquet"),
        ("report", ["report", "smollm2", text, *cut, "768", "-o", f"{tmp}/r.html"],
         "finish", tmp / "r.html"),
        ("heads", ["heads", "smollm2", text, *cut, "1024", "-o", f"{tmp}/h.csv"],
         "finish", tmp / "h.csv"),
        ("compare", ["compare", "smollm2", text, "--text-b", text[5:], *cut, "512",
                     "-o", f"{tmp}/c.html"], "finish", tmp / "c.html"),
        ("explain", ["explain", "smollm2", text, *cut, "1024", "-o", f"{tmp}/e.html"],
         "refuse", tmp / "e.html"),
        ("generate", ["generate", "smollm2", text[:9000], "--no-chat", "--max-new-tokens",
                      "400", "-o", f"{tmp}/g.html"], "refuse", tmp / "g.html"),
        ("scan", ["scan", "smollm2", "--file", str(haystack), *cut, "2048", "--topk", "400",
                  "--no-progress", "-o", f"{tmp}/sc.parquet"], "refuse", tmp / "sc.parquet"),
        ("atlas", ["atlas", "smollm2", str(corpus), "--batch-size", "1000", "--max-length",
                   "320", "--metrics", "entropy,to_prev", "--no-distances", "--no-progress",
                   "-o", f"{tmp}/a.parquet"], "finish", tmp / "a.parquet"),
        ("probe", ["probe", "smollm2", str(treebank), "--batch-size", "1000", "--no-progress",
                   "-o", f"{tmp}/p.csv"], "finish", tmp / "p.csv"),
        ("retrieval", ["retrieval", "smollm2", "--haystack", str(haystack), "--lengths", "800",
                       "--depths", "0.5", "--max-new-tokens", "8", "--no-progress",
                       "-o", f"{tmp}/rt.csv"], "finish", tmp / "rt.csv"),
        # the trace keeps every layer's queries, keys, block inputs and values: ~1.5 GB at 8k
        ("trace", ["trace", "smollm2", text * 2, *cut, "8192", "-o", f"{tmp}/t8.html"],
         "refuse", tmp / "t8.html"),
        ("trace-2k", ["trace", "smollm2", text, *cut, "2048", "-o", f"{tmp}/t2.html"],
         "finish", tmp / "t2.html"),
        # the deleted inputs of a 96-token text (ERASER's bins): passes planned against the budget
        ("faithfulness", ["faithfulness", "smollm2", str(faith), "--methods", "attention,random",
                          "--max-length", "96", "--steps", "eraser", "-o", f"{tmp}/f.csv"],
         "finish", tmp / "f.csv"),
    ]  # fmt: skip


def _outcome(name: str, done: Any, expected: str, output: Path | None) -> str:
    err = [line for line in done.stderr.splitlines() if line.strip()]
    where = f"{name}: rc {done.returncode}, stderr {done.stderr[-1500:]!r}"
    assert not killed(done), f"killed by the memory limit: {where}"
    assert "Traceback" not in done.stderr, where
    assert all(line.startswith("inspector: ") for line in err), where  # warnings: a line each
    if done.returncode == 0:
        assert expected == "finish", f"expected a refusal: {where}"
        assert output is None or output.exists(), where
        return "finished"
    assert done.returncode == 2, where
    errors = [line for line in err if line.startswith("inspector: error: ")]
    assert len(errors) == 1 and REFUSAL.match(errors[0]), where
    assert output is None or not output.exists(), where  # nothing half-written
    return "refused"


def test_every_command_finishes_or_refuses_under_a_memory_limit(tmp_path):
    outcomes, peaks = {}, {}
    # the limit is real: without the pre-flight (a budget far above it) inspect is killed
    control = ["inspect", "smollm2", _text(), "--truncate", "--max-length", "2048"]
    with memory_cgroup(LIMIT) as folder:
        dead = run_in(folder, [*control, "--max-memory", "100GB", "-o", f"{tmp_path}/x.parquet"])
    assert killed(dead), (dead.returncode, dead.stderr[-1500:])
    for name, argv, expected, output in _cases(tmp_path):
        with memory_cgroup(LIMIT) as folder:  # a fresh one: no page cache of the run before
            # --quiet: no progress lines, so stderr holds only inspector's own lines
            outcomes[name] = _outcome(name, run_in(folder, [*argv, "-q"]), expected, output)
            peaks[name] = peak_bytes(folder)
    finished = [name for name, how in outcomes.items() if how == "finished"]
    assert {"heads", "compare", "atlas"} & set(finished), outcomes  # the bounded paths ran
    print(outcomes)
    print({k: f"{v / 2**30:.2f} GiB" for k, v in peaks.items() if v})  # for the closing note


_THREADS = """
import sys, threading
import inspector
from inspector.errors import ResourceError
m = inspector.load("smollm2")
text = sys.argv[1]
results = []
def run():
    try:
        ins = m.inspect(text, truncation=True, max_length=1024)
        results.append(("ok", ins.attention.shape))
    except ResourceError as exc:
        results.append(("refused", str(exc)))
threads = [threading.Thread(target=run) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sorted(r[0] for r in results))
"""


def test_two_threads_cannot_both_pass_the_pre_flight(tmp_path):
    """Each capture needs ~1.4 GB and only one fits: the estimate is checked under the model's
    lock, so the second thread measures what the first holds and refuses; before, both passed
    the pre-flight and the process was killed."""
    with memory_cgroup(LIMIT) as folder:
        done = run_in(folder, [_text()], code=_THREADS)
    assert not killed(done), done.stderr[-1500:]
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip().splitlines()[-1] == "['ok', 'refused']", done.stdout
