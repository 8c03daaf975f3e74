"""Loading SmolLM2: the weights cache against dequantising its 4-bit GGUF file on every load.

Each load runs in a fresh process (no import or file cache shared with this one beyond the OS page
cache), against a temporary ``INSPECTOR_CACHE_DIR``, interleaved so a busy machine slows both
sides alike:

- baseline: the GGUF file loaded directly (what every load did before the cache);
- first load: dequantise, write the cache entry, check it, read it back;
- later loads: read and check the cached safetensors.

Times are of ``inspector.load("smollm2")`` alone (Python start-up and imports excluded); the
table gives ratios to the baseline, seconds for context.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench._timing import checked, in_process, run_script

_PROBE = """
import os, sys, time
import inspector
from inspector.models.embedded import EMBEDDED
from inspector.models.loading import LoadOptions, _load_from_source
model = sys.argv[2]
if model in EMBEDDED:
    folder, gguf_file = str(EMBEDDED[model].locate()), EMBEDDED[model].gguf_file
else:  # a .gguf file
    folder, gguf_file = os.path.dirname(os.path.abspath(model)), os.path.basename(model)
start = time.perf_counter()
if sys.argv[1] == "direct":
    _load_from_source(model, folder, None, None, LoadOptions(gguf_file=gguf_file))
else:
    inspector.load(model)
print(time.perf_counter() - start)
"""


def _load_seconds(kind: str, cache: str, model: str = "smollm2") -> float:
    env = dict(os.environ, INSPECTOR_CACHE_DIR=cache, TRANSFORMERS_VERBOSITY="error")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return float(checked(run_script(_PROBE, [kind, model], env=env)).strip().splitlines()[-1])


def main(rounds: int = 3, model: str = "smollm2") -> str:
    """``model``: an embedded GGUF model's name, or a ``.gguf`` file."""
    direct, first, later = [], [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="inspector-bench-cache-") as cache:
            first.append(_load_seconds("cached", cache, model))
            direct.append(_load_seconds("direct", cache, model))
            later.append(_load_seconds("cached", cache, model))
    base = min(direct)
    rows = [
        f"| load | best of {rounds} | / GGUF load |",
        "|---|---:|---:|",
        f"| GGUF dequantised on every load (baseline) | {base:.1f} s | 1 |",
        f"| first load (dequantise, write, check) | {min(first):.1f} s | {min(first) / base:.2f} |",
        f"| later loads (cached safetensors) | {min(later):.1f} s | "
        f"**{min(later) / base:.2f}** (goal: a few seconds) |",
    ]
    return "\n".join(rows)


def smoke(models: dict[str, str]) -> str:
    """The same table for a tiny GGUF file, one round, each load in this process."""
    with in_process():
        return main(1, models["decoder"])


if __name__ == "__main__":
    print(main())
