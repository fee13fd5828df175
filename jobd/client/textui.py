"""What the CLI prints, built once and shown two ways: plain lines or rich tables.

:mod:`jobd.client.render` builds its tables and lines from the small classes here
(:class:`Table`, :class:`Text`, :class:`Group`: the subset of rich's API it
uses), and :func:`emit` shows them:

* stdout not a terminal (``jobd list | grep``, scripts, ``watch`` into a
  file): whole lines, columns aligned, never cut or wrapped, as ``ps`` and
  ``kubectl`` print, and without importing rich at all (start-up time);
* a terminal: converted to rich renderables (boxes, colours, fitted to the
  width), rich imported only then.
"""

from __future__ import annotations

import sys

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

#: Spaces between plain columns (kubectl uses three).
PLAIN_GAP = "   "


class Text:
    """Styled text: runs of ``(text, style)``; ``plain`` is what a pipe gets."""

    __slots__ = ("runs",)

    def __init__(self, text: str = "", style: str = "") -> None:
        self.runs: list[tuple[str, str]] = [(text, style)] if text else []

    def append(self, text: str, style: str = "") -> Text:
        if text:
            self.runs.append((text, style))
        return self

    def append_text(self, other: Text) -> Text:
        self.runs.extend(other.runs)
        return self

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.runs)

    def __str__(self) -> str:
        return self.plain


class Column:
    __slots__ = ("header", "justify", "style")

    def __init__(self, header: str, justify: str = "left", style: str = "") -> None:
        self.header, self.justify, self.style = header, justify, style


class Table:
    """Columns and rows of ``str`` or :class:`Text` cells; ``grid`` for key/value lists."""

    def __init__(
        self,
        title: str | None = None,
        *,
        expand: bool = False,
        title_justify: str = "center",
        show_header: bool = True,
        grid: bool = False,
        padding: tuple[int, int] = (0, 1),
    ) -> None:
        self.title, self.expand, self.title_justify = title, expand, title_justify
        self.show_header, self.is_grid, self.padding = show_header, grid, padding
        self.caption: str | None = None
        self.columns: list[Column] = []
        self.rows: list[list[str | Text]] = []

    @classmethod
    def grid(cls, padding: tuple[int, int] = (0, 1)) -> Table:
        return cls(show_header=False, grid=True, padding=padding)

    def add_column(self, header: str = "", justify: str = "left", style: str = "") -> None:
        self.columns.append(Column(header, justify, style))

    def add_row(self, *cells: str | Text) -> None:
        self.rows.append(list(cells))


class Group:
    """Parts shown one after the other."""

    def __init__(self, *parts: Renderable) -> None:
        self.parts: list[Renderable] = list(parts)


Renderable = Text | Table | Group | str


# --------------------------------------------------------------------------- plain


def plain_lines(item: Renderable) -> list[str]:
    """Whole lines: nothing cut, nothing wrapped, no trailing spaces."""
    if isinstance(item, Group):
        lines: list[str] = []
        for part in item.parts:
            if lines and isinstance(part, Table):
                lines.append("")  # a blank line before each table of a group
            lines += plain_lines(part)
        return lines
    if isinstance(item, Table):
        return _plain_table(item)
    return str(item).splitlines() or [""]


def _cell(value: str | Text) -> str:
    # A cell with several lines (a lock's waiters) stays on its row.
    return ", ".join(str(value).splitlines())


def _plain_table(table: Table) -> list[str]:
    grid: list[list[str]] = [[_cell(cell) for cell in row] for row in table.rows]
    if table.show_header:
        grid.insert(0, [column.header for column in table.columns])
    count = max((len(row) for row in grid), default=0)
    width = [max(len(row[i]) for row in grid if i < len(row)) for i in range(count)]
    gap = " " * table.padding[1] * 2 if table.is_grid else PLAIN_GAP
    lines = [f"{table.title}:"] if table.title else []
    for row in grid:
        cells = []
        for i, text in enumerate(row):
            right = i < len(table.columns) and table.columns[i].justify == "right"
            cells.append(text.rjust(width[i]) if right else text.ljust(width[i]))
        lines.append(gap.join(cells).rstrip())
    if table.caption:
        lines.append(table.caption)
    return lines


# --------------------------------------------------------------------------- rich


def to_rich(item: Renderable) -> Any:
    """The rich renderable for ``item`` (imports rich)."""
    from rich.console import Group as RichGroup
    from rich.table import Table as RichTable

    if isinstance(item, Group):
        return RichGroup(*(to_rich(part) for part in item.parts))
    if isinstance(item, Text):
        return _rich_text(item)
    if not isinstance(item, Table):
        return item
    if item.is_grid:
        out = RichTable.grid(padding=item.padding)
    else:
        out = RichTable(
            title=item.title,
            expand=item.expand,
            title_justify=item.title_justify,  # type: ignore[arg-type]
            show_header=item.show_header,
            caption=item.caption,
        )
    for column in item.columns:
        out.add_column(column.header, justify=column.justify, style=column.style)  # type: ignore[arg-type]
    for row in item.rows:
        out.add_row(*(_rich_text(c) if isinstance(c, Text) else c for c in row))
    return out


def _rich_text(text: Text) -> Any:
    from rich.text import Text as RichText

    out = RichText()
    for run, style in text.runs:
        out.append(run, style=style or None)
    return out


# --------------------------------------------------------------------------- output


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def emit(item: Renderable, *, stderr: bool = False) -> None:
    """Print ``item``: rich on a terminal, whole plain lines otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    if is_terminal(stream):
        rich_console(stderr=stderr).print(to_rich(item))
    else:
        for line in plain_lines(item):
            print(line, file=stream)
        stream.flush()


def rich_console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)
