"""Memory pre-flight: what a capture, a frame or a scan will allocate, and what the machine allows.

Every run that materialises attention estimates its bytes *before* allocating (kept layers x
heads x rows x keys x itemsize, plus the forward pass's own transient memory) and refuses with a
:class:`~inspector.errors.ResourceError` when the estimate does not fit the budget, instead of
being killed by the kernel half-way. The budget is ``max_memory=`` when given (``"4GB"``,
``"512MiB"``, a number of bytes), otherwise the memory actually available: ``MemAvailable`` from
``/proc/meminfo``, lowered by the limit of the process's cgroup where one is set (containers,
``systemd-run -p MemoryMax=``), cgroup v1 and v2 alike.

The check runs under the model's lock (:func:`preflight`), which the step then keeps while it
allocates: of two threads sharing a model, the second measures what the first already holds
instead of both passing the pre-flight and then both allocating.

Estimates are deliberately a little high (the transient terms assume the eager attention keeps
its scores, its softmax and a cast alive at once); they are meant to refuse what cannot work,
not to account for every byte. Pure Python: nothing here imports torch or runs a model.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ResourceError

#: Bytes per unit: decimal for kB/MB/GB/TB, binary for KiB/MiB/GiB/TiB and bare K/M/G/T.
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*$")
#: Bytes per row of a long attention frame while it is built (about 12 kept, plus temporaries).
FRAME_BYTES_PER_ROW = 16
#: What any run allocates besides its tensors (the allocator's arenas, tokenizer output,
#: Python objects): 5-24 MB measured on SmolLM2 captures of 128-512 tokens, twice that here.
RUNTIME_BYTES = 48_000_000
#: cgroup limits at or above this are "no limit" (v1 reports 2**63 rounded to a page).
_NO_LIMIT = 2**60


def parse_memory(value: Any) -> int:
    """Bytes from ``4_000_000_000``, ``"4GB"``, ``"4 GiB"``, ``"512M"`` or ``"1.5G"``.

    Example:
        >>> parse_memory("4GB"), parse_memory("1.5GiB"), parse_memory(1024)
        (4000000000, 1610612736, 1024)
    """
    if isinstance(value, bool) or value is None:
        raise InputError(
            f"max_memory must be a size such as '4GB' or a number of bytes, got {value!r}"
        )
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if match is None or match.group(2).lower() not in _UNITS:
            raise InputError(
                f"max_memory={value!r} is not a size; write e.g. '4GB', '512MiB' or a number of "
                f"bytes"
            )
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise InputError(f"max_memory must be a size such as '4GB', got {type(value).__name__}")
    if not math.isfinite(number) or number <= 0:
        raise InputError(f"max_memory must be a positive size, got {value!r}")
    return int(number * _UNITS[unit])


def format_bytes(n: float) -> str:
    """``1.23 GB``, ``456 MB``, ``12 kB``: decimal units, three significant digits."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


# ------------------------------------------------------------------------------ what is free


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo() -> int | None:
    """``MemAvailable`` in bytes (``None`` off Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _stat_value(folder: Path, names: tuple[str, ...]) -> int:
    try:
        lines = (folder / "memory.stat").read_text().splitlines()
    except OSError:
        return 0
    values = dict(line.split()[:2] for line in lines if len(line.split()) >= 2)
    for name in names:
        if name in values:
            try:
                return int(values[name])
            except ValueError:
                return 0
    return 0


def _mounts() -> dict[str, Path]:
    """cgroup mount points: ``"v2"`` for the unified hierarchy, ``"v1"`` for the memory one."""
    out: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if len(parts) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2]
        if fstype == "cgroup2":
            out.setdefault("v2", Path(parts[4]))
        elif fstype == "cgroup" and "memory" in options.split(","):
            out.setdefault("v1", Path(parts[4]))
    return out


def cgroup_headroom() -> tuple[int, str] | None:
    """Bytes this process may still allocate under its cgroup's memory limit, and which limit.

    Walks from the process's own cgroup up to the root (a parent's limit binds too) and keeps
    the tightest ``limit - (usage - inactive file cache)``. ``None`` where no limit is set.
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    mounts = _mounts()
    best: tuple[int, str] | None = None
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if hier == "0" and controllers == "" and "v2" in mounts:
            base, limit_file, usage_file = mounts["v2"], "memory.max", "memory.current"
            stat: tuple[str, ...] = ("inactive_file",)
        elif "memory" in controllers.split(",") and "v1" in mounts:
            base, limit_file, usage_file = (
                mounts["v1"],
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
            stat = ("total_inactive_file", "inactive_file")
        else:
            continue
        folder = base / rel.lstrip("/")
        while True:
            limit = _read_int(folder / limit_file)
            usage = _read_int(folder / usage_file)
            if limit is not None and limit < _NO_LIMIT and usage is not None:
                free = max(0, limit - max(0, usage - _stat_value(folder, stat)))
                if best is None or free < best[0]:
                    best = (free, f"the cgroup limit of {format_bytes(limit)} ({folder})")
            if folder == base or folder.parent == folder:
                break
            folder = folder.parent
    return best


def available_memory() -> tuple[int, str]:
    """``(bytes, where from)``: MemAvailable, or the cgroup headroom when that is lower."""
    avail = _meminfo()
    found: tuple[int, str] = (
        (avail, "available memory (MemAvailable)")
        if avail is not None
        else (2**62, "no known limit")
    )
    group = cgroup_headroom()
    if group is not None and group[0] < found[0]:
        found = (group[0], f"the headroom under {group[1]}")
    return found


@dataclass(frozen=True)
class Budget:
    """How many bytes a run may allocate, and why (``max_memory=`` or what the machine has)."""

    bytes: int
    source: str

    def __str__(self) -> str:
        return f"{format_bytes(self.bytes)} ({self.source})"


@dataclass(frozen=True)
class MemoryLimit:
    """``max_memory=`` parsed once, where a public function takes it, and passed down as it
    is: a number of bytes, or ``None`` for what is available when each step checks.

    Example:
        >>> MemoryLimit.of("4GB").bytes, MemoryLimit.of(None).bytes
        (4000000000, None)
    """

    bytes: int | None = None

    @classmethod
    def of(cls, value: MemoryLimit | int | float | str | None) -> MemoryLimit:
        """The limit of ``value`` (a :class:`MemoryLimit`, bytes, ``"4GB"`` or ``None``).

        Raises:
            InputError: not a positive size.
        """
        if isinstance(value, MemoryLimit):
            return value
        return cls(None if value is None else parse_memory(value))

    def budget(self) -> Budget:
        """The budget now: the limit, or what the machine has (:func:`available_memory`)."""
        if self.bytes is not None:
            return Budget(self.bytes, "max_memory")
        free, source = available_memory()
        return Budget(free, source)


def release_freed_memory() -> None:
    """Hand the pages of freed heap memory back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). A pass that keeps tensors layer after layer leaves each layer's freed
    temporaries as holes between them that glibc keeps: 2.5x the live memory of a trace."""
    global _TRIM
    if _TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None
#: Passes over fewer tokens than this skip :func:`release_freed_memory` (its heap walk costs
#: 10-20 ms a call, a third of a 512-token trace, for holes of a few MB).
TRIM_FROM_TOKENS = 1024


def memory_budget(max_memory: MemoryLimit | int | str | None = None) -> Budget:
    """The budget: ``max_memory`` when given, else :func:`available_memory`."""
    return MemoryLimit.of(max_memory).budget()


# --------------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class MemoryEstimate:
    """An estimate of the bytes a run allocates, by part, against a budget.

    Attributes:
        what: the run (``"inspect() of 4,096 tokens"``).
        parts: bytes by part (``kept attention``, ``forward pass``, ...).
        budget: the budget it is checked against.
    """

    what: str
    parts: Mapping[str, int] = field(default_factory=dict)
    budget: Budget | None = None

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    @property
    def fits(self) -> bool:
        return self.budget is None or self.total <= self.budget.bytes

    def describe(self) -> str:
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.parts.items() if v)
        return f"{self.what} needs about {format_bytes(self.total)} ({parts})"

    def __str__(self) -> str:
        text = self.describe()
        if self.budget is not None:
            text += f"; budget {self.budget}: {'fits' if self.fits else 'does not fit'}"
        return text

    def check(self, advice: str) -> None:
        """Raise :class:`ResourceError` (estimate, budget, ``advice``) unless it fits."""
        if self.fits:
            return
        assert self.budget is not None
        raise ResourceError(
            f"{self.describe()}, more than the {self.budget}; nothing was run. {advice}"
        )


@contextlib.contextmanager
def preflight(
    lock: Any, make: Callable[[], MemoryEstimate], advice: str
) -> Iterator[MemoryEstimate]:
    """Take ``lock`` (a model's), then make the estimate and check it against the budget *now*,
    and hold the lock while the block allocates.

    ``make`` runs under the lock because the default budget is what is free at that moment: a
    thread that waited for the lock sees what the one before it keeps.

    Example:
        >>> with preflight(bundle.lock, lambda: capture_estimate(bundle, n), "...") as est:
        ...     run()  # doctest: +SKIP
    """
    with lock:
        est = make()
        est.check(advice)
        yield est


def model_dims(model: Any) -> dict[str, int]:
    """Hidden size, feed-forward size and vocabulary of a model's config (best effort)."""
    cfg = getattr(model, "config", None)

    def first(*names: str, default: int = 0) -> int:
        for name in names:
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return default

    hidden = first("hidden_size", "d_model", "n_embd", "dim", default=1024)
    return {
        "hidden": hidden,
        "ffn": first(
            "intermediate_size", "d_ff", "n_inner", "ffn_dim", "encoder_ffn_dim", default=4 * hidden
        ),
        "vocab": first("vocab_size", default=32000),
    }


def itemsize(dtype: str) -> int:
    return {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}.get(str(dtype), 4)


def cache_bytes(
    n_layers: int, n_kv_heads: int, tokens: int, head_dim: int, model_itemsize: int = 4
) -> int:
    """Bytes of a decoder's key/value cache for ``tokens`` positions, twice over: a growing
    cache holds its old and its new tensors while a step appends to it."""
    return 2 * 2 * n_layers * n_kv_heads * tokens * head_dim * model_itemsize


def attention_bytes(layers: int, heads: int, rows: int, keys: int, size: int = 4) -> int:
    """Bytes of a kept ``(layer, head, rows, keys)`` array."""
    return int(layers) * int(heads) * int(rows) * int(keys) * int(size)


def forward_bytes(
    dims: Mapping[str, int],
    *,
    n_heads: int,
    shapes: Mapping[str, tuple[int, int]],
    model_itemsize: int = 4,
    eager: bool = True,
    logits_rows: int = 1,
    block_rows: int = 256,
    position_bias: bool = False,
) -> int:
    """Transient bytes of one forward pass (one layer's attention is alive at a time).

    ``shapes`` maps each attention kind to ``(rows, keys)``. Eager attention holds its scores,
    the float32 softmax and a cast at once (three ``heads x rows x keys`` tensors) plus a float
    mask; the blockwise path holds ``heads x block_rows x keys`` scratch instead. Activations
    are a dozen hidden-size vectors and three feed-forward vectors per token; logits are
    ``logits_rows x vocab`` float32.
    """
    tokens = sum(rows for rows, _ in shapes.values())
    acts = tokens * (12 * dims["hidden"] + 3 * dims["ffn"]) * model_itemsize
    logits = logits_rows * dims["vocab"] * 4
    per_kind = []
    for rows, keys in shapes.values():
        if eager:
            attn = n_heads * rows * keys * (8 + model_itemsize) + 4 * rows * keys
        else:
            attn = 6 * n_heads * min(rows, block_rows) * keys * 4
        if position_bias:
            attn += n_heads * rows * keys * 4
        per_kind.append(attn)
    return int(acts + logits + max(per_kind, default=0))


def estimate(
    what: str, parts: Mapping[str, int], max_memory: MemoryLimit | None = None
) -> MemoryEstimate:
    """A :class:`MemoryEstimate` of ``parts`` against :func:`memory_budget` (``max_memory``)."""
    return MemoryEstimate(what, {k: int(v) for k, v in parts.items()}, memory_budget(max_memory))


#: What to do instead, by the command that refused (each names only options it has).
ADVICE: dict[str, str] = {
    "inspect": (
        "Use scan() for long inputs (bounded memory; CLI: inspector scan), keep fewer layers=[...] "
        "/ heads=[...] (CLI --layers/--heads), store dtype='float16', or raise max_memory= if "
        "you know more is free"
    ),
    "generate": (
        "Lower max_new_tokens (CLI --max-new-tokens): the kept attention grows with the square "
        "of prompt + generated tokens; keep fewer layers=[...] / heads=[...] (CLI "
        "--layers/--heads) or store dtype='float16'"
    ),
    "frame": (
        "Write it with to_parquet() / to_csv(), which stream one layer at a time, select "
        "layers=[...] / heads=[...], or measure with scan() instead"
    ),
    "atlas": (
        "Truncate long texts with --max-length N or lower --batch-size (Python: max_length=, "
        "batch_size=); batches are already split to fit the budget (--max-memory)"
    ),
    "trace": (
        "Trace a shorter input (CLI --truncate --max-length N), or raise max_memory= (CLI "
        "--max-memory) if you know more is free"
    ),
    "scan": (
        "Keep fewer rows=, a smaller topk= or pool=, fewer layers=[...] / heads=[...], or raise "
        "max_memory= if you know more is free"
    ),
}


__all__ = [
    "ADVICE",
    "FRAME_BYTES_PER_ROW",
    "RUNTIME_BYTES",
    "TRIM_FROM_TOKENS",
    "Budget",
    "MemoryEstimate",
    "MemoryLimit",
    "attention_bytes",
    "available_memory",
    "cache_bytes",
    "cgroup_headroom",
    "estimate",
    "format_bytes",
    "forward_bytes",
    "itemsize",
    "memory_budget",
    "model_dims",
    "parse_memory",
    "preflight",
]
