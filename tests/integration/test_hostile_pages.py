"""Tokens that close attributes or scripts, in every kind of page (issue 18, item 1).

A tokenizer may hold any added token (a model folder, a hub tokenizer): one that closes a
double- or single-quoted attribute, or a ``<script>`` element, must stay text. The pages are
parsed here (the browser tier loads the same pages in Chromium); every template is also checked
for ``|tojson`` outside a ``<script>`` element, where it does not escape ``"``.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import pytest

from factories import ATTRIBUTE_ATTACKS, PAGE_KINDS, hostile_pages, parse

#: Attribute names the pages use on purpose; anything else was made by a token.
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9-]*(:[a-z]+)?")
#: Pages whose tokens are shown as text with a tooltip (title="... token "...""). The scan page
#: keeps its tokens in JSON for its script; the atlas page shows statistics only.
TOKENS_SHOWN = ("report", "explain", "generation", "compare")


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hostile_pages(tmp_path_factory.mktemp("hostile"))


def _attributes(html: str) -> list[tuple[str, str, str | None]]:
    return [(tag, name, value) for tag, attrs in parse(html).tags for name, value in attrs.items()]


@pytest.mark.parametrize("kind", PAGE_KINDS)
def test_no_token_makes_an_attribute_or_a_script(pages: dict[str, Path], kind: str) -> None:
    html = pages[kind].read_text(encoding="utf-8")
    made = [
        (tag, name, value)
        for tag, name, value in _attributes(html)
        if name.startswith("on")
        or name in ("autofocus", "x")
        or (name in ("href", "src") and not (value or "").startswith(("#", "data:")))
        or not ATTRIBUTE_NAME.fullmatch(name)
        or (name == "tabindex" and value != "0")
    ]
    assert made == [], f"{kind}: attributes made by tokens: {made[:5]}"
    page = parse(html)
    for attrs, body in page.scripts:
        if attrs.get("type") == "application/json":
            json.loads(body)  # a token that closed the element would cut the JSON short
        else:
            assert "alert(" not in body, f"{kind}: a script element runs a token: {body[:200]}"
    assert sum(tag == "script" for tag, _ in page.tags) == len(page.scripts)


@pytest.mark.parametrize("kind", TOKENS_SHOWN)
def test_tokens_are_shown_whole_as_text_and_in_tooltips(pages: dict[str, Path], kind: str) -> None:
    html = pages[kind].read_text(encoding="utf-8")
    page = parse(html)
    text = "".join(page.text)
    titles = [value or "" for _, name, value in _attributes(html) if name == "title"]
    for attack in ATTRIBUTE_ATTACKS:
        assert attack in text, f"{kind}: {attack!r} is not shown"
        quoted = json.dumps(attack, ensure_ascii=False)
        assert any(quoted in t for t in titles), f"{kind}: no tooltip holds {quoted}"


@pytest.mark.parametrize("kind", PAGE_KINDS)
def test_no_page_shows_a_path_of_this_machine(pages: dict[str, Path], kind: str) -> None:
    """The models were loaded from folders under pytest's temporary folder: their names
    (``hostile-bert``) may show, their paths may not, in the title or anywhere else."""
    html = pages[kind].read_text(encoding="utf-8")
    folder = str(pages[kind].parent)
    assert folder not in html and json.dumps(folder)[1:-1] not in html
    title = re.search(r"<title>(.*?)</title>", html, re.S)
    assert title is not None and "/" not in title.group(1).split(" — ")[0].split(":")[0]
    if kind in ("compare", "scan"):
        assert "hostile-" in title.group(1)


def test_tojson_only_inside_script_elements() -> None:
    """``|tojson`` leaves ``"`` as is: in an attribute, a token could add attributes. Every use
    in a template must be the body of a ``<script type="application/json">`` element."""
    root = files("inspector.render") / "templates"
    uses = []
    for path in sorted(Path(str(root)).rglob("*.j2")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"\{\{[^}]*\|\s*tojson[^}]*\}\}", line):
                before = line[: match.start()]
                inside = re.search(r'<script type="application/json"[^>]*>$', before)
                uses.append((path.name, number, inside is not None))
    assert uses and all(ok for *_, ok in uses), [u for u in uses if not u[2]]
