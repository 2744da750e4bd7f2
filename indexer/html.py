"""Crawled HTML pages into articles: decoding, main-content extraction and
metadata.

Decoding honours a byte-order mark, then the page's own ``<meta charset>`` /
``http-equiv`` declaration, then detection (charset-normalizer); GBK and
GB2312 are read as GB18030, their superset, so no character is lost.

Extraction uses trafilatura (maintained, measured best on real pages) unless
a site rule names the content element; then the selected element, minus the
rule's drop selectors, is laid out as a browser would (``indexer.layout``).
Either way a paragraph printed twice is kept once, and the body is cleaned
of navigation lines, a repeated title and the byline (``indexer.bodyclean``).

Metadata comes from structure first, read from the whole page before a
site rule narrows it (``indexer.pagemeta``: meta tags, JSON-LD, microdata,
``<time>``); only then from the byline Chinese portals print next to the
title (``indexer.byline``: ``来源：…``, ``作者：…``, ``2020-06-01 13:58``).
The title is chosen by ``indexer.titles``; what the site's other pages
teach about its title suffix and name is applied when the crawl is
written (``indexer.writer``).
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from indexer.bodyclean import clean_body, paragraphs_without_pipes
from indexer.byline import first_lines, lines_near_title, read_byline
from indexer.layout import dedupe_paragraphs, render_text
from indexer.pagemeta import read_head
from indexer.siterules import SiteRule
from indexer.titles import choose_title

#: Pages larger than this are not parsed (a crawler fault, not an article).
MAX_HTML_BYTES = 20 * 1024 * 1024
#: A body shorter than this (in word characters) is not an article.
MIN_BODY_CHARS = 1

_BOM = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-]+)""", re.I)
_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "gb_2312-80": "gb18030", "cp936": "gb18030"}


#: Deepest element nesting accepted (the HTML parser slows down
#: quadratically on pathological nesting).
MAX_DEPTH = 1_000
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)")
# Elements that never nest or are closed implicitly: not counted as depth.
_FLAT_TAGS = frozenset(
    "area base br col embed hr img input link meta param source track wbr p li dt dd tr td th option".split()
)


def nesting_depth(html: str, stop_at: int = MAX_DEPTH) -> int:
    """An estimate of the deepest element nesting, from the tags alone."""
    depth = deepest = 0
    for m in _TAG_RE.finditer(html):
        if m.group(2).lower() in _FLAT_TAGS:
            continue
        if m.group(1):
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_at:
                    break
    return deepest


class HtmlError(ValueError):
    """A page that cannot be turned into an article (with the reason)."""


@dataclass
class Page:
    """What extraction made of one page."""

    title: str | None = None
    body: str = ""
    url: str | None = None
    published: dt.date | dt.datetime | None = None
    author: str | None = None
    source: str | None = None
    tags: list[str] = field(default_factory=list)
    encoding: str | None = None
    extractor: str = "trafilatura"
    #: What the title was chosen from, kept so that what the site's other
    #: pages teach can choose again (``indexer.titles.choose_title``).
    raw_title: str | None = None
    h1: str | None = None
    og_title: str | None = None
    #: The name the page declares for its site (``og:site_name``).
    site_name: str | None = None

    def record(self) -> dict[str, Any]:
        """As an input record (the fields ArticleSchema reads)."""
        return {
            "url": self.url,
            "title": self.title,
            "body": self.body,
            "tags": self.tags,
            "published": self.published.isoformat() if self.published else None,
            "source": self.source,
            "author": self.author,
        }


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def decode(raw: bytes, declared: str | None = None) -> tuple[str, str]:
    """The page's text and the encoding it was read as."""
    for bom, name in _BOM:
        if raw.startswith(bom):
            return raw.decode(name, errors="replace").lstrip("\ufeff"), name.replace("-sig", "")
    candidates = []
    if declared:
        candidates.append(declared)
    m = _META_CHARSET_RE.search(raw[:8192])
    if m:
        meta = m.group(1).decode("ascii", "ignore")
        # A page that can carry an ASCII <meta> is not in UTF-16 (without a
        # byte-order mark); browsers read such a declaration as UTF-8.
        candidates.append("utf-8" if meta.lower().replace("_", "-").startswith(("utf-16", "utf-32")) else meta)
    for name in candidates:
        name = _ALIASES.get(name.lower(), name.lower())
        try:
            if not _web_encoding(name):
                continue
            return raw.decode(name), name
        except (LookupError, UnicodeError):
            continue
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(raw[:200_000]).best()
    name = _ALIASES.get((best.encoding if best else "gb18030").lower(), best.encoding if best else "gb18030")
    return raw.decode(name, errors="replace"), name


#: Codecs Python has that no web page is in: a page declaring one of them
#: (``charset=undefined``, ``punycode``) is decoded as if it declared none.
#: UTF-7 is refused as browsers refuse it (it hides markup).
_NOT_PAGE_ENCODINGS = frozenset({"undefined", "punycode", "idna", "unicode_escape", "raw_unicode_escape", "utf_7"})


def _web_encoding(name: str) -> bool:
    info = codecs.lookup(name)
    return info._is_text_encoding and info.name.replace("-", "_") not in _NOT_PAGE_ENCODINGS


# --------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------


def extract(
    html: str, url: str | None = None, rules: list[SiteRule] | None = None, location: str | None = None
) -> Page:
    """An article from a page's HTML; raises HtmlError when there is none.

    ``url`` is where the crawler found the page; ``location`` its file path
    (site rules may match either, or the page's canonical URL).
    """
    if not html or not html.strip():
        raise HtmlError("empty page")
    if len(html) > MAX_HTML_BYTES:
        raise HtmlError(f"page larger than {MAX_HTML_BYTES // 1_048_576} MB")
    if nesting_depth(html) > MAX_DEPTH:
        raise HtmlError(f"markup nested more than {MAX_DEPTH} levels deep")
    try:
        return _extract(html, url, rules, location)
    except RecursionError:
        raise HtmlError("markup nested too deeply to read") from None


def _extract(html: str, url: str | None, rules: list[SiteRule] | None, location: str | None) -> Page:
    tree = LexborHTMLParser(html)
    # Everything read from the whole page comes before a rule cuts it.
    head = read_head(tree)
    h1, near_title = lines_near_title(tree)
    title_node = tree.css_first("title")
    page_url = head.canonical or url
    rule = next((r for r in rules or () if r.matches(page_url, url, location)), None)
    page = Page(url=page_url, tags=head.tags, og_title=head.og_title, site_name=head.site_name, h1=h1)
    page.raw_title = (" ".join(title_node.text().split()) or None) if title_node is not None else None
    if rule is not None and rule.content:
        node = tree.css_first(rule.content)
        if node is None:
            raise HtmlError(f"site rule {rule.name}: no element matches {rule.content!r}")
        for selector in rule.drop:
            for junk in node.css(selector):
                junk.decompose()
        page.body = render_text(node)
        page.extractor = f"rule:{rule.name}"
    else:
        page.body = _trafilatura_body(html, page_url)
        if not page.body and _longest_text_bytes(html) >= LXML_TEXT_LIMIT:
            # lxml (under trafilatura) drops a text node this long; the page
            # is not empty. Lay out its main element as a browser would.
            node = tree.css_first("article") or tree.css_first("main") or tree.body
            page.body = render_text(node) if node is not None else ""
            page.extractor = "layout"
    page.title = choose_title(page.raw_title, h1, head.og_title, head.site_name)
    byline = read_byline(near_title).merge(read_byline(first_lines(page.body)))
    page.published = head.published or byline.published
    page.author = head.author or byline.author
    page.source = (rule.source if rule is not None else None) or head.site_name or head.publisher or byline.source
    if page.body:
        page.body = clean_body(page.body, (page.title, page.raw_title))
    if not page.title and not page.body.strip():
        raise HtmlError("no title and no main text found")
    return page


#: Distinct text segments remembered while extracting one page.
PAGE_SEGMENTS = 4096
#: The longest text node libxml2 parses without its "huge" option, in bytes.
LXML_TEXT_LIMIT = 10_000_000


def _longest_text_bytes(html: str) -> int:
    longest = max(html.split("<"), key=len, default="")
    return len(longest.encode("utf-8"))


def _trafilatura_body(html: str, url: str | None) -> str:
    import trafilatura
    from trafilatura.deduplication import LRUCache

    try:
        text = trafilatura.extract(
            html,
            url=url,
            output_format="txt",
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            # A segment repeated within the page is dropped; trafilatura's
            # own cache would be shared by every page of the process, and
            # drop from later pages (or a page read twice) the paragraphs
            # an earlier one had: help pages share many.
            deduplicate=LRUCache(maxsize=PAGE_SEGMENTS),
            favor_recall=True,
        )
    except RecursionError:
        raise
    except Exception as err:  # noqa: BLE001 - a page lxml cannot take is one bad record
        raise HtmlError(f"extraction failed: {type(err).__name__}") from None
    if not text:
        return ""
    return "\n\n".join(dedupe_paragraphs(paragraphs_without_pipes(text.split("\n"))))
