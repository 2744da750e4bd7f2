"""An extracted body without what the page printed around the article.

What is left after extraction on small portal pages, and what it does to
results: the navigation line (``首页 | 物流频道 | 关于我们``) ends up in
snippets; the title printed again as the first line makes every snippet
start with the title shown above it; the byline (date, 来源, 作者, views)
is metadata, not text. Tables that the extractor wrote as markdown
(``| a | b |``, ``|---|``) become rows of tab-separated cells, as the
site rules lay them out. Paragraphs stay paragraphs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from indexer.byline import AUTHOR_RE, SOURCE_RE, is_byline
from indexer.layout import CELL_SEPARATOR

_ROW_RE = re.compile(r"^\s*\|.*\|\s*$")
_RULE_RE = re.compile(r"^\s*\|?(?:\s*:?-{3,}:?\s*\|)+\s*(?::?-{3,}:?\s*)?$")
_NAV_SPLIT_RE = re.compile(r"\s*[|｜丨]\s*|\s+[·•]\s+")
_CRUMB_RE = re.compile(r"^(?:首页|主页|当前位置\s*[:：]?\s*首页|您的位置\s*[:：]?\s*首页)\s*[>»/＞]")
_CJK_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")
_PUNCT_RE = re.compile(r"[。，！？；,.!?;:：]")
_COUNTS_RE = re.compile(r"[\d\s\-/:：年月日时分阅读浏览次量评论点击|｜]+")
#: Longest item of a navigation line.
MAX_NAV_ITEM = 12


def paragraphs_without_pipes(lines: Iterable[str]) -> list[str]:
    """Lines of extracted text as paragraphs: each line one paragraph,
    except that a run of markdown table rows becomes one paragraph of
    tab-separated rows (the ``|---|`` rule under a header is dropped)."""
    out: list[str] = []
    rows: list[str] = []
    for line in lines:
        line = line.strip()
        if _ROW_RE.match(line):
            if not _RULE_RE.match(line):
                cells = [cell.strip() for cell in line.strip()[1:-1].split("|")]
                row = CELL_SEPARATOR.join(cells).strip()
                if row:
                    rows.append(row)
            continue
        if rows:
            out.append("\n".join(rows))
            rows = []
        if line:
            out.append(line)
    if rows:
        out.append("\n".join(rows))
    return out


def is_navigation(line: str) -> bool:
    """A run of three or more short Chinese link texts between bars or dots,
    or a breadcrumb from 首页: a site's menu, not the article."""
    line = line.strip()
    if _CRUMB_RE.match(line) and len(line) <= 80:
        return True
    if CELL_SEPARATOR in line:
        return False  # a table row
    items = [item for item in _NAV_SPLIT_RE.split(line) if item]
    if len(items) < 3:
        return False
    if any(len(item) > MAX_NAV_ITEM or _PUNCT_RE.search(item) for item in items):
        return False
    chinese = sum(bool(_CJK_RE.search(item)) for item in items)
    return chinese * 3 >= len(items) * 2


def _is_header_line(line: str) -> bool:
    """A byline that only repeats the metadata: source, author, a date or
    a view count."""
    line = line.strip()
    return is_byline(line) and bool(SOURCE_RE.search(line) or AUTHOR_RE.search(line) or _COUNTS_RE.fullmatch(line))


def clean_body(body: str, titles: Iterable[str | None] = ()) -> str:
    """The body without its leading byline lines, a first line repeating
    the title, and navigation lines."""
    titled = {" ".join(t.split()) for t in titles if t and t.strip()}
    paragraphs: list[str] = []
    for paragraph in body.split("\n\n"):
        lines = [line for line in paragraph.split("\n") if not is_navigation(line)]
        if lines:
            paragraphs.append("\n".join(lines))
    while paragraphs:
        lines = paragraphs[0].split("\n")
        if " ".join(lines[0].split()) in titled or _is_header_line(lines[0]):
            lines.pop(0)
            if lines:
                paragraphs[0] = "\n".join(lines)
            else:
                paragraphs.pop(0)
            continue
        break
    return "\n\n".join(paragraphs)
