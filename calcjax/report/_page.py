"""A report page as data, rendered to Markdown and to HTML from the same blocks.

A table definition (:mod:`calcjax.report._registry`) builds a :class:`Page`: a
title, the run's provenance line and a flat list of blocks — :class:`Table`
(header, rows of display strings, alignment) and Markdown prose (headings,
paragraphs, image links). :meth:`Page.markdown` joins them as GitHub Markdown;
:meth:`Page.html` renders the same blocks as HTML, so the two formats can never
disagree and no table is built twice.

Prose uses a small Markdown subset that both formats read: ``#`` headings,
paragraphs, `` `code` ``, ``**bold**``, ``_italic_`` (whole paragraph),
``[text](url)`` links and ``![alt](src)`` images on lines of their own.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from calcjax._fmt import md_table

#: Marks a timing taken from fewer than :data:`FEW_ROUNDS` rounds: a time, not a median.
FEW_MARK = "†"
#: Fewer rounds than this and a time is marked with :data:`FEW_MARK`.
FEW_ROUNDS = 3
#: The footnote a page gets when one of its cells carries :data:`FEW_MARK`.
FEW_NOTE = (
    f"{FEW_MARK} from fewer than {FEW_ROUNDS} timed rounds: a single measurement or the middle of two, "
    "not a median, and noisier than the rest."
)
#: What a row shows instead of an error when its method is the reference it is graded against.
REFERENCE_CELL = "reference"


@dataclass(frozen=True)
class Table:
    """One table: a header and rows of display strings; ``align`` has one ``l``/``r`` per column."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: str

    @classmethod
    def of(cls, header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> Table:
        header = tuple(str(h) for h in header)
        return cls(header, tuple(tuple(str(c) for c in row) for row in rows), align or "l" * len(header))

    def markdown(self) -> str:
        return md_table(self.header, self.rows, self.align)

    def html(self) -> str:
        cls = lambda i: ' class="num"' if self.align[i : i + 1] == "r" else ""
        head = "".join(f"<th{cls(i)}>{_inline(h)}</th>" for i, h in enumerate(self.header))
        body = "\n".join(
            "<tr>" + "".join(f"<td{cls(i)}>{_inline(c)}</td>" for i, c in enumerate(row)) + "</tr>"
            for row in self.rows
        )
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"

    @property
    def marked(self) -> bool:
        """Some cell carries :data:`FEW_MARK`."""
        return any(FEW_MARK in c for row in self.rows for c in row)


Block = str | Table


def flatten(blocks: Iterable[Any]) -> list[Block]:
    """Blocks in order, nested lists opened and empty strings and ``None`` dropped."""
    out: list[Block] = []
    for b in blocks:
        if isinstance(b, list | tuple):
            out += flatten(b)
        elif isinstance(b, Table) or (isinstance(b, str) and b.strip()):
            out.append(b.strip("\n") if isinstance(b, str) else b)
    return out


@dataclass
class Page:
    """A page of tables: title, provenance line (Markdown), blocks."""

    title: str
    provenance: str
    blocks: list[Block] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.blocks = flatten(self.blocks)
        if any(isinstance(b, Table) and b.marked for b in self.blocks) and FEW_NOTE not in self.blocks:
            self.blocks.append(FEW_NOTE)

    @property
    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    def body_markdown(self) -> str:
        return "\n\n".join(b.markdown() if isinstance(b, Table) else b for b in self.blocks)

    def markdown(self) -> str:
        return f"{self.provenance}\n\n# {self.title}\n\n{self.body_markdown()}\n"

    def html(self, *, level: int = 1, images: bool = True, image_src: Any = None) -> str:
        """The blocks as HTML; headings shifted so the title is ``<h{level}>``.

        ``images=False`` leaves image lines out (the run page shows every plot at its end);
        ``image_src`` maps an image path to the ``src`` to use (a data URI).
        """
        parts = [f"<h{level}>{_inline(self.title)}</h{level}>"]
        for b in self.blocks:
            parts.append(b.html() if isinstance(b, Table) else prose_html(b, level, images, image_src))
        return "\n".join(p for p in parts if p)


_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")


def prose_html(text: str, level: int = 1, images: bool = True, image_src: Any = None) -> str:
    """Markdown prose (the subset in the module docstring) as HTML."""
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = para.strip().splitlines()
        if all(_IMAGE.match(x.strip()) for x in lines):
            if images:
                for x in lines:
                    alt, src = _IMAGE.match(x.strip()).groups()  # type: ignore[union-attr]
                    src = image_src(src) if image_src else src
                    out.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}"></figure>')
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", para.strip())
        if m and len(lines) == 1:
            h = min(6, len(m.group(1)) + level - 1)
            out.append(f"<h{h}>{_inline(m.group(2))}</h{h}>")
            continue
        out.append(f"<p>{_inline(' '.join(x.strip() for x in lines))}</p>")
    return "\n".join(out)


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _inline(text: str) -> str:
    """Inline Markdown (links, code, bold, ``*italics*``, whole-line ``_italics_``) as escaped HTML."""
    text = str(text)
    out, pos = [], 0
    for m in _LINK.finditer(text):
        out.append(_code_bold(text[pos : m.start()]))
        out.append(f'<a href="{html.escape(m.group(2))}">{_code_bold(m.group(1))}</a>')
        pos = m.end()
    out.append(_code_bold(text[pos:]))
    joined = "".join(out)
    m = re.fullmatch(r"_(.+)_", joined, flags=re.S)
    return f"<em>{m.group(1)}</em>" if m else joined


#: ``*text*`` as Markdown writes emphasis: not ``2 * n`` (spaces inside) nor ``a*b*c`` (inside a word).
_ITALIC = re.compile(r"(?<![\w*])\*([^*\s](?:[^*]*[^*\s])?)\*(?![\w*])")


def _code_bold(text: str) -> str:
    out = []
    for piece in re.split(r"(`[^`]*`)", text):
        if piece.startswith("`") and piece.endswith("`") and len(piece) >= 2:
            out.append(f"<code>{html.escape(piece[1:-1])}</code>")
        else:
            s = html.escape(piece, quote=False).replace("\\|", "|")
            s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
            out.append(_ITALIC.sub(r"<em>\1</em>", s))
    return "".join(out)
