"""A report as a list of sections of plain blocks, rendered the same way to HTML and Markdown (html.py,
markdown.py): every format shows the same text, tables and figures."""

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


@dataclass
class Code:
    text: str  # verbatim: prompts, answers, JSON
    label: str = ""


Block = Text | Bullets | Table | Figure | Code


@dataclass
class Section:
    id: str  # stable anchor: tests and links find sections by it
    title: str
    blocks: list[Block] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]
