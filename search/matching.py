"""Scoring an any-word query in bulk.

An any-word query (the fallback when no document holds every word, and a
question's ranking) matches every document holding any of its words, often
thousands. Whoosh scores them through a binary tree of union matchers: for
each document it walks the tree to find the next id, asks every active
leaf for its score, and reads the document's field length once per leaf,
about 70 µs a document on poetry-20k, which made these queries the slowest
tenth. ``AnyWord`` computes the same BM25F scores a posting block at a time
with the field lengths read once per segment, adds them up per document,
and hands the collector a ready list.
"""

from __future__ import annotations

from collections.abc import Iterator

from whoosh import query as wq
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3LeafMatcher, _lenfield
from whoosh.matching import ListMatcher, NullMatcher, WrappingMatcher
from whoosh.scoring import BM25FScorer
from whoosh.util.numeric import byte_to_length

#: ``byte_to_length`` for every byte value (field lengths are stored as one).
_LENGTHS = [byte_to_length(b) for b in range(256)]


class AnyWord(wq.Or):
    """An ``Or`` whose matches are scored up front (see the module)."""

    def matcher(self, searcher, context=None):
        scores: dict[int, float] = {}
        for leaf, boost in _leaves(self, 1.0):
            _add_scores(leaf.matcher(searcher, context), boost, searcher, scores)
        if not scores:
            return NullMatcher()
        ids = sorted(scores)
        return ListMatcher(ids, [scores[d] for d in ids])


def _leaves(q: wq.Query, boost: float) -> Iterator[tuple[wq.Query, float]]:
    """The non-Or parts of nested plain ``Or`` queries, each with the boost
    the Ors above it apply."""
    if isinstance(q, wq.Or) and not q.minmatch and not q.scale:
        for sub in q.subqueries:
            yield from _leaves(sub, boost * q.boost)
    else:
        yield q, boost


def _add_scores(m, boost: float, searcher, scores: dict[int, float]) -> None:
    while type(m) is WrappingMatcher:
        boost *= m.boost
        m = m.child
    scorer = getattr(m, "scorer", None) if isinstance(m, W3LeafMatcher) else getattr(m, "_scorer", None)
    lengths = None
    if type(scorer) is BM25FScorer and isinstance(m, W3LeafMatcher | ListMatcher) and m.is_active() and m.term():
        lengths = _field_lengths(searcher, m.term()[0])
    if lengths is not None:
        idf, avgfl, b, k1 = scorer.idf, scorer.avgfl, scorer.B, scorer.K1
        get = scores.get
        for ids, weights in _blocks(m):
            for docnum, tf in zip(ids, weights, strict=True):
                # whoosh.scoring.bm25, term for term, so the scores are the same.
                s = idf * ((tf * (k1 + 1)) / (tf + k1 * ((1 - b) + b * lengths[docnum] / avgfl)))
                scores[docnum] = get(docnum, 0.0) + s * boost
        return
    while m.is_active():
        docnum = m.id()
        scores[docnum] = scores.get(docnum, 0.0) + m.score() * boost
        m.next()


def _blocks(m) -> Iterator[tuple]:
    """(ids, weights) of a leaf matcher's postings, a block at a time."""
    if isinstance(m, ListMatcher):
        ids = m._ids
        yield ids, (m._weights or [m._all_weights] * len(ids))
        return
    while m.is_active():
        if m._ids is None:
            m._read_ids()
        if m._weights is None:
            m._read_weights()
        yield m._ids[m._i :], m._weights[m._i :]
        m._i = m._blocklength
        m._next_block()


def _field_lengths(searcher, fieldname: str) -> list[int] | None:
    """Every document's length in ``fieldname`` in this segment (0 where
    it has none), decoded once per segment reader; None when the searcher
    is not over a single segment."""
    reader = searcher.reader()
    if not hasattr(reader, "_perdoc"):
        return None
    cache = reader.__dict__.setdefault("_zhsearch_lengths", {})
    lengths = cache.get(fieldname)
    if lengths is None:
        count = reader.doc_count_all()
        column = reader._perdoc._cached_reader(_lenfield(fieldname), LENGTHS_COLUMN)
        if column is None:
            lengths = [0] * count
        else:
            # One byte per document: read them all at once.
            raw = column._dbfile.get(column._basepos, column._count)
            lengths = [_LENGTHS[b] for b in raw]
            lengths.extend([0] * (count - len(lengths)))
        cache[fieldname] = lengths
    return lengths
