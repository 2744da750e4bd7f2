"""Per-site extraction rules: where a site keeps its article, and what to
cut from it.

A rules file (TOML) lists sites; the first whose ``match`` patterns fit the
page's URL or path is used::

    [[site]]
    name = "libreoffice-help"
    match = ["help.libreoffice.org", "*libreoffice/help/*"]
    content = "#DisplayArea"                 # CSS selector of the article
    drop = ["[hidden]:not([id^=default])"]   # CSS selectors removed from it
    source = "LibreOffice 帮助"               # the source of its pages (optional)

A rule chooses the body only: the page's head metadata (meta tags, JSON-LD,
keywords, the canonical link) is read from the whole page whatever the rule
drops. A pattern without ``*`` or ``/`` is a host name (subdomains included); any
other pattern is a glob over the whole URL or file path.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


class RulesError(ValueError):
    """A rules file that cannot be used."""


@dataclass(frozen=True)
class SiteRule:
    name: str
    match: tuple[str, ...]
    content: str | None = None
    drop: tuple[str, ...] = field(default_factory=tuple)
    #: The source of the site's pages, where the pages do not name one the
    #: operator would choose (a crawl's folder or host is the fallback).
    source: str | None = None

    def matches(self, *locations: str | None) -> bool:
        for location in locations:
            if not location:
                continue
            host = urlsplit(location).hostname or ""
            for pattern in self.match:
                if "*" in pattern or "/" in pattern:
                    if fnmatch.fnmatch(location, pattern):
                        return True
                elif host == pattern or host.endswith("." + pattern):
                    return True
        return False


def _text(path: str | Path, i: int, site: dict, key: str) -> str | None:
    value = site.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RulesError(f"{path}: site {i}: {key!r} must be a non-empty string")
    return " ".join(value.split())


def load_rules(path: str | Path | None) -> list[SiteRule]:
    if not path:
        return []
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise RulesError(f"{path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise RulesError(f"{path}: {err}") from None
    rules = []
    for i, site in enumerate(data.get("site", []), 1):
        if not isinstance(site, dict) or not site.get("match"):
            raise RulesError(f"{path}: site {i} needs a 'match' list")
        match = site["match"]
        rules.append(
            SiteRule(
                name=str(site.get("name") or f"site-{i}"),
                match=tuple([match] if isinstance(match, str) else match),
                content=site.get("content"),
                drop=tuple(site.get("drop") or ()),
                source=_text(path, i, site, "source"),
            )
        )
    return rules
