"""Package data for pages: the Jinja2 environment, static JS/CSS and bertviz's own JavaScript.

Everything a page needs is read from package data (``inspector/render/static``,
``inspector/render/templates``), so the pages never reference the network. bertviz's view
scripts are vendored unchanged under ``static/bertviz/`` (with its Apache-2.0 licence and their
checksums in ``SOURCE.txt``); bertviz's Python package is not used (it imports IPython and
declares dependencies inspector does not need).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import importlib.util
import json
import re
from typing import Any

from markupsafe import Markup

from ..errors import InspectorError

#: Third-party scripts shipped as package data (from npm), with their licences.
D3_FILE = "d3-5.7.0.min.js"
JQUERY_FILE = "jquery-2.2.4.min.js"
BERTVIZ_VIEWS = ("head", "model", "neuron")
#: The bertviz release whose view scripts are vendored in ``static/bertviz/``.
BERTVIZ_VERSION = "1.4.1"
_SCRIPT_END = re.compile(r"</script|<!--", re.IGNORECASE)


@functools.cache
def static_text(name: str) -> str:
    """The text of a file under ``inspector/render/static``."""
    folder = importlib.resources.files("inspector.render") / "static"
    return folder.joinpath(*name.split("/")).read_text("utf-8")


@functools.cache
def bertviz_js(view: str) -> str:
    """bertviz's own ``{view}_view.js`` source (bertviz 1.4.1, vendored unchanged)."""
    if view not in BERTVIZ_VIEWS:
        raise ValueError(f"unknown bertviz view {view!r}")
    return static_text(f"bertviz/{view}_view.js")


def inline_script(source: str) -> Markup:
    """Mark a trusted script (package data) safe for a ``<script>`` element, after checking that
    it cannot end the element early."""
    if _SCRIPT_END.search(source):
        raise InspectorError("a bundled script contains '</script' or '<!--' and cannot be inlined")
    return Markup(source)


def versions() -> dict[str, str]:
    """Versions of the packages that shape a page."""
    out = {}
    for pkg in ("attention-inspector", "jinja2"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    out["bertviz"] = BERTVIZ_VERSION
    out["d3"] = "5.7.0"
    out["jquery"] = "2.2.4"
    return out


@functools.lru_cache(maxsize=1)
def environment() -> Any:
    """The package's Jinja2 environment: templates from package data, autoescaping on."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("inspector.render", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2", "html.j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["quoted"] = quoted
    return env


def quoted(value: Any) -> str:
    """``value`` as a quoted string for reading (``"Ġcat"``, ``"\\n"``): the ``|quoted`` filter.

    Returns plain text, so autoescaping escapes it like any other value, also inside an
    attribute. (``|tojson`` is for ``<script>`` elements only: it leaves ``"`` as is, so in an
    attribute a token could close the attribute and add its own, e.g. ``onfocus=...``.)
    """
    return json.dumps(str(value), ensure_ascii=False)


def runtime_scripts(views: set[str], extra: tuple[str, ...] = ()) -> list[Markup]:
    """The scripts of a page, in order: d3, jQuery, the runtime, bertviz views, extra files."""
    scripts = [
        inline_script(static_text(D3_FILE)),
        inline_script(static_text(JQUERY_FILE)),
        inline_script(static_text("inspector.js")),
    ]
    for view in BERTVIZ_VIEWS:
        if view in views:
            # The runtime's require.js shim files the next requirejs() call under this name.
            scripts.append(Markup(f'inspector.expectScript("{view}");'))
            # bertviz's source, unchanged, inside a function whose `console` drops its log lines
            scripts.append(
                Markup("(function (console) {\n")
                + inline_script(bertviz_js(view))
                + Markup("\n})(inspector.quietConsole);")
            )
    scripts.extend(inline_script(static_text(name)) for name in extra)
    return scripts
