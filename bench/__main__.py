"""Run every benchmark module (``bench/bench_*.py``) and print their tables.

``python -m bench`` runs all; ``python -m bench core report`` runs the named ones. Each module has
``main() -> str`` returning a markdown table whose numbers are ratios against a baseline measured
in the same run (absolute seconds are printed for context only).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    here = Path(__file__).parent
    names = sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )
    wanted = argv or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {names}", file=sys.stderr)
        return 2
    for name in wanted:
        start = time.perf_counter()
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"\n## {name}\n")
        print(module.main())
        print(f"\n({name}: {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
