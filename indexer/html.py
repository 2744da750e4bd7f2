"""Crawled HTML pages into articles: decoding, main-content extraction and
metadata.

Decoding honours a byte-order mark, then the page's own ``<meta charset>`` /
``http-equiv`` declaration, then detection (charset-normalizer); GBK and
GB2312 are read as GB18030, their superset, so no character is lost.

Extraction uses trafilatura (maintained, measured best on real pages) unless
a site rule names the content element; then the selected element, minus the
rule's drop selectors, is rendered as a browser would lay it out (blocks as
paragraphs, ``<pre>`` kept, a line break between two Chinese characters
dropped). Either way a paragraph printed twice is kept once.

Metadata comes from the page's meta tags and JSON-LD (via trafilatura) and
from the Chinese patterns news portals print near the title: ``来源：…``,
``作者：…``, ``2020-06-01 13:58``, ``2020年6月1日``.
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from indexer.documents import parse_published
from indexer.siterules import SiteRule

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

_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody thead tfoot tr td th ul".split()
)
_SKIP_TAGS = frozenset("script style noscript template svg head iframe object canvas select textarea button".split())
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
_CJK_BREAK_RE = re.compile(f"(?<=[{_CJK}])[ \\t]*\\n\\s*(?=[{_CJK}])")
_SPACE_RE = re.compile(r"[ \t\r\f\v\u00a0]+")

_SOURCE_RE = re.compile(r"(?:来源|來源|出处|出處)\s*[|｜:：]\s*([^\s|｜，,。]{1,40})")
_AUTHOR_RE = re.compile(r"(?:作者|文|记者|記者|编辑|編輯)\s*[|｜:：]\s*([^\s|｜，,。]{1,30})")
_DATE_RES = (
    re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"),
    re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日(?:\s*(\d{1,2})\s*[:：时時]\s*(\d{2}))?"),
)
_TITLE_SEPARATORS = re.compile(r"\s+[-|_–—]\s+|\s*[|_｜]\s*")


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
# Rendering a content element
# --------------------------------------------------------------------------


def render_text(node: LexborNode) -> str:
    """The text of an element as a browser lays it out: blocks become
    paragraphs (blank line between), ``<br>`` a line break, ``<pre>`` kept
    verbatim, image alt texts left out."""
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
            elif tag in _BLOCK_TAGS:
                flush()
                walk(child, pre)
                flush()
            else:
                walk(child, pre)

    walk(node, node.tag == "pre")
    flush()
    return "\n\n".join(dedupe_paragraphs(paragraphs))


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
    canonical = _canonical(tree)
    page_url = canonical or url
    rule = next((r for r in rules or () if r.matches(page_url, url, location)), None)
    page = Page(url=page_url)
    meta: dict[str, Any] = {}
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
        meta = _trafilatura_metadata(html, page_url)
        if not page.body and _longest_text_bytes(html) >= LXML_TEXT_LIMIT:
            # lxml (under trafilatura) drops a text node this long; the page
            # is not empty. Lay out its main element as a browser would.
            node = tree.css_first("article") or tree.css_first("main") or tree.body
            page.body = render_text(node) if node is not None else ""
            page.extractor = "layout"
    page.title = _title(tree, meta)
    page.published = _published(tree, meta, page.body)
    page.author = meta.get("author") or _pattern(_AUTHOR_RE, tree, page.body)
    page.source = _pattern(_SOURCE_RE, tree, page.body) or meta.get("sitename")
    page.tags = _tags(tree, meta)
    if page.body:
        page.body = _strip_header_lines(page.body, page)
    if not page.title and not page.body.strip():
        raise HtmlError("no title and no main text found")
    return page


#: The longest text node libxml2 parses without its "huge" option, in bytes.
LXML_TEXT_LIMIT = 10_000_000


def _longest_text_bytes(html: str) -> int:
    longest = max(html.split("<"), key=len, default="")
    return len(longest.encode("utf-8"))


def _trafilatura_body(html: str, url: str | None) -> str:
    import trafilatura

    try:
        text = trafilatura.extract(
            html,
            url=url,
            output_format="txt",
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            deduplicate=True,
            favor_recall=True,
        )
    except RecursionError:
        raise
    except Exception as err:  # noqa: BLE001 - a page lxml cannot take is one bad record
        raise HtmlError(f"extraction failed: {type(err).__name__}") from None
    if not text:
        return ""
    return "\n\n".join(dedupe_paragraphs([p.strip() for p in text.split("\n") if p.strip()]))


def _trafilatura_metadata(html: str, url: str | None) -> dict[str, Any]:
    from trafilatura import extract_metadata

    try:
        doc = extract_metadata(html, default_url=url)
    except Exception:  # noqa: BLE001 - metadata is best effort; the body still counts
        return {}
    if doc is None:
        return {}
    data = doc.as_dict() if hasattr(doc, "as_dict") else dict(doc.__dict__)
    return {k: v for k, v in data.items() if isinstance(v, str | list) and v}


def _canonical(tree: LexborHTMLParser) -> str | None:
    for node in tree.css('link[rel="canonical"]'):
        href = (node.attributes.get("href") or "").strip()
        if href.startswith(("http://", "https://")):
            return href
    return None


def _meta(tree: LexborHTMLParser, *names: str) -> str | None:
    for name in names:
        for attr in ("property", "name", "itemprop"):
            node = tree.css_first(f'meta[{attr}="{name}"]')
            if node is not None:
                value = (node.attributes.get("content") or "").strip()
                if value:
                    return value
    return None


def _title(tree: LexborHTMLParser, meta: dict[str, Any]) -> str | None:
    og = _meta(tree, "og:title")
    if og:
        return og
    h1 = tree.css_first("h1")
    h1_text = " ".join(h1.text(separator=" ").split()) if h1 is not None else ""
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    if title:
        parts = [p.strip() for p in _TITLE_SEPARATORS.split(title) if p.strip()]
        # "Article title - Site name": the site name is the shorter tail.
        if len(parts) > 1 and h1_text and h1_text in title:
            return h1_text
        if len(parts) > 1:
            return parts[0]
        return title
    return h1_text or meta.get("title") or None


def _published(tree: LexborHTMLParser, meta: dict[str, Any], body: str) -> dt.date | dt.datetime | None:
    candidates = [
        _meta(tree, "article:published_time", "datePublished", "pubdate", "publishdate", "date"),
    ]
    time_node = tree.css_first("time[datetime]")
    if time_node is not None:
        candidates.append(time_node.attributes.get("datetime"))
    candidates.extend(_json_ld_dates(tree))
    for value in candidates:
        if value:
            parsed = parse_published(value.strip())
            if parsed is not None:
                return parsed
    # Chinese portals print the date near the title, in the text.
    head = _visible_text(tree)[:3000]
    for text in (head, body[:600]):
        found = _date_in_text(text)
        if found is not None:
            return found
    if meta.get("date"):
        return parse_published(str(meta["date"]))
    return None


def _json_ld_dates(tree: LexborHTMLParser) -> list[str]:
    out = []
    for node in tree.css('script[type="application/ld+json"]'):
        try:
            data = json.loads(node.text() or "")
        except (json.JSONDecodeError, RecursionError):
            continue
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key in ("datePublished", "dateCreated", "uploadDate"):
                    if isinstance(item.get(key), str):
                        out.append(item[key])
                stack.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                stack.extend(item)
    return out


def _date_in_text(text: str) -> dt.date | dt.datetime | None:
    for pattern in _DATE_RES:
        for m in pattern.finditer(text):
            y, mo, d = int(m[1]), int(m[2]), int(m[3])
            try:
                if m[4] is not None:
                    return dt.datetime(y, mo, d, int(m[4]), int(m[5]))
                return dt.date(y, mo, d)
            except ValueError:
                continue
    return None


def _visible_text(tree: LexborHTMLParser) -> str:
    body = tree.body
    if body is None:
        return ""
    return body.text(separator="\n", strip=True)


def _pattern(regex: re.Pattern, tree: LexborHTMLParser, body: str) -> str | None:
    for text in (_visible_text(tree)[:4000], body[:600]):
        m = regex.search(text)
        if m:
            return m.group(1).strip()
    return None


def _tags(tree: LexborHTMLParser, meta: dict[str, Any]) -> list[str]:
    tags: list[str] = []
    for node in tree.css('meta[property="article:tag"]'):
        value = (node.attributes.get("content") or "").strip()
        if value:
            tags.append(value)
    keywords = _meta(tree, "keywords")
    if keywords:
        tags.extend(t.strip() for t in re.split(r"[,，;；、]", keywords) if t.strip())
    for node in tree.css('a[rel~="tag"]'):
        text = " ".join(node.text().split())
        if text:
            tags.append(text)
    out: list[str] = []
    for t in tags:
        if t not in out and len(t) <= 60:
            out.append(t)
    return out[:30]


def _strip_header_lines(body: str, page: Page) -> str:
    """Drop leading lines that only repeat the metadata ("来源|…", a date,
    a view count) some portals print above the article."""
    paragraphs = body.split("\n\n")
    while paragraphs:
        first = paragraphs[0].strip()
        if len(first) <= 80 and (
            _SOURCE_RE.search(first)
            or _AUTHOR_RE.search(first)
            or re.fullmatch(r"[\d\s\-/:年月日阅读浏览次量|｜]+", first)
        ):
            paragraphs.pop(0)
            continue
        break
    return "\n\n".join(paragraphs)
