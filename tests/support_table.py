"""The README's support table, written from the family matrix's families.

Every row is a family of ``tests/factories.py`` (``FAMILY_SPECS``, ``VISION_SPECS``) that
``tests/integration/test_families.py`` and ``test_vision.py`` run (every capability marked is
checked there); the architecture is what
inspector reads from the tiny model itself. ``test_families.py`` checks that the README holds
exactly this table.

    python tests/support_table.py           # print the table
    python tests/support_table.py --write   # replace it in README.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from factories import (
    FAMILY_NOTES,
    FAMILY_SPECS,
    VISION_SPECS,
    build_family,
    build_vision,
)

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- support-table:begin (tests/support_table.py writes this) -->"
END = "<!-- support-table:end -->"
YES = "✓"


def rows() -> list[str]:
    """One markdown row per family."""
    from inspector.models.families import classify

    out = []
    for model_type, (_, cls, _) in FAMILY_SPECS.items():
        architecture = classify(build_family(model_type)[0])
        stacks = "encoder, decoder, cross" if architecture == "encoder-decoder" else "self"
        generate = "—" if architecture == "encoder" else YES
        notes = FAMILY_NOTES.get(model_type, "")
        out.append(
            f"| `{model_type}` | `{cls}` | {architecture} | {stacks} | {YES} | {generate} | "
            f"{YES} | {YES} | {notes} |"
        )
    for model_type, (cls, processor) in VISION_SPECS.items():
        architecture = classify(build_vision(model_type)[0])
        out.append(
            f"| `{model_type}` | `{cls}` | {architecture} (image) | self | {YES} | — | {YES} | "
            f"{YES} | image input through `{processor}`; rollout and every head over the image |"
        )
    return out


def render() -> str:
    """The table, between its markers."""
    head = (
        "| family (`model_type`) | class tested | architecture | stacks | capture | generate | "
        "norms | importance, what mattered | notes |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([BEGIN, head, *rows(), END])


def write(path: Path = README) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + render() + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(render())
