"""What each crawl record needs done before the run decides on it: pages
extracted, records validated, and their content hash and near-duplicate
signature worked out.

None of it depends on any other record, so a sharded build does it in Ray
tasks, a part of the crawl each, while the command reads on. What does
depend on other records stays with the command, in crawl order: a page's
title and source (``indexer.pages.with_site_names``), whether a record is
new, changed or unchanged, and whether it duplicates one kept earlier.
Parts come back in the order they were read, so a sharded build decides
exactly as a single one does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from indexer.dedupe import Signature, signature
from indexer.documents import Article, Tombstone, describe_error, load_record
from indexer.html import HtmlError
from indexer.pages import Draft, draft_page, settle_site
from indexer.siterules import SiteRule

#: A part handed to a task: at most this many records, or of this many
#: characters (pages and bodies), whichever comes first.
PART_RECORDS = 500
PART_CHARS = 4_000_000


@dataclass(frozen=True)
class Rejection:
    """A record that cannot be indexed, and why."""

    location: str
    reason: str
    #: The id the bad record names, when it names one (kept by --prune).
    id: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class Unprepared:
    """A record as read (``page``: a crawled page, to extract)."""

    location: str
    data: Any
    page: bool = False

    @property
    def size(self) -> int:
        data = self.data
        if not isinstance(data, dict):
            return 0
        return sum(len(data[k]) for k in ("html", "body") if isinstance(data.get(k), str))


@dataclass(frozen=True)
class PageFailed:
    """A page that holds no article."""

    location: str
    reason: str
    url: str | None


@dataclass
class Prepared:
    """A valid record; for an article, its content hash and (once
    ``signed``) its near-duplicate signature."""

    location: str
    record: Article | Tombstone
    digest: str | None = None
    sig: Signature | None = None
    signed: bool = False

    def content_hash(self) -> str:
        if self.digest is None:
            self.digest = self.record.content_hash()
        return self.digest

    def signature(self) -> Signature | None:
        if not self.signed:
            self.sig = signature(self.record.title, self.record.body)
            self.signed = True
        return self.sig


Item = Rejection | Unprepared | PageFailed | Prepared | Draft


def claimed_id(data: Any) -> str | None:
    """The id a record meant to have, to name it when it is rejected."""
    if isinstance(data, dict):
        for key in ("id", "url"):
            if isinstance(data.get(key), str | int) and str(data[key]).strip():
                return str(data[key]).strip()
    return None


def prepare_record(location: str, data: Any, signed: bool = False) -> Prepared | Rejection:
    """A record validated; ``signed``: with its signature worked out now
    (otherwise only when the run needs it, for a new or changed record)."""
    try:
        record = load_record(data)
    except ValidationError as err:
        return Rejection(location, describe_error(err), claimed_id(data))
    if isinstance(record, Tombstone):
        return Prepared(location, record)
    prepared = Prepared(location, settle_site(record))
    prepared.content_hash()
    if signed:
        prepared.signature()
    return prepared


def prepare(item: Item, rules: list[SiteRule], signed: bool = False) -> Item:
    """One item of the crawl, prepared: a page extracted (a ``Draft``, or
    ``PageFailed``), a record validated; anything else as it was."""
    if not isinstance(item, Unprepared):
        return item
    if item.page:
        try:
            return draft_page(item.location, item.data, rules)
        except HtmlError as err:
            return PageFailed(item.location, str(err), item.data.get("url"))
    return prepare_record(item.location, item.data, signed)


def prepare_part(items: list[Item], rules: list[SiteRule]) -> list[Item]:
    """A part of the crawl prepared (in a Ray task: with the signatures)."""
    return [prepare(item, rules, signed=True) for item in items]


def parts(items: Iterable[Item]) -> Iterator[list[Item]]:
    """``items`` in consecutive parts of about ``PART_RECORDS`` records or
    ``PART_CHARS`` characters."""
    part: list[Item] = []
    chars = 0
    for item in items:
        part.append(item)
        if isinstance(item, Unprepared):
            chars += item.size
        if len(part) >= PART_RECORDS or chars >= PART_CHARS:
            yield part
            part, chars = [], 0
    if part:
        yield part


def prepared_in_order(
    items: Iterable[Item], submit: Callable[[list[Item]], Any], result: Callable[[Any], list[Item]], window: int
) -> Iterator[Item]:
    """``items`` prepared part by part elsewhere (``submit`` starts a part,
    ``result`` waits for it), ``window`` parts at a time, and given back in
    the order they were read."""
    pending: deque[Any] = deque()
    for part in parts(items):
        pending.append(submit(part))
        if len(pending) >= max(1, window):
            yield from result(pending.popleft())
    while pending:
        yield from result(pending.popleft())
