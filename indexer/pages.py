"""Crawled pages into article records, with what the crawl teaches about
its sites.

One page says little about its site: whether ``表单向导 - 设置名称`` ends
with a site name or is a title with a dash in it, and what the site is
called when no page declares it. Most pages of one site end their titles
the same way, so a page is extracted at once (a ``Draft``) but finished
only once the titles of up to ``LOOKAHEAD_PAGES`` pages after it have been
seen (``with_site_names``): then its title loses a suffix the site's pages
share, and a page without a source gets the site's name, else the site
(the host, or the top folder of a page indexed from a folder), so that a
source always means something. Records keep their order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from indexer.documents import Article
from indexer.html import Page, extract
from indexer.siterules import SiteRule
from indexer.sites import host_of, site_of
from indexer.titles import SiteNames, choose_title

#: Pages held back at most (and characters of their bodies, and items in
#: all, records and rejections after them included), so that the site
#: names have seen what follows them.
LOOKAHEAD_PAGES = 5_000
LOOKAHEAD_CHARS = 50_000_000
LOOKAHEAD_ITEMS = 20_000


@dataclass
class Draft:
    """A page extracted, its title and source not yet settled."""

    location: str
    data: dict[str, Any]
    page: Page
    site: str | None

    @property
    def size(self) -> int:
        return len(self.page.body)


def draft_page(location: str, data: dict[str, Any], rules: list[SiteRule]) -> Draft:
    """Extract a crawled page (``{"html", "url"?, "path"?, ...}``); raises
    ``HtmlError`` when it holds no article."""
    page = extract(data["html"], url=data.get("url"), rules=rules, location=data.get("path") or data.get("url"))
    site = site_of(page.url or data.get("url"), data.get("path"), data.get("_folder"))
    rest = {k: v for k, v in data.items() if k != "html"}
    return Draft(location, rest, page, site)


def finish_page(draft: Draft, names: SiteNames) -> dict[str, Any]:
    """The page as an article record. Fields the crawler gave win over
    extracted ones; the id is the given id, else the page's canonical URL,
    else its URL, else its path."""
    page, data = draft.page, draft.data
    record = page.record()
    record["title"] = choose_title(page.raw_title, page.h1, page.og_title, page.site_name, names, draft.site)
    record["source"] = page.source or names.name(draft.site) or draft.site
    for key in ("title", "body", "tags", "published", "source", "author", "crawled"):
        if data.get(key):
            record[key] = data[key]
    record["url"] = page.url or data.get("url")
    record["id"] = data.get("id") or page.url or data.get("url") or data.get("path")
    record["site"] = draft.site
    if data.get("url") and data["url"] != record["url"]:
        record["crawl_url"] = data["url"]
    return record


def settle_site(article: Article) -> Article:
    """A record's site (the host of its URL, unless its page said
    otherwise) and, when it names no source, the site as its source."""
    if not article.site:
        article.site = host_of(article.url)
    if not article.source:
        article.source = article.site
    return article


def with_site_names(items: Iterable[Any], lookahead: int = LOOKAHEAD_PAGES) -> Iterator[Any]:
    """``items`` in order, each ``Draft`` replaced by ``(location, record)``
    once the titles of the pages after it (up to ``lookahead``) are known."""
    names = SiteNames()
    window: deque[Any] = deque()
    pages = chars = 0
    for item in items:
        if isinstance(item, Draft):
            names.observe(item.site, item.page.raw_title)
            pages += 1
            chars += item.size
        window.append(item)
        while pages > lookahead or chars > LOOKAHEAD_CHARS or len(window) > LOOKAHEAD_ITEMS:
            first = window.popleft()
            pages -= 1
            chars -= first.size
            yield first.location, finish_page(first, names)
            while window and not isinstance(window[0], Draft):
                yield window.popleft()
        # What no page waits before goes straight on.
        while window and not isinstance(window[0], Draft):
            yield window.popleft()
    for item in window:
        yield (item.location, finish_page(item, names)) if isinstance(item, Draft) else item
