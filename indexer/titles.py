"""A page's title without the site's name, and the site's name learned from
its pages' titles.

``<title>`` often ends with the site's name (``文章标题 - 出海日报``,
``文章标题_频道_站点``, ``文章标题-站点名``), but as often the part after a
separator belongs to the title (``表单向导 - 设置名称``, ``柱-线图``). What
tells them apart is structure, then the other pages of the site:

1. ``og:title`` is the article's own title;
2. the ``<h1>`` when it is the whole ``<title>`` or one of its parts (not
   the last): the rest is the site's;
3. a tail that ends many of the site's titles is the site's suffix and is
   cut; the tail ending most of them is the site's name (``SiteNames``);
4. with too few pages to tell, a tail after a clear separator (``|``,
   `` - ``, ``_`` between words) is taken for the site's; an ambiguous one
   (a hyphen with no spaces, as in ``Wi-Fi`` or ``柱-线图``) is kept.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

#: Separators between a title and the site's name. Spaced ones and the
#: bars are clear; an underscore is clear unless it joins two Latin letters
#: or digits (``WEEKNUM_OOO``). An unspaced hyphen or dash is weak: a
#: separator only when the site's other pages or the page's ``<h1>`` say
#: so, and none at all inside a Latin word or number (``Wi-Fi``,
#: ``2024-06``) or in a doubled dash (``——``, a subtitle).
_SEPARATOR_RE = re.compile(r"(?P<clear>\s+(?:[-–—_|｜丨]|::)\s+|\s*(?:[|｜丨]|::)\s*|_)|(?P<weak>(?<=\S)[-–—](?=\S))")
_LATIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
#: A site suffix ends at least this share of a site's titled pages ...
SUFFIX_SHARE = 0.1
#: ... and a site's name more than this share.
NAME_SHARE = 0.5
#: Fewer titled pages than this say nothing about a site's suffixes.
MIN_EVIDENCE = 5


def _separators(title: str):
    for m in _SEPARATOR_RE.finditer(title):
        before = title[m.start() - 1] if m.start() else ""
        after = title[m.end()] if m.end() < len(title) else ""
        if m.group() == "_" and before in _LATIN and after in _LATIN:
            continue
        if m.group("weak") and ((before in _LATIN and after in _LATIN) or "—" in (before, after)):
            continue
        yield m


@dataclass(frozen=True)
class TitleParts:
    """A ``<title>`` cut at its separators: the parts with their spans, and
    for each separator whether it is a clear one."""

    title: str
    spans: tuple[tuple[int, int], ...]
    clear: tuple[bool, ...]

    @classmethod
    def of(cls, title: str) -> TitleParts:
        spans: list[tuple[int, int]] = []
        clear: list[bool] = []
        pos = 0
        for m in _separators(title):
            if title[pos : m.start()].strip():
                spans.append((pos, m.start()))
                clear.append(m.group("clear") is not None)
            pos = m.end()
        if title[pos:].strip():
            spans.append((pos, len(title)))
        elif clear:
            clear.pop()
        return cls(title, tuple(spans), tuple(clear[: max(0, len(spans) - 1)]))

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.title[a:b].strip() for a, b in self.spans)

    @property
    def tails(self) -> tuple[str, ...]:
        """Every part after the first: the candidates for a site's suffix."""
        return self.parts[1:]

    def head(self, count: int) -> str:
        """The title from its first part to the end of its ``count``-th."""
        return self.title[self.spans[0][0] : self.spans[count - 1][1]].strip()


def title_tail(title: str | None) -> str | None:
    """The part of a ``<title>`` after its last separator."""
    if not title:
        return None
    parts = TitleParts.of(title).parts
    return parts[-1] if len(parts) > 1 else None


def choose_title(
    title: str | None,
    h1: str | None = None,
    og_title: str | None = None,
    site_name: str | None = None,
    names: SiteNames | None = None,
    site: str | None = None,
) -> str | None:
    """The article's title from the page's ``og:title``, ``<h1>`` and
    ``<title>``; ``names`` (with the page's ``site``) holds what the site's
    other pages taught, ``site_name`` a name the page declares."""
    suffix = _suffix_test(site_name, names, site)
    if og_title:
        return _strip_known(og_title, suffix)
    if title and h1:
        split = TitleParts.of(title)
        # The h1 is the whole title, a leading run of its parts, or one
        # part before the last.
        if h1 == title or any(h1 == split.head(n) for n in range(1, len(split.spans))) or h1 in split.parts[1:-1]:
            return h1
    if not title:
        return h1 or None
    stripped = _strip_known(title, suffix)
    if stripped != title:
        return stripped
    if names is not None and names.titled(site) >= MIN_EVIDENCE:
        return title  # the site's other pages show no such suffix
    split = TitleParts.of(title)
    if len(split.spans) > 1 and split.clear[0]:
        return split.parts[0]
    return title


def _suffix_test(site_name: str | None, names: SiteNames | None, site: str | None):
    def is_suffix(tail: str) -> bool:
        if site_name and tail == site_name:
            return True
        return names is not None and names.is_suffix(site, tail)

    return is_suffix


def _strip_known(title: str, is_suffix) -> str:
    """``title`` without the site suffixes it ends with."""
    split = TitleParts.of(title)
    parts = split.parts
    keep = len(parts)
    while keep > 1 and is_suffix(parts[keep - 1]):
        keep -= 1
    return title if keep == len(parts) else split.head(keep)


@dataclass
class SiteNames:
    """The tails of each site's titles, counted: a tail ending a tenth of a
    site's titled pages (and at least two) is a suffix to cut; one ending
    most of them is the site's name."""

    _titled: Counter = field(default_factory=Counter)
    _tails: dict[str, Counter] = field(default_factory=dict)

    def observe(self, site: str | None, title: str | None) -> None:
        if not title:
            return
        key = site or ""
        self._titled[key] += 1
        tails = self._tails.setdefault(key, Counter())
        for tail in set(TitleParts.of(title).tails):
            tails[tail] += 1

    def titled(self, site: str | None) -> int:
        return self._titled[site or ""]

    def is_suffix(self, site: str | None, tail: str) -> bool:
        count = self._tails.get(site or "", Counter())[tail]
        return count >= 2 and count >= SUFFIX_SHARE * self.titled(site)

    def name(self, site: str | None) -> str | None:
        """The tail ending most of the site's titles, if one does."""
        tails = self._tails.get(site or "")
        if not tails:
            return None
        last_tails = Counter({t: c for t, c in tails.items() if c >= 2})
        if not last_tails:
            return None
        tail, count = last_tails.most_common(1)[0]
        return tail if count > NAME_SHARE * self.titled(site) else None
