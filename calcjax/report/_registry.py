"""The registry of report tables: one definition per table file, rendered to Markdown and HTML.

A suite adds its table by registering one definition in its own module::

    from calcjax.report._registry import register_table

    @register_table("hessian.md", "Hessians", "Error and time of each Hessian method.")
    def _hessian(run, plots):
        records = run.select("hessian")
        if not records:
            return None  # the run has nothing for this table: no file is written
        return ["One paragraph of explanation.", Table.of(header, rows, "lr")]

The function returns the page's blocks (Markdown prose and :class:`~calcjax.report._page.Table`),
or ``None``; the report writes ``<name>`` from :meth:`Page.markdown` and shows the same
blocks in the run's ``index.html``. Tables appear in registration order, after the headline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from calcjax.report._page import Page

if TYPE_CHECKING:
    from calcjax.report._load import Run

#: What a table's build function takes (the run, the plot files written) and gives.
Build = Callable[["Run", frozenset[str]], "list[Any] | None"]


@dataclass(frozen=True)
class TableDef:
    """One report table.

    Attributes:
      name: its Markdown file in the run folder (``"speed.md"``).
      title: the page's heading.
      explanation: one line saying what the table shows, for the index page.
      build: ``(run, plot file names) -> blocks or None``.
    """

    name: str
    title: str
    explanation: str
    build: Build

    def page(self, run: Run, plots: frozenset[str] = frozenset()) -> Page | None:
        blocks = self.build(run, plots)
        return None if blocks is None else Page(self.title, run.provenance(), blocks)


#: Every table, by file name, in the order the report shows them.
TABLES: dict[str, TableDef] = {}


def register_table(name: str, title: str, explanation: str) -> Callable[[Build], Build]:
    """Register ``build`` as the table written to ``name`` (a decorator; see the module docstring).

    Raises:
      ValueError: ``name`` does not end in ``.md`` or is registered already.
    """
    if not name.endswith(".md") or "/" in name:
        raise ValueError(f"a table's name is a Markdown file name like 'speed.md', got {name!r}")

    def add(build: Build) -> Build:
        if name in TABLES:
            raise ValueError(f"table {name!r} is registered already")
        TABLES[name] = TableDef(name, title, explanation, build)
        return build

    return add
