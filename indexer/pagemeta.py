"""What a page says about itself in its markup: meta tags, JSON-LD,
microdata, ``<time datetime>``, the canonical link.

Read from the whole page, before a site rule narrows it to the article:
such metadata is where the page's author put it (the ``<head>``, or the
help viewer's ``<meta itemprop="keywords">`` inside the article), never a
guess from running text, so it always comes first. JSON-LD is parsed with
the standard library; every object of a page's blocks is looked at
(``@graph`` included).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from indexer.documents import parse_published

#: Structured dates before this year are a CMS's empty value (Excel's
#: 1899-12-30, 0001-01-01), not a publication.
EARLIEST_YEAR = 1900
#: Most tags kept from one page.
MAX_TAGS = 100
_TAG_SPLIT_RE = re.compile(r"[,，;；、]")


@dataclass
class HeadMeta:
    """The structured metadata of one page."""

    canonical: str | None = None
    og_title: str | None = None
    site_name: str | None = None
    publisher: str | None = None
    author: str | None = None
    published: dt.date | dt.datetime | None = None
    tags: list[str] = field(default_factory=list)


def read_head(tree: LexborHTMLParser) -> HeadMeta:
    """The page's own statements about itself (call before any part of the
    tree is removed)."""
    ld = list(json_ld_objects(tree))
    return HeadMeta(
        canonical=canonical(tree),
        og_title=meta(tree, "og:title"),
        site_name=meta(tree, "og:site_name"),
        publisher=_ld_name(ld, "publisher") or _ld_site_name(ld),
        author=_author(tree, ld),
        published=_published(tree, ld),
        tags=_tags(tree, ld),
    )


def canonical(tree: LexborHTMLParser) -> str | None:
    for node in tree.css('link[rel="canonical"]'):
        href = (node.attributes.get("href") or "").strip()
        if href.startswith(("http://", "https://")):
            return href
    return None


def meta(tree: LexborHTMLParser, *names: str) -> str | None:
    """The first non-empty ``content`` of a meta tag with one of these
    ``property``, ``name`` or ``itemprop`` values."""
    for name in names:
        for attr in ("property", "name", "itemprop"):
            for node in tree.css(f'meta[{attr}="{name}"]'):
                value = " ".join((node.attributes.get("content") or "").split())
                if value:
                    return value
    return None


def json_ld_objects(tree: LexborHTMLParser) -> Iterator[dict[str, Any]]:
    """Every JSON object in the page's JSON-LD blocks, nested ones included."""
    for node in tree.css('script[type="application/ld+json"]'):
        try:
            data = json.loads(node.text() or "")
        except (json.JSONDecodeError, RecursionError):
            continue
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                yield item
                stack.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                stack.extend(reversed(item))


def _names(value: Any) -> list[str]:
    """Names in a JSON-LD value: a string, ``{"name": ...}``, or a list of them."""
    if isinstance(value, str):
        return [" ".join(value.split())] if value.strip() else []
    if isinstance(value, dict):
        return _names(value.get("name"))
    if isinstance(value, list):
        return [name for item in value for name in _names(item)]
    return []


def _ld_name(objects: list[dict[str, Any]], key: str) -> str | None:
    for obj in objects:
        names = [n for n in _names(obj.get(key)) if not n.startswith(("http://", "https://"))]
        if names:
            return ", ".join(dict.fromkeys(names))
    return None


def _ld_site_name(objects: list[dict[str, Any]]) -> str | None:
    for obj in objects:
        if obj.get("@type") == "WebSite":
            names = _names(obj.get("name"))
            if names:
                return names[0]
    return None


def _author(tree: LexborHTMLParser, ld: list[dict[str, Any]]) -> str | None:
    for name in ("author", "article:author", "byl", "dc.creator", "DC.creator"):
        value = meta(tree, name)
        # article:author is often a profile URL: no name.
        if value and not value.startswith(("http://", "https://")):
            return value
    return _ld_name(ld, "author")


def _published(tree: LexborHTMLParser, ld: list[dict[str, Any]]) -> dt.date | dt.datetime | None:
    candidates = [
        meta(
            tree,
            "article:published_time",
            "datePublished",
            "pubdate",
            "publishdate",
            "PubDate",
            "dc.date",
            "DC.date",
            "date",
        )
    ]
    for node in tree.css("[itemprop=datePublished]"):
        candidates.append(node.attributes.get("datetime") or node.attributes.get("content"))
    time_node = tree.css_first("time[datetime]")
    if time_node is not None:
        candidates.append(time_node.attributes.get("datetime"))
    for obj in ld:
        for key in ("datePublished", "dateCreated", "uploadDate"):
            if isinstance(obj.get(key), str):
                candidates.append(obj[key])
    for value in candidates:
        parsed = parse_published(value.strip()) if value else None
        if parsed is not None and plausible(parsed, EARLIEST_YEAR):
            return parsed
    return None


def plausible(value: dt.date | dt.datetime, earliest_year: int) -> bool:
    """A publication date: not before ``earliest_year``, not after tomorrow."""
    day = value.date() if isinstance(value, dt.datetime) else value
    return dt.date(earliest_year, 1, 1) <= day <= dt.date.today() + dt.timedelta(days=1)


def _tags(tree: LexborHTMLParser, ld: list[dict[str, Any]]) -> list[str]:
    tags: list[str] = []
    for node in tree.css('meta[property="article:tag"]'):
        tags.append(node.attributes.get("content") or "")
    # Keywords in the head, and in microdata anywhere (a help system's
    # index entries: one element each); commas separate keywords.
    for node in tree.css('meta[name="keywords" i], [itemprop="keywords"]'):
        tags.extend(_TAG_SPLIT_RE.split(node.attributes.get("content") or ""))
    for obj in ld:
        keywords = obj.get("keywords")
        if isinstance(keywords, str):
            tags.extend(_TAG_SPLIT_RE.split(keywords))
        elif isinstance(keywords, list):
            tags.extend(k for k in keywords if isinstance(k, str))
    for node in tree.css('a[rel~="tag"]'):
        tags.append(node.text() or "")
    out: dict[str, None] = {}
    for tag in tags:
        tag = " ".join(tag.split())
        if tag and len(tag) <= 60:
            out[tag] = None
    return list(out)[:MAX_TAGS]
