"""What every command shares: the model and input options, loading, output checks, labels.

Imports nothing but :mod:`inspector.api` (lazily, inside functions).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

N = TypeVar("N", int, float)
T = TypeVar("T")

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

MODEL_HELP = (
    "'minilm' or 'smollm2' (embedded), a model folder, a .gguf file, or a Hugging Face hub id"
)


class UsageError(Exception):
    """A command-line argument is unusable; the message says how to fix it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so it stops as Ctrl-C stops it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def interrupted(exc: BaseException) -> tuple[int, str]:
    """The exit code (128 + signal) and what happened, for Ctrl-C, SIGTERM and SIGHUP."""
    if isinstance(exc, Terminated):
        import signal

        return 128 + exc.signum, f"stopped by {signal.Signals(exc.signum).name}"
    return EXIT_INTERRUPTED, "interrupted"


def number_list(kind: Callable[[str], N], expected: str) -> Callable[[str], list[N]]:
    """An argparse ``type=`` for comma-separated numbers (spaces ignored); a bad value's error
    says ``expected {expected}``."""

    def parse(value: str) -> list[N]:
        try:
            return [kind(v) for v in value.replace(" ", "").split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None

    return parse


int_list = number_list(int, "comma-separated integers such as 0,1,5")


def names(value: str) -> list[str]:
    return [v for v in value.replace(" ", "").split(",") if v]


# ------------------------------------------------------------------------------ shared options


def flag(p: argparse.ArgumentParser, *names: str, help: str) -> None:
    """An on/off option (``store_true``): off unless given."""
    p.add_argument(*names, action="store_true", help=help)


def add_model(p: argparse.ArgumentParser, help: str = MODEL_HELP) -> None:
    """The model argument and the loading options every command shares."""
    p.add_argument("model", metavar="MODEL", help=help)
    p.add_argument("--device", help="torch device, e.g. cuda (default: where the model loads)")
    p.add_argument("--dtype", help="model dtype, e.g. float16 (default: the checkpoint's)")
    p.add_argument(
        "--gguf-file",
        metavar="NAME",
        help="GGUF file inside the MODEL folder (default: the embedded model's; a .gguf path "
        "as MODEL names its own)",
    )
    flag(p, "--trust-remote-code", help="allow the model folder / hub repo to run its own code")
    flag(
        p,
        "--allow-pickle",
        help="accept pickle weights (pytorch_model.bin) when no safetensors exist",
    )
    flag(
        p,
        "-q",
        "--quiet",
        help=(
            "no progress bars, lines or notes on stderr (default: off; a bar on a terminal, "
            "elsewhere a line every 30 s for work over 10 s; a GGUF file's first load always says "
            "so in one line)"
        ),
    )


def add_output(
    p: argparse.ArgumentParser, help: str, *, required: bool = True, default: str | None = None
) -> None:
    """``-o/--output`` and ``--mkdir``: an output folder that does not exist is refused."""
    text = help if required else f"{help} (default: {default or 'print only, write nothing'})"
    p.add_argument("-o", "--output", required=required, metavar="PATH", help=text)
    flag(
        p,
        "--mkdir",
        help="create the output's folder when it does not exist (without it: an error)",
    )
    flag(p, "--force", help="replace an output file that is read-only (without it: an error)")


def add_length(p: argparse.ArgumentParser) -> None:
    flag(p, "--truncate", help="cut inputs longer than the model's limit instead of failing")
    p.add_argument(
        "--max-length",
        type=int,
        metavar="N",
        help="a lower token limit (default: the model's own)",
    )


def length_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`add_length`'s options as the API's ``truncation=`` and ``max_length=``."""
    return {"truncation": args.truncate, "max_length": args.max_length}


def add_text(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="the input text")
    p.add_argument("--pair", metavar="TEXT", help="second text of a sentence pair (default: none)")
    p.add_argument(
        "--target",
        metavar="TEXT",
        help="decoder text of encoder-decoder models (default: the decoder start token alone)",
    )
    add_length(p)


def add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layers",
        type=int_list,
        metavar="L,L",
        help="layer indexes to keep, e.g. 0,5 (default: all)",
    )
    p.add_argument(
        "--heads", type=int_list, metavar="H,H", help="head indexes to keep, e.g. 3 (default: all)"
    )


def selection(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`add_selection`'s options as the API's ``layers=`` and ``heads=``."""
    return {"layers": args.layers, "heads": args.heads}


def progress(args: argparse.Namespace) -> bool | None:
    """The ``progress=`` of long API calls: off under ``--quiet`` or ``--no-progress``, else
    automatic (a bar on a terminal, lines elsewhere: :mod:`inspector._progress`)."""
    off = getattr(args, "quiet", False) or getattr(args, "no_progress", False)
    return False if off else None


def add_memory(
    p: argparse.ArgumentParser,
    help: str = "memory budget, e.g. 4GB (default: what is available); refused before running "
    "when the estimate does not fit",
) -> None:
    p.add_argument("--max-memory", metavar="SIZE", help=help)


def add_resume(p: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--checkpoint`` of a run that saves its progress as it goes."""
    flag(
        p,
        "--resume",
        help="continue an interrupted run from its checkpoint (the same corpus, unchanged)",
    )
    p.add_argument(
        "--checkpoint", metavar="PATH", help="checkpoint file (default: OUTPUT.ckpt.npz)"
    )


def load_model(args: argparse.Namespace, model: str | None = None) -> Any:
    from ..api import load

    return load(
        model or args.model,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        gguf_file=args.gguf_file,
        allow_pickle=args.allow_pickle,
        progress=not getattr(args, "quiet", False) and sys.stderr.isatty(),
    )


def inspect_text(args: argparse.Namespace) -> Any:
    """The inspection of TEXT (and ``--pair``, ``--target``) with the length, selection and
    memory options."""
    return load_model(args).inspect(
        args.text,
        args.pair,
        target=args.target,
        max_memory=args.max_memory,
        **length_options(args),
        **selection(args),
    )


def encoder_part(ins: Any) -> Any:
    """The part whose attention a one-input summary describes: an encoder-decoder's encoder."""
    return ins.encoder if ins.is_encoder_decoder else ins


def check_output(path: str | None, *suffixes: str, args: argparse.Namespace | None = None) -> None:
    """Check an output path before any model work (a usage error names the suffixes).

    Its folder must exist unless ``--mkdir`` was given (then it is created); a read-only file
    is refused unless ``--force``.
    """
    if path is None:
        return
    from ..api import check_output as api_check_output

    api_check_output(
        path,
        suffixes,
        mkdir=bool(getattr(args, "mkdir", False)),
        force=bool(getattr(args, "force", False)),
    )


def check_not_input(
    outputs: str | list[str | None] | None,
    inputs: list[str | None],
    args: argparse.Namespace | None = None,
) -> None:
    """Refuse an output path (or a file written beside it) that is one of the command's input
    files, or one that two outputs share. ``args`` adds the model paths to the inputs."""
    from ..api import check_not_input as api_check_not_input

    given = [outputs] if outputs is None or isinstance(outputs, str) else list(outputs)
    named = [o for o in given if o is not None]
    for i, a in enumerate(named):
        for b in named[i + 1 :]:
            if os.path.realpath(a) == os.path.realpath(b) or (
                os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
            ):
                raise UsageError(
                    f"{a} and {b} are one file, but the command writes two different files "
                    f"there; choose other paths"
                )
    models = [getattr(args, "model", None), getattr(args, "model_b", None)] if args else []
    api_check_not_input(named, [*inputs, *models])


def check_output_of(
    args: argparse.Namespace, *suffixes: str, inputs: Sequence[str | None] = ()
) -> None:
    """``-o/--output`` checked before any model work: its suffix and folder
    (:func:`check_output`), and that it is none of ``inputs`` nor the model."""
    check_output(args.output, *suffixes, args=args)
    check_not_input(args.output, list(inputs), args)


def refuse_unfinished(checkpoint: str, resume: bool, what: str) -> None:
    """A checkpoint left by an interrupted run: continue it only with ``--resume``."""
    if os.path.exists(checkpoint) and not resume:
        raise UsageError(
            f"{checkpoint} holds an unfinished {what}: add --resume to continue it, or delete "
            f"it to start over"
        )


@contextlib.contextmanager
def saved_on_interrupt(checkpoint: str) -> Iterator[None]:
    """Ctrl-C inside the block says where the progress was saved."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if os.path.exists(checkpoint):
            exc.inspector_note = f"progress saved in {checkpoint}: rerun with --resume"  # type: ignore[attr-defined]
        raise


@contextlib.contextmanager
def resumable_run(
    args: argparse.Namespace,
    suffixes: Sequence[str],
    beside: Callable[[str], os.PathLike[str]],
    what: str,
) -> Iterator[str]:
    """The files of a run over ``args.texts`` that checkpoints as it goes, checked before any
    model work; the block runs it and gets its checkpoint path.

    ``-o`` (one of ``suffixes``), ``--report`` (``.html``), the file written ``beside`` the
    output and the checkpoint (``--checkpoint``, default ``OUTPUT.ckpt.npz``) must be writable,
    none of them an input or the model; a checkpoint left by an interrupted ``what`` is refused
    without ``--resume``. Ctrl-C inside the block says where the progress was saved.
    """
    check_output(args.output, *suffixes, args=args)
    check_output(args.report, ".html", ".htm", args=args)
    from ..api import default_checkpoint

    checkpoint = args.checkpoint or str(default_checkpoint(args.output))
    written = str(beside(args.output))
    check_not_input([args.output, written, args.report, checkpoint], [args.texts], args)
    check_output(written, *suffixes, args=args)  # a read-only file beside it: refused now
    refuse_unfinished(checkpoint, args.resume, what)
    with saved_on_interrupt(checkpoint):
        yield checkpoint


def save_kept(save: Callable[[], T], checkpoint: str, what: str) -> T:
    """Write a resumable run's outputs (``save()``), then drop its checkpoint. When writing
    fails the checkpoint, which holds the measured ``what``, stays, and the message says how to
    write it without measuring again."""
    try:
        written = save()
    except KeyboardInterrupt as exc:
        if os.path.exists(checkpoint):
            exc.inspector_note = (  # type: ignore[attr-defined]
                f"no partial output was written; the measured {what} is kept in {checkpoint}: "
                f"rerun with --resume to write it"
            )
        raise
    except Exception as exc:
        if not os.path.exists(checkpoint):
            raise
        raise UsageError(
            f"{' '.join(str(exc).split())}; the measured {what} is kept in {checkpoint}: rerun "
            f"with --resume to write it without measuring again"
        ) from exc
    if os.path.exists(checkpoint):
        os.remove(checkpoint)
    return written


def finish_run(result: Any, output: str, checkpoint: str, report: str | None) -> tuple[Any, str]:
    """Save a resumable run's result (:func:`save_kept`), write its report: the paths
    written and the summary's ``", report -> PATH"`` tail."""
    paths = save_kept(lambda: result.save(output), checkpoint, "scoreboard")
    if not report:
        return paths, ""
    result.report(report)
    return paths, f", report -> {report}"


def read_texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.texts or [])
    if args.file:
        if not os.path.isfile(args.file):
            raise UsageError(
                f"--file {args.file} does not exist; give a text file, one text a line"
            )
        with open(args.file, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
                except UnicodeDecodeError:
                    raise UsageError(
                        f"--file {args.file}, line {number}: not valid UTF-8; save the file "
                        f"as UTF-8"
                    ) from None
                if line:
                    texts.append(line)
    if not texts:
        raise UsageError("give at least one TEXT or --file texts.txt (one text per line)")
    return texts


def label(*head: Any) -> str:
    """A head's display label, ``layer.head`` (e.g. ``5.3``): the one notation of every output."""
    return ".".join(str(int(x)) for x in head)


def count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def scored_heads(scores: Any) -> str:
    """``5.3 0.91, 2.0 0.85``: a Series of scores indexed by (layer, head), in its order."""
    return ", ".join(f"{label(*key)} {float(value):.2f}" for key, value in scores.items())


def shape(part: Any) -> str:
    """``6 layers x 12 heads``: what an inspection kept."""
    return f"{count(len(part.stack.layers), 'layer')} x {count(len(part.stack.heads), 'head')}"


@dataclass(frozen=True)
class Command:
    """One sub-command: its help line, its arguments and the function that runs it."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], str]
