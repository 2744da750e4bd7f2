"""Which site a document belongs to, and a readable trail to it.

Results with the same title (twelve help pages called 工具栏) can only be
told apart by where they live, so every document gets a ``site``: the host
of its URL, or, for a page indexed from a folder, the top folder under the
folder named on the command line (``search index crawl/`` files
``crawl/news.example/a.html`` under ``news.example``). The same value is the
source of last resort, so a source always means something.

``display_url`` is the breadcrumb shown under a title
(``help.libreoffice.org › 7.4 › zh-CN › text › scalc › main0200``): the
site, then the path's folders and the page's name without its extension,
percent-escapes decoded, long trails shortened in the middle.
"""

from __future__ import annotations

import functools
import posixpath
from urllib.parse import unquote, urlsplit

#: Between the parts of a breadcrumb.
CRUMB = " › "
#: Parts shown after the site; a longer trail keeps its last ones.
MAX_CRUMBS = 6
#: Page names that add nothing to a trail.
_INDEX_PAGES = frozenset({"index", "default", "index.html", "index.htm"})


@functools.lru_cache(maxsize=8192)
def host_of(url: str | None) -> str | None:
    """The lower-case host of an http(s) URL, without ``www.``; else None.
    Remembered: every hit of every result page asks for it, and parsing a
    URL cost more than reading the hit's stored fields."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return host.removeprefix("www.")


def top_folder(path: str | None, root_name: str | None = None) -> str | None:
    """The first folder of a path relative to the indexed folder; a page
    lying directly in it belongs to the indexed folder itself."""
    if not path:
        return None
    parts = [p for p in path.replace("\\", "/").split("/") if p and p != "."]
    if len(parts) > 1:
        return parts[0]
    return root_name or None


def site_of(url: str | None, path: str | None = None, root_name: str | None = None) -> str | None:
    """The host of the page's URL, else the top folder it was indexed from."""
    return host_of(url) or top_folder(path, root_name)


def display_url(url: str | None, doc_id: str | None = None, site: str | None = None) -> str | None:
    """The breadcrumb of a document: from its http(s) URL, or, for a page
    indexed from a folder (its id is its path, under ``site``), from its
    path. None when neither says where it lives."""
    host = host_of(url)
    if host is not None:
        path = urlsplit(url.strip()).path
        return _trail(host, path)
    if site and doc_id and doc_id.startswith(site + "/"):
        return _trail(site, doc_id[len(site) :])
    return None


def _trail(head: str, path: str) -> str:
    parts = [unquote(p) for p in path.split("/") if p]
    if parts and not path.endswith("/"):
        stem, ext = posixpath.splitext(parts[-1])
        name = stem if ext.lower() in (".html", ".htm", ".shtml", ".php", ".asp", ".aspx", ".jsp") else parts[-1]
        parts[-1] = name
        if name.lower() in _INDEX_PAGES:
            parts.pop()
    if len(parts) > MAX_CRUMBS:
        parts = ["…", *parts[-(MAX_CRUMBS - 1) :]]
    return CRUMB.join([head, *parts])
