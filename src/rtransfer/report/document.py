"""A report as a list of sections of plain blocks, rendered the same way to HTML and Markdown (html.py,
markdown.py): every format shows the same text, tables and figures. A Details block holds long material
collapsed under a one-line summary (HTML's <details>, no JavaScript; report.md writes the same element)."""

from dataclasses import dataclass, field


@dataclass
class Text:
    text: str  # one paragraph of plain text (escaped by each renderer)


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    name: str  # file stem under tables/ (CSV and LaTeX); "" for a table shown only in the report
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str  # file stem under figures/
    png: bytes
    caption: str  # what it shows and how its uncertainty is drawn (or why there is none)
    alt: str = ""
    data: Table | None = None  # the numbers it plots, written to tables/NAME.csv (not shown in the report)


@dataclass
class Code:
    text: str  # verbatim: prompts, answers, JSON
    label: str = ""


@dataclass
class Details:
    summary: str  # one line, shown while the blocks are collapsed
    blocks: list["Block"] = field(default_factory=list)


Block = Text | Bullets | Table | Figure | Code | Details


def flat(blocks: list[Block]) -> list[Block]:
    """The blocks with every Details opened in place."""
    return [b for block in blocks for b in (flat(block.blocks) if isinstance(block, Details) else [block])]


@dataclass
class Section:
    id: str  # stable anchor: tests and links find sections by it
    title: str
    blocks: list[Block] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [b for b in flat(self.blocks) if isinstance(b, Table)]

    def figures(self) -> list[Figure]:
        return [b for b in flat(self.blocks) if isinstance(b, Figure)]
