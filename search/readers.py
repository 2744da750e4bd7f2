"""Segment readers kept open across commits.

A commit leaves most of an index's segments as they were: it adds a
segment, merges a few into one, or marks documents of a kept segment
deleted. Opening every segment again on each commit cost a serving worker
55-110 ms of CPU per commit and threw away what the readers had learnt
(field lengths, columns, term infos). Here only the segments a commit
added are opened; each kept segment's reader is reused with the
commit's own segment object, which carries that segment's deletions.

Whoosh's ``Searcher.refresh`` reuses readers too, but whole, and a reused
reader still answers from the deletions of the commit it was opened at: a
document deleted by a later commit would still be found (the reason this
engine used to reopen everything). Deletions live in the segment object of
the table of contents, not in the segment's files, so a reused reader is
a shallow copy that shares the open files and caches and takes the new
segment object.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from whoosh.index import Index
from whoosh.reading import EmptyReader, IndexReader, MultiReader, SegmentReader
from whoosh.searching import Searcher

from indexer.threads import native_lock

#: Seconds a segment no commit holds any more stays open, so that a request
#: that started on an older searcher can finish reading it (longer than a
#: worker may spend on one request).
CLOSE_AFTER = 120.0


class ReaderPool:
    """The open readers of one index folder's live segments."""

    def __init__(self) -> None:
        self._lock = native_lock()
        #: segment id -> the newest reader of that segment.
        self._latest: dict[str, SegmentReader] = {}
        #: (when it went, reader) of segments no longer live.
        self._leaving: list[tuple[float, SegmentReader]] = []

    def open(self, ix: Index, toc: Any) -> tuple[IndexReader, list[SegmentReader]]:
        """A reader over the segments of ``toc`` (the table of contents the
        caller read, and checked), and which of its segment readers are
        new (those the caller may want to warm up)."""
        readers: list[SegmentReader] = []
        opened: list[SegmentReader] = []
        with self._lock:
            latest: dict[str, SegmentReader] = {}
            try:
                for segment in toc.segments:
                    key = segment.segment_id()
                    known = self._latest.get(key) or latest.get(key)
                    if known is not None:
                        reader = _with_segment(known, segment, toc.generation)
                    else:
                        reader = SegmentReader(ix.storage, toc.schema, segment, generation=toc.generation)
                        opened.append(reader)
                    latest[key] = reader
                    readers.append(reader)
            except BaseException:
                for reader in opened:
                    reader.close()
                raise
            now = time.monotonic()
            self._leaving.extend((now, r) for key, r in self._latest.items() if key not in latest)
            self._latest = latest
            self._close_left(now)
        if not readers:
            return EmptyReader(toc.schema), []
        if len(readers) == 1:
            return readers[0], opened
        return MultiReader(readers, generation=toc.generation), opened

    def _close_left(self, now: float) -> None:
        keep = []
        for since, reader in self._leaving:
            if now - since >= CLOSE_AFTER:
                _close(reader)
            else:
                keep.append((since, reader))
        self._leaving = keep

    def close(self) -> None:
        with self._lock:
            for reader in self._latest.values():
                _close(reader)
            for _since, reader in self._leaving:
                _close(reader)
            self._latest, self._leaving = {}, []

    def segment_ids(self) -> list[str]:
        with self._lock:
            return list(self._latest)


def _with_segment(reader: SegmentReader, segment: Any, generation: int) -> SegmentReader:
    """``reader`` as of a later commit: same files and caches, the
    commit's segment object (its deletions)."""
    out = copy.copy(reader)
    # Whoosh remembers the deleted set on the reader (a cached property).
    out.__dict__.pop("deleted_docs_set", None)
    out._segment = segment
    out._gen = generation
    perdoc = copy.copy(reader._perdoc)
    perdoc._segment = segment
    out._perdoc = perdoc
    return out


def _close(reader: SegmentReader) -> None:
    """Close the files one segment's readers share (every copy of a reader
    shares them, so once is enough)."""
    if not reader.is_closed:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 - a map still in use is freed when the last view goes
            pass


class CommitSearcher(Searcher):
    """Whoosh's searcher, with each field's average length worked out once
    for the commit it reads: BM25F asks for it for every term, field and
    segment of a query, and Whoosh adds up the field's length over every
    segment each time, a cost that grew with the number of segments."""

    def avg_field_length(self, fieldname: str, default: float | None = None) -> float | None:
        top = self.get_parent()
        memo = top.__dict__.setdefault("_zhsearch_avg_lengths", {})
        key = (fieldname, default)
        try:
            return memo[key]
        except KeyError:
            value = memo[key] = Searcher.avg_field_length(top, fieldname, default)
            return value
