"""The line under a title: when, from where and by whom.

Chinese portals print ``2020-06-01 13:58  来源：刺猬公社  作者：张三`` next to
the headline instead of marking it up. Such a line is read only where a
byline stands: the lines right after the page's ``<h1>`` and the article's
first lines, and only if the line is short and no sentence. Running text
further down mentions dates and sources too (``DATE(1954;7;20)``, 数据库来源：…),
and they are not the page's.

A text date must also be plausible: from 1990 to tomorrow (help pages
quote 1899-12-30 and 1900-01-01 as examples; nothing crawled was published
before the web).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

from indexer.layout import render_paragraphs
from indexer.pagemeta import plausible

#: Longest line read as a byline, in characters.
MAX_BYLINE_CHARS = 100
#: Longest source or author name taken from a byline.
MAX_NAME_CHARS = 30
#: Lines after the ``<h1>``, and first lines of the article, looked at.
LINES_AFTER_TITLE = 6
FIRST_LINES = 5
#: Earliest year a date printed in the text is believed.
EARLIEST_TEXT_YEAR = 1990

_SEP = r"[|｜丨:：]"
_END = r"(?=$|[\s|｜丨/，,;；])"
_VALUE = rf"\s*{_SEP}\s*([^\s|｜丨:：，,。；;！？!?]{{1,{MAX_NAME_CHARS}}}){_END}"
#: A field name counts at the start of the line or after a space or bar
#: (``数据库来源：`` is a sentence about a database).
SOURCE_RE = re.compile(rf"(?:^|(?<=[\s|｜丨]))(?:来源|來源|出处|出處){_VALUE}")
AUTHOR_RE = re.compile(rf"(?:^|(?<=[\s|｜丨]))(?:作者|記者|记者){_VALUE}")
DATE_RES = (
    re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"),
    re.compile(r"(?<!\d)(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日(?:\s*(\d{1,2})\s*[:：时時]\s*(\d{2}))?"),
)
_SENTENCE_RE = re.compile(r"[。！？!?]|[，,].*[，,]")


@dataclass
class Byline:
    published: dt.date | dt.datetime | None = None
    source: str | None = None
    author: str | None = None

    def merge(self, other: Byline) -> Byline:
        """This byline, completed from another."""
        return Byline(self.published or other.published, self.source or other.source, self.author or other.author)


def is_byline(line: str) -> bool:
    """Short and no sentence: a line that can hold a page's metadata."""
    return len(line) <= MAX_BYLINE_CHARS and not _SENTENCE_RE.search(line)


def read_byline(lines: list[str]) -> Byline:
    """The first date, source and author found in the byline lines at the
    start of ``lines``: the text has begun at the first line that is not
    one (a date in a command's output further down is not the page's)."""
    found = Byline()
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if not is_byline(line):
            break
        if found.published is None:
            found.published = date_in(line)
        if found.source is None:
            m = SOURCE_RE.search(line)
            found.source = m.group(1) if m else None
        if found.author is None:
            m = AUTHOR_RE.search(line)
            found.author = m.group(1) if m else None
    return found


def date_in(text: str) -> dt.date | dt.datetime | None:
    """The first plausible date written in ``text``."""
    for pattern in DATE_RES:
        for m in pattern.finditer(text):
            y, mo, d = int(m[1]), int(m[2]), int(m[3])
            try:
                value = dt.datetime(y, mo, d, int(m[4]), int(m[5])) if m[4] is not None else dt.date(y, mo, d)
            except ValueError:
                continue
            if plausible(value, EARLIEST_TEXT_YEAR):
                return value
    return None


def lines_near_title(tree: LexborHTMLParser) -> tuple[str | None, list[str]]:
    """The page's first ``<h1>`` and the lines laid out right after it: its
    following siblings, or its parent's when it stands alone in a heading
    block (call before any part of the tree is removed)."""
    h1 = tree.css_first("h1")
    if h1 is None:
        return None, []
    own = [line for p in render_paragraphs(h1) for line in p.split("\n")]
    if not own:
        return None, []
    lines: list[str] = []
    node = h1
    for _level in range(2):
        sibling = node.next
        while sibling is not None and len(lines) < LINES_AFTER_TITLE:
            if sibling.tag == "-text":
                lines.extend(" ".join((sibling.text_content or "").split()).split("\n"))
            elif sibling.tag not in ("-comment", "script", "style"):
                lines.extend(line for p in render_paragraphs(sibling) for line in p.split("\n"))
            sibling = sibling.next
        lines = [line for line in lines if line.strip()]
        if lines or node.parent is None:
            break
        node = node.parent
    return " ".join(own), lines[:LINES_AFTER_TITLE]


def first_lines(body: str, count: int = FIRST_LINES) -> list[str]:
    return [line for line in body.split("\n") if line.strip()][:count]
