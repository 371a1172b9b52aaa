"""The pages' layout: the Jinja2 templates (``templates/*.html``), the stylesheet and the blocks
every section is built of (tables, definition lists, figures, the Errors box).

The templates do not autoescape: the Python side escapes all text from the run
(:mod:`.markup`) and the templates escape the rest with the ``esc`` filter (the same
:func:`html.escape`), so a page is the same bytes whichever side writes a piece of it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import jinja2

from .._version import __version__
from .markup import escape, file_url, linkify
from .summary import RunError

__all__ = [
    "Cell",
    "build_sections",
    "definition_list",
    "error_list_html",
    "figure_html",
    "html_table",
    "macro",
    "render_page",
    "report_css",
]

#: A table cell: pre-escaped content, or ``(content, class)``.
Cell = str | tuple[str, str]


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=False,  # the code escapes (see the module docstring)
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["esc"] = escape
    return env


@functools.cache
def report_css() -> str:
    """The pages' stylesheet (``templates/report.css``), inlined in each page."""
    return (resources.files(__package__) / "templates" / "report.css").read_text(encoding="utf-8")


def macro(template: str, name: str) -> Callable[..., str]:
    """The macro ``name`` of ``templates/<template>``, callable from Python."""
    return getattr(_environment().get_template(template).module, name)


def html_table(
    header: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    cls: str = "",
    id_: str = "",
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table from pre-escaped cells (or ``(cell, class)`` pairs); the first cell of
    each row is its header."""
    pairs = [[c if isinstance(c, tuple) else (c, "") for c in row] for row in rows]
    return str(macro("blocks.html", "table")(header, pairs, cls, id_, row_classes))


def definition_list(items: Iterable[tuple[str, str]]) -> str:
    """A definition list from (escaped term, pre-escaped description) pairs."""
    return str(macro("blocks.html", "definitions")(list(items)))


def figure_html(src: str, alt: str, caption: str = "") -> str:
    """An image with an optional (pre-escaped) caption."""
    return str(macro("blocks.html", "figure")(src, alt, caption))


def error_list_html(errors: Iterable[RunError | str], base: Path) -> str:
    """The Errors box: each message escaped, existing files in it linked, and its crash file."""
    items = []
    for err in errors:
        err = err if isinstance(err, RunError) else RunError(str(err))
        text = linkify(err.message, base)
        crash = err.crash_file
        if crash:
            href = file_url(crash, base) if os.path.isfile(crash) else None
            # inside the page's folder, shown as the path the link follows
            shown = unquote(href) if href and not href.startswith("file:") else crash
            text += (
                f' (crash file: <a href="{escape(href)}">{escape(shown)}</a>)'
                if href
                else f" (crash file: {escape(crash)}, not found)"
            )
        items.append(text)
    return str(macro("blocks.html", "error_list")(items))


def build_sections(
    builders: Sequence[tuple[str, str, Callable[[], str | None]]], problems: list[str]
) -> list[tuple[str, str, str]]:
    """Build each section (title, anchor, builder); a builder returning None leaves its
    section out, one that fails leaves a notice and adds its error to ``problems``."""
    sections = []
    for title, anchor, build in builders:
        try:
            body = build()
        except Exception as exc:  # a report of a failed run must still be written
            problems.append(f"report: {title} section: {exc}")
            body = '<p class="bad">This section could not be drawn; see Errors.</p>'
        if body is not None:
            sections.append((title, anchor, body))
    return sections


def render_page(
    title: str, heading: str, sections: Sequence[tuple[str, str, str]], *, alert: str = ""
) -> str:
    """The whole page: navbar, heading, optional alert, sections (title, anchor, body)."""
    return (
        _environment()
        .get_template("page.html")
        .render(
            title=title,
            heading=heading,
            sections=sections,
            alert=alert,
            css=report_css(),
            version=__version__,
        )
    )
