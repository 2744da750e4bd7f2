"""Scoring any-word and all-words queries in bulk, without matcher trees.

Whoosh answers an ``Or`` with a binary tree of union matchers and an
``And`` with intersections of such trees: for each document it walks the
tree, asks every active leaf to skip or score, and reads the document's
field length once per leaf. Our queries ask for each word in up to eight
fields, so an any-word query (the fallback when no document holds every
word, and a question's ranking) spent about 70 µs on each of its thousands
of matches, and a verse line of common single characters spent most of its
time leapfrogging. ``AnyWord`` and ``AllWords`` compute the same BM25F
scores (``whoosh.scoring.bm25``, term for term) a posting block at a time,
with each field's lengths read once per segment, and hand the collector a
ready list of matches.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from whoosh import query as wq
from whoosh.codec.whoosh3 import W3LeafMatcher
from whoosh.collectors import TopCollector
from whoosh.matching import FilterMatcher, ListMatcher, NullMatcher, WrappingMatcher
from whoosh.scoring import BM25FScorer

from search.budget import check_time
from search.terms import BulkTerm, field_lengths, length_norms, long_postings, probe


class AnyWord(wq.Or):
    """An ``Or`` whose matches are scored up front (see the module)."""

    def matcher(self, searcher, context=None):
        scores: dict[int, float] = {}
        for leaf, boost in _leaves(self, 1.0, searcher.reader()):
            _add_scores(leaf.matcher(searcher, context), boost, searcher, scores)
        return _ranked(scores, 1.0)


class AllWords(wq.And):
    """An ``And`` (of per-word ``Or`` parts) scored without matcher trees.

    Whoosh intersects binary trees of union matchers, asking every leaf to
    skip at each step; for a few words that each occur in many documents
    (the single characters of a verse line) that leapfrogging was most of
    a query's time. Here the rarest part gives the candidates and their
    scores in bulk; each further part adds its score for the candidates
    that remain, reading a short posting list whole and skipping through a
    long one, and drops the candidates it lacks.
    """

    #: Read a posting list whole rather than skip through it when it holds
    #: at most this many postings per remaining candidate.
    SCAN_RATIO = 4

    def matcher(self, searcher, context=None):
        reader = searcher.reader()
        parts = []
        for sub in _parts(self):
            leaves = [(leaf, boost, leaf.estimate_size(reader)) for leaf, boost in _leaves(sub, 1.0, reader)]
            parts.append((sum(size for _leaf, _boost, size in leaves), leaves))
        parts.sort(key=lambda part: part[0])
        scores: dict[int, float] | None = None
        for _size, leaves in parts:
            found: dict[int, float] = {}
            if scores is None:
                for leaf, boost, _n in leaves:
                    _add_scores(leaf.matcher(searcher, context), boost, searcher, found)
                scores = found
            else:
                candidates = sorted(scores)
                for leaf, boost, n in leaves:
                    m = leaf.matcher(searcher, context)
                    if n <= self.SCAN_RATIO * len(candidates):
                        _add_scores(m, boost, searcher, found, only=scores)
                    else:
                        _probe_scores(m, boost, candidates, found)
                scores = {docnum: scores[docnum] + s for docnum, s in found.items()}
            if not scores:
                break
        return _ranked(scores or {}, self.boost)


class Scored(ListMatcher):
    """Documents with their final scores, in document order: what the bulk
    scorers give, and what ``TopScores`` takes in one step."""

    def remaining(self) -> tuple[list[int], list[float]]:
        return self._ids[self._i :], self._weights[self._i :]


def _ranked(scores: dict[int, float], boost: float):
    """A matcher over the scored documents, in document order."""
    if not scores:
        return NullMatcher()
    ids = sorted(scores)
    if boost != 1.0:
        return Scored(ids, [scores[d] * boost for d in ids])
    return Scored(ids, [scores[d] for d in ids])


def with_bonus(a: Scored, b) -> Scored:
    """``a``'s documents, each with ``b``'s score added where ``b`` matches
    it too: Whoosh's ``AndMaybeMatcher``, summed up front."""
    ids, scores = a.remaining()
    scores = list(scores)
    for i, score in _probe(b, ids):
        scores[i] = scores[i] + score
    return Scored(ids, scores)


def _scored(m) -> tuple[list[int], list[float], Scored] | None:
    """The remaining documents and scores of a ``Scored`` matcher, seen
    through the wrappers that only scale scores, and the matcher; None for
    anything else."""
    m, boost = _unwrapped(m, 1.0)
    if not isinstance(m, Scored):
        return None
    ids, scores = m.remaining()
    return ids, scores if boost == 1.0 else [s * boost for s in scores], m


class Unpruned(WrappingMatcher):
    """A matcher the collector may not replace with a pruned one (see
    ``search.query.Exhaustive``)."""

    _steps = 0

    def _replacement(self, newchild):
        return self.__class__(newchild)

    def replace(self, minquality=0):
        return self

    def next(self):
        # The matches a collector steps through one by one: a look at the
        # clock every few hundred (see ``search.budget``).
        self._steps += 1
        if not self._steps & 255:
            check_time()
        return self.child.next()

    def skip_to(self, docnum):
        self._steps += 1
        if not self._steps & 255:
            check_time()
        return self.child.skip_to(docnum)


#: Wrappers that pass their child's matches on, scores scaled by ``boost``.
_SCALING_WRAPPERS = (WrappingMatcher, Unpruned)


def _unwrapped(m, boost: float):
    """The matcher inside scaling wrappers, and ``boost`` times their boosts."""
    while type(m) in _SCALING_WRAPPERS:
        boost *= m.boost
        m = m.child
    return m, boost


class TopScores(TopCollector):
    """Whoosh's ``TopCollector``, taking a segment's matches in one step
    when they come scored already (``Scored``): stepping the collector
    through the thousands of matches of an any-word query cost more than
    scoring them. The same top documents, ties going to the lower number.
    """

    #: Called with (segment offset, documents) for matches taken in one
    #: step (``search.facets.Tally`` notes them).
    on_matches = None

    def set_subsearcher(self, subsearcher, offset) -> None:
        # The k-th best score so far: a segment's query that keeps only its
        # best documents (``search.pruning``) need not keep those below it.
        if len(self.items) >= self.limit:
            self.context = self.context.set(floor=self.items[0][0])
        super().set_subsearcher(subsearcher, offset)

    def collect_matches(self) -> None:
        found = _scored(self.matcher) if self.final_fn is None else None
        if found is None:
            super().collect_matches()
            return
        ids, scores, scored = found
        offset = self.offset
        # A query that kept only its best documents counts its matches.
        matches = getattr(scored, "matches", None)
        if self.on_matches is not None:
            self.on_matches(offset, ids if matches is None else matches.ids())
        self.total += len(ids) if matches is None else matches.count()
        candidates = zip(scores, [-(offset + docnum) for docnum in ids], strict=True)
        best = heapq.nlargest(self.limit, itertools.chain(self.items, candidates))
        best.reverse()  # ascending: a heap, as TopCollector keeps it
        self.items = best
        if len(best) >= self.limit:
            self.minscore = best[0][0]


def _parts(q: wq.And) -> Iterator[wq.Query]:
    """The parts of nested ``And`` queries (a clause of several words is
    itself an ``And``)."""
    for sub in q.subqueries:
        if isinstance(sub, wq.And) and sub.boost == 1.0:
            yield from _parts(sub)
        else:
            yield sub


def _leaves(q: wq.Query, boost: float, reader) -> Iterator[tuple[wq.Query, float]]:
    """The non-Or parts of nested plain ``Or`` queries, each with the boost
    the Ors above it apply.

    A prefix (a character typed alone) is its terms: Whoosh would score it
    as a union tree of up to hundreds of term matchers, stepped document by
    document; as terms, each posting list is scored in bulk. The score is
    the same sum."""
    if isinstance(q, wq.Or) and not q.minmatch and not q.scale:
        for sub in q.subqueries:
            yield from _leaves(sub, boost * q.boost, reader)
    elif isinstance(q, wq.MultiTerm):
        fieldname = q.field()
        for i, btext in enumerate(q._btexts(reader)):
            if not i & 63:
                check_time()
            yield wq.Term(fieldname, btext), boost * q.boost
    else:
        yield q, boost


def _add_scores(m, boost: float, searcher, scores: dict[int, float], only: dict[int, float] | None = None) -> None:
    """Add ``m``'s scores (times ``boost``) to ``scores``, for the documents
    in ``only`` when given."""
    term = bulk_term(m, boost, searcher)
    if term is not None:
        term.add_to(scores, only)
        return
    steps = 0
    while m.is_active():
        docnum = m.id()
        if only is None or docnum in only:
            scores[docnum] = scores.get(docnum, 0.0) + m.score() * boost
        m.next()
        steps += 1
        if not steps & 255:
            check_time()


def bulk_term(m, boost: float, searcher) -> BulkTerm | None:
    """``m`` (a term's matcher, in one segment) as a ``BulkTerm``, seen
    through the wrappers that scale its scores and the filter over deleted
    documents; None when it is not a BM25F term's postings."""
    m, boost = _unwrapped(m, boost)
    deleted = None
    if type(m) is FilterMatcher and m._exclude and m.boost == 1.0:
        # A segment with deleted documents wraps each posting list in a
        # filter that steps over them: scored in bulk here, skipping them.
        deleted = m._ids
        m, boost = _unwrapped(m.child, boost)
    scorer = getattr(m, "scorer", None) if isinstance(m, W3LeafMatcher) else getattr(m, "_scorer", None)
    if type(scorer) is not BM25FScorer or not isinstance(m, W3LeafMatcher | ListMatcher):
        return None
    if not m.is_active() or not m.term():
        return None
    fieldname, btext = m.term()
    lengths = field_lengths(searcher, fieldname)
    if lengths is None:
        return None
    reader = searcher.reader()
    info = reader.term_info(fieldname, btext)
    norms = length_norms(searcher, fieldname, lengths, scorer)
    return BulkTerm(m, boost, scorer, lengths, norms, deleted, info, long_postings(reader, fieldname, btext, m, info))


def _probe_scores(m, boost: float, candidates: list[int], scores: dict[int, float]) -> None:
    """Add ``m``'s scores for the (sorted) candidate documents, skipping to
    each: cheaper than reading a long posting list for a few candidates."""
    for i, score in _probe(m, candidates):
        docnum = candidates[i]
        scores[docnum] = scores.get(docnum, 0.0) + score * boost


def _probe(m, candidates: list[int]) -> Iterator[tuple[int, float]]:
    """(index, score) of each of the (sorted) candidate documents that
    ``m`` matches, skipping ``m`` to each in turn."""
    for i, _docnum in probe(m, candidates):
        yield i, m.score()
