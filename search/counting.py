"""How many documents a query matches, without scoring them.

A question's ranking keeps only its best documents (``search.pruning``),
but the page still says how many documents it matched, and how many of
those hold every word. Counting needs every posting's document, not its
score: each term's documents are a bitmap (a Python integer, one bit a
document of the segment), unions and intersections are ``|`` and ``&``
over whole integers, and a count is ``int.bit_count``. A term's bitmap is
kept with its segment's reader (a segment never changes), within a byte
budget, so the common words of questions (保险, 可以) are read once, not
on every question, as Lucene caches the document sets of frequent
clauses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from whoosh import query as wq
from whoosh.matching import FilterMatcher

from search.budget import check_time
from search.terms import BulkTerm, cached, posting_id_blocks

#: Bytes of term bitmaps kept per segment reader (the least recently used
#: go first): 4,900 terms of a 13,000-document segment.
CACHE_BYTES = 8 << 20


class MatchCount:
    """The documents of a segment that hold any of ``terms`` (deleted ones
    left out), counted when asked. ``seen``: for each term, its documents
    when they were read already (a term scored in full), else None."""

    def __init__(self, searcher, terms: Sequence[BulkTerm], seen: Sequence[Iterable[int] | None]) -> None:
        self._searcher = searcher
        self._terms = terms
        self._seen = seen
        self._bits: int | None = None

    def bits(self) -> int:
        if self._bits is None:
            reader = self._searcher.reader()
            union = 0
            for term, docs in zip(self._terms, self._seen, strict=True):
                fieldname, btext = term.matcher.term()
                if docs is None and term.decoded is not None:
                    docs = term.decoded[0]
                union |= term_bits(reader, fieldname, btext, docs)
            self._bits = union & live_bits(reader)
        return self._bits

    def count(self) -> int:
        return self.bits().bit_count()

    def ids(self) -> list[int]:
        return bits_to_ids(self.bits())


def term_bits(reader, fieldname: str, btext: bytes, docs: Iterable[int] | None = None) -> int:
    """The bitmap of the documents (deleted ones too) holding a term in
    one segment; ``docs``: those documents, when the caller read them."""
    cache: OrderedDict = reader.__dict__.setdefault("_zhsearch_bitmaps", OrderedDict())
    key = (fieldname, btext)
    bits = cached(cache, key)
    if bits is not None:
        return bits
    if (fieldname, btext) not in reader:
        return 0
    size = (reader.doc_count_all() + 7) // 8
    if docs is None:
        m = reader.postings(fieldname, btext)
        if isinstance(m, FilterMatcher):
            m = m.child
        blocks: Iterable[Iterable[int]] = posting_id_blocks(m)
    else:
        blocks = (docs,)
    bits = _bitmap(blocks, size)
    cache[key] = bits
    room = max(1, CACHE_BYTES // (size + 64))
    while len(cache) > room:
        cache.popitem(last=False)
    return bits


def live_bits(reader) -> int:
    """The bitmap of a segment's documents that are not deleted."""
    bits = reader.__dict__.get("_zhsearch_live")
    if bits is None:
        n = reader.doc_count_all()
        bits = (1 << n) - 1
        deleted = reader.deleted_docs_set if reader.has_deletions() else ()
        if deleted:
            bits &= ~_bitmap((deleted,), (n + 7) // 8)
        reader.__dict__["_zhsearch_live"] = bits
    return bits


def query_bits(q: wq.Query, searcher) -> int:
    """The bitmap of the documents of one segment that ``q`` matches
    (deleted ones left out): unions and intersections of term bitmaps,
    other parts through their own ``docs``."""
    return _bits(q, searcher) & live_bits(searcher.reader())


def _bits(q: wq.Query, searcher) -> int:
    check_time()
    if isinstance(q, wq.Or) and not q.minmatch:
        out = 0
        for sub in q.subqueries:
            out |= _bits(sub, searcher)
        return out
    if isinstance(q, wq.And):
        parts = iter(q.subqueries)
        out = _bits(next(parts), searcher) if q.subqueries else 0
        for sub in parts:
            if not out:
                break
            out &= _bits(sub, searcher)
        return out
    if q is wq.NullQuery:
        return 0
    if type(q) is wq.Term:
        reader = searcher.reader()
        try:
            btext = reader.schema[q.fieldname].to_bytes(q.text)
        except (KeyError, ValueError):
            return 0
        return term_bits(reader, q.fieldname, btext)
    return _bitmap((q.docs(searcher),), (searcher.reader().doc_count_all() + 7) // 8)


def _bitmap(blocks: Iterable[Iterable[int]], size: int) -> int:
    buf = bytearray(size)
    for block in blocks:
        for docnum in block:
            buf[docnum >> 3] |= 1 << (docnum & 7)
    return int.from_bytes(buf, "little")


def bits_to_ids(bits: int) -> list[int]:
    """The document numbers of a bitmap, in order."""
    out = []
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for i, byte in enumerate(data):
        if byte:
            base = i << 3
            out.extend(base + j for j in range(8) if byte >> j & 1)
    return out
