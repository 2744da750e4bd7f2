"""An element's text laid out as a browser shows it.

Blocks become paragraphs (a blank line between), ``<br>`` a line break,
``<pre>`` is kept verbatim, image alt texts are left out, and a line break
in the source between two Chinese characters disappears (a browser shows
none there). A data table becomes one paragraph with a line per row and
its cells separated by tabs, so a row reads as a row (in the article page,
in snippets) and no markdown pipes appear; a layout table (at most one
non-empty cell a row: a note box, an icon beside its text) keeps its
paragraphs.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborNode

_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody thead tfoot tr td th ul".split()
)
_SKIP_TAGS = frozenset("script style noscript template svg head iframe object canvas select textarea button".split())
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
_CJK_BREAK_RE = re.compile(f"(?<=[{_CJK}])[ \\t]*\\n\\s*(?=[{_CJK}])")
_SPACE_RE = re.compile(r"[ \t\r\f\v\u00a0]+")
#: Between the cells of a table row.
CELL_SEPARATOR = "\t"


def render_text(node: LexborNode) -> str:
    """The text of an element as a browser lays it out (see the module)."""
    return "\n\n".join(dedupe_paragraphs(render_paragraphs(node)))


def render_paragraphs(node: LexborNode) -> list[str]:
    """The element's paragraphs, in order, before duplicates are dropped."""
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        text = "".join(current)
        current.clear()
        text = _CJK_BREAK_RE.sub("", text)
        lines = [_SPACE_RE.sub(" ", line.replace("\n", " ")).strip() for line in text.split("\x00")]
        text = "\n".join(line for line in lines if line)
        if text:
            paragraphs.append(text)

    def walk(n: LexborNode, pre: bool) -> None:
        for child in n.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                text = child.text_content or ""
                current.append(text.replace("\n", "\x00") if pre else text)
            elif tag in _SKIP_TAGS or tag == "-comment":
                continue
            elif tag == "br":
                current.append("\x00")
            elif tag == "pre" and not pre:
                flush()
                text = (child.text(deep=True) or "").strip("\n")
                if text.strip():
                    paragraphs.append(text)
            elif tag == "table" and not pre:
                flush()
                paragraphs.extend(_table(child))
            elif tag in _BLOCK_TAGS:
                flush()
                walk(child, pre)
                flush()
            else:
                walk(child, pre)

    walk(node, node.tag == "pre")
    flush()
    return paragraphs


def _rows(table: LexborNode) -> list[LexborNode]:
    """The table's own rows (not those of tables nested in its cells)."""
    rows = []
    for child in table.iter():
        if child.tag == "tr":
            rows.append(child)
        elif child.tag in ("thead", "tbody", "tfoot"):
            rows.extend(c for c in child.iter() if c.tag == "tr")
    return rows


def _table(table: LexborNode) -> list[str]:
    """A table's paragraphs: runs of data rows as one tab-separated block,
    layout rows as the paragraphs of their one cell."""
    out: list[str] = []
    block: list[str] = []
    caption = table.css_first("caption")
    if caption is not None:
        out.extend(render_paragraphs(caption))
    for row in _rows(table):
        cells = [render_paragraphs(c) for c in row.iter() if c.tag in ("td", "th")]
        filled = [c for c in cells if c]
        if len(filled) >= 2:
            block.append(CELL_SEPARATOR.join(" ".join(p.replace("\n", " ") for p in c) for c in cells).strip())
            continue
        if block:
            out.append("\n".join(block))
            block = []
        for paragraphs in filled:
            out.extend(paragraphs)
    if block:
        out.append("\n".join(block))
    return out


def dedupe_paragraphs(paragraphs: list[str], min_chars: int = 12) -> list[str]:
    """Drop a paragraph already seen (portals that print the body twice)."""
    seen: set[str] = set()
    out = []
    for p in paragraphs:
        key = re.sub(r"\s+", "", p)
        if len(key) >= min_chars:
            if key in seen:
                continue
            seen.add(key)
        out.append(p)
    return out
