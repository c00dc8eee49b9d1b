"""report.md: the same sections as report.html, with figures as PNG files in figures/ referenced relatively."""

import re
from html import escape

from rtransfer.report.document import Bullets, Code, Details, Figure, Section, Table, Text
from rtransfer.report.tables import render


def render_markdown(title: str, sections: list[Section], banner: str = "", figure_dir: str = "figures") -> str:
    """The document; `banner`, when given, is a quoted warning above the title (a smoke test says it is one)."""
    lines = [f"> **{banner}**", ""] if banner else []
    lines += [f"# {title}", ""]
    lines += [f"{i}. [{s.title}](#{s.id})" for i, s in enumerate(sections, start=1)]
    for s in sections:
        lines += ["", f'<a id="{s.id}"></a>', "", f"## {s.title}", ""]
        for block in s.blocks:
            lines += [_block(block, figure_dir), ""]
    return "\n".join(lines).rstrip() + "\n"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _block(block, figure_dir: str) -> str:
    if isinstance(block, Details):  # the HTML element, which Markdown viewers render collapsed too
        inner = "\n\n".join(_block(b, figure_dir) for b in block.blocks)
        return f"<details><summary>{escape(block.summary)}</summary>\n\n{inner}\n\n</details>"
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        table = render([_cell(h) for h in block.header], [[_cell(c) for c in r] for r in block.rows], "markdown")
        return table + (f"\n*{block.caption}*" if block.caption else "")
    if isinstance(block, Figure):
        return f"![{block.alt or block.name}]({figure_dir}/{block.name}.png)\n\n*{block.caption}*"
    if isinstance(block, Code):
        # A fence longer than any run of backticks in the text, so answers cannot close it.
        fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", block.text)), default=0))
        label = f"**{block.label}**\n\n" if block.label else ""
        return f"{label}{fence}text\n{block.text}\n{fence}"
    raise TypeError(f"unknown report block {type(block).__name__}")
