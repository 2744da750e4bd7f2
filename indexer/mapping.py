"""Crawlers' field names into ours.

Scrapy items, scraping-tool exports and database dumps name the same
things differently (``content``, ``text``, 正文 for the body; ``pub_time``,
发布时间 for the date; ``link``, 链接 for the URL). A record passes through
a ``FieldMapper`` before validation:

1. MongoDB extended JSON (``{"$date": …}``, ``{"$oid": …}``) is unwrapped;
2. explicit mappings (``--field body=news_content``, or a ``[fields]``
   table in a TOML config file) are applied; they win over everything;
3. for each of our fields still missing, the first alias present is used;
4. Scrapy's lists of text pieces are joined.

A long text field (200 characters or more) that nothing maps is noted once
per run, so that the summary can say ``--field body=NAME`` instead of the
body being lost without a word.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Our fields, as the schema names them.
OUR_FIELDS = ("id", "url", "title", "body", "tags", "published", "source", "author", "deleted", "html", "crawled")

#: Set by our own readers: an HTML page's path under the named folder, and
#: that folder's name.
_INTERNAL = ("path", "_folder")

#: Names crawlers use for each of our fields, most specific first. Matched
#: without regard to case, spaces, ``-`` or ``_``.
ALIASES: dict[str, tuple[str, ...]] = {
    "url": (
        "link",
        "href",
        "page_url",
        "article_url",
        "source_url",
        "链接",
        "网址",
        "原文链接",
        "页面网址",
        "文章链接",
    ),
    "title": ("headline", "article_title", "news_title", "标题", "文章标题", "新闻标题", "题目"),
    "body": (
        "content",
        "text",
        "article",
        "main_text",
        "article_content",
        "news_content",
        "正文",
        "内容",
        "文章内容",
        "新闻内容",
        "正文内容",
    ),
    "published": (
        "pub_time",
        "publish_time",
        "pubtime",
        "pubdate",
        "pub_date",
        "publish_date",
        "published_at",
        "publication_date",
        "date",
        "time",
        "datetime",
        "发布时间",
        "发布日期",
        "日期",
        "时间",
    ),
    "tags": ("keywords", "keyword", "tag", "关键词", "关键字", "标签"),
    "source": ("site_name", "sitename", "site", "media", "来源", "媒体", "站点"),
    "author": ("authors", "byline", "writer", "作者"),
    "html": ("raw_html", "page_html", "html_content", "源码", "网页源码"),
}

#: A text value at least this long, in a field nothing maps, is named in the summary.
LONG_TEXT = 200
#: How a list is joined into one text field (Scrapy's ``getall()``).
_JOINERS = {"body": "\n", "title": " ", "author": ", ", "source": " "}


class FieldMapError(ValueError):
    """A ``--field`` or ``[fields]`` mapping that cannot be used."""


def _key(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in " -_\ufeff")


_ALIAS_INDEX = {_key(alias): ours for ours, aliases in ALIASES.items() for alias in aliases}


def parse_field_options(pairs: Iterable[str]) -> dict[str, str]:
    """``DEST=SOURCE`` pairs from the command line."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        dest, sep, source = pair.partition("=")
        if not sep or not dest.strip() or not source.strip():
            raise FieldMapError(f"--field takes DEST=SOURCE (for example body=news_content), not {pair!r}")
        mapping[dest.strip()] = source.strip()
    return check_field_map(mapping)


def load_field_config(path: str | Path) -> dict[str, str]:
    """The ``[fields]`` table of a TOML config file (``body = "news_content"``)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as err:
        raise FieldMapError(f"{path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise FieldMapError(f"{path}: not valid TOML ({err})") from None
    table = data.get("fields", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise FieldMapError(f"{path}: [fields] maps our field names to the crawler's, as text")
    return check_field_map(table)


def check_field_map(mapping: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(mapping) - set(OUR_FIELDS))
    if unknown:
        raise FieldMapError(f"cannot map to {', '.join(unknown)}: the fields are {', '.join(OUR_FIELDS)}")
    return dict(mapping)


@dataclass
class FieldMapper:
    """Maps one run's records; remembers the unmapped long fields it saw."""

    explicit: Mapping[str, str] = field(default_factory=dict)
    #: Unmapped long text fields: name -> the first location it was seen at.
    unmapped: dict[str, str] = field(default_factory=dict)

    def map(self, data: Any, location: str = "") -> Any:
        if not isinstance(data, dict):
            return data
        data = {k: unwrap_extended_json(v) for k, v in data.items()}
        out: dict[str, Any] = {}
        used: set[str] = set()
        for ours, theirs in self.explicit.items():
            if theirs in data:
                out[ours] = data[theirs]
                used.add(theirs)
        for name, value in data.items():
            if (name in OUR_FIELDS or name in _INTERNAL) and name not in out and _given(value):
                out[name] = value
                used.add(name)
        for name, value in data.items():
            ours = _ALIAS_INDEX.get(_key(name))
            if ours and ours not in out and _given(value):
                out[ours] = value
                used.add(name)
        for ours, joiner in _JOINERS.items():
            value = out.get(ours)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out[ours] = joiner.join(v.strip() for v in value if v.strip()) or None
        if isinstance(out.get("url"), list) and out["url"] and isinstance(out["url"][0], str):
            out["url"] = out["url"][0]
        for name, value in data.items():
            if name not in used and name not in self.unmapped and _is_long_text(value):
                self.unmapped[name] = location
        return out


def _given(value: Any) -> bool:
    return value is not None and value != "" and value != []


def _is_long_text(value: Any) -> bool:
    if isinstance(value, list):
        value = "".join(v for v in value if isinstance(v, str))
    return isinstance(value, str) and len(value) >= LONG_TEXT


def unwrap_extended_json(value: Any) -> Any:
    """MongoDB extended JSON (``mongoexport``'s output) as plain values:
    ``{"$date": "…"}`` or ``{"$date": {"$numberLong": "…"}}`` (milliseconds),
    ``{"$oid": "…"}``, ``{"$numberLong": "…"}`` and friends."""
    if isinstance(value, list):
        return [unwrap_extended_json(v) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((key, inner),) = value.items()
    if key == "$date":
        inner = unwrap_extended_json(inner)
        return int(inner) if isinstance(inner, str) and inner.lstrip("-").isdigit() else inner
    if key in ("$oid", "$symbol"):
        return str(inner)
    if key in ("$numberLong", "$numberInt"):
        try:
            return int(inner)
        except (TypeError, ValueError):
            return inner
    if key in ("$numberDouble", "$numberDecimal"):
        try:
            return float(inner)
        except (TypeError, ValueError):
            return inner
    return value
