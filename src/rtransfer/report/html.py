"""report.html: one self-contained file. Images are embedded as base64 data URIs, styles are inline, there is no
JavaScript and no external resource, so it opens offline and can be mailed as it is. Long material is collapsed in
<details> elements, which open on a click without a script."""

import base64
from html import escape

from rtransfer.report.document import Bullets, Code, Details, Figure, Section, Table, Text

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
caption { caption-side: bottom; text-align: left; font-size: 12px; color: #555; padding-top: .3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: .6em; white-space: pre-wrap; word-break: break-word;
      font-size: 12px; max-height: 22em; overflow: auto; }
.label { font-weight: 600; margin: .8em 0 .2em; }
.banner { background: #fff3cd; border: 2px solid #c69500; padding: .7em 1em; font-weight: 600; }
details { margin: 1em 0; border-left: 3px solid #ddd; padding-left: .8em; }
summary { cursor: pointer; font-weight: 600; color: #333; }
"""


def render_html(title: str, sections: list[Section], banner: str = "") -> str:
    """The page; `banner`, when given, is shown above everything else (a smoke test says it is one)."""
    toc = "".join(f'<li><a href="#{escape(s.id)}">{escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(_section(s) for s in sections)
    top = f'<p class="banner" id="banner">{escape(banner)}</p>' if banner else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>{top}<h1>{escape(title)}</h1><nav><ol>{toc}</ol></nav>\n{body}\n</body></html>\n"
    )


def _section(section: Section) -> str:
    blocks = "\n".join(_block(b) for b in section.blocks)
    return f'<section id="{escape(section.id)}"><h2>{escape(section.title)}</h2>\n{blocks}\n</section>'


def _block(block) -> str:
    if isinstance(block, Details):
        inner = "\n".join(_block(b) for b in block.blocks)
        return f"<details><summary>{escape(block.summary)}</summary>\n{inner}\n</details>"
    if isinstance(block, Text):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{escape(h)}</th>" for h in block.header)
        rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in block.rows)
        caption = f"<caption>{escape(block.caption)}</caption>" if block.caption else ""
        attr = f' id="table-{escape(block.name)}"' if block.name else ""
        return f"<table{attr}>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        alt = escape(block.alt or block.caption)
        return (
            f'<figure id="figure-{escape(block.name)}"><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{escape(block.caption)}</figcaption></figure>"
        )
    if isinstance(block, Code):
        label = f'<div class="label">{escape(block.label)}</div>' if block.label else ""
        return f"{label}<pre>{escape(block.text)}</pre>"
    raise TypeError(f"unknown report block {type(block).__name__}")
