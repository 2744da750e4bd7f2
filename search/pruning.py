"""A question's best documents without scoring every document it matches.

A question is ranked by any of its words and every bigram of its text, so
it matches most of an index: 保险, 可以 and 一个 each hold half of the
InsuranceQA answers or more. Scoring each of those matches cost two thirds
of a question's time, yet only the best ``k`` (the re-ranking window) are
kept. MaxScore (Turtle and Flood, 1995) keeps exactly those: a term cannot
add more to a document than its bound (its highest frequency in its
shortest field), so

* the terms with the highest bounds (the rarer ones) are scored in full
  first, while a document that holds none of them could still reach the
  ``k``-th best score found so far;
* from then on no new document can, and the remaining terms (the common
  ones, with long posting lists) are only looked up for the documents
  found so far, dropping each one whose score plus the bounds of the
  terms left falls below the ``k``-th best.

Every document that may be in the top ``k`` keeps its exact score, summed
term by term in the query's own order, so the scores are the very floats
exhaustive scoring gives (``AnyWord``), and so are the top ``k`` and their
order. The decisions to drop allow a margin far wider than rounding.
"""

from __future__ import annotations

import heapq
import math

from whoosh import query as wq

from search.counting import MatchCount
from search.matching import AnyWord, BulkTerm, Scored, _add_scores, _leaves, _ranked, bulk_term


class TopAnyWord(AnyWord):
    """``AnyWord``'s best ``top`` documents in each segment, with their
    exact scores (see the module), and the number of documents it matches.

    Only for a ranking that keeps the best ``top`` by this query's score
    alone: nothing may add to the scores afterwards, and nothing may filter
    the matches (a filtered-out document would count towards the ``k``-th
    best score). ``context.floor``, when the collector sets it, is a score
    the ``top``-th best already reaches (from the segments it collected).
    """

    def __init__(self, subqueries, boost: float = 1.0, top: int = 10) -> None:
        super().__init__(subqueries, boost=boost)
        self.top = top

    def __eq__(self, other) -> bool:
        return super().__eq__(other) and self.top == other.top

    def __hash__(self) -> int:
        return super().__hash__() ^ hash(self.top)

    def matcher(self, searcher, context=None):
        reader = searcher.reader()
        terms: list[BulkTerm] = []
        others = []
        for leaf, boost in _leaves(self, 1.0, reader):
            m = leaf.matcher(searcher, context)
            if not m.is_active():
                continue
            term = bulk_term(m, boost, searcher)
            if term is None:
                others.append((m, boost))
            else:
                terms.append(term)
        if others or self.boost != 1.0:
            # Not all BM25F terms: no bound for the rest, every match scored.
            scores: dict[int, float] = {}
            for term in terms:
                term.add_to(scores)
            for m, boost in others:
                _add_scores(m, boost, searcher, scores)
            return _ranked(scores, self.boost)
        floor = getattr(context, "floor", None) if context is not None else None
        scores, seen = best_scores(terms, self.top, floor)
        ids = sorted(scores)
        return TopScored(ids, [scores[d] for d in ids], MatchCount(searcher, terms, seen))


class TopScored(Scored):
    """The documents that may be among a segment's best, with their exact
    scores; ``matches`` counts every document the query matched there."""

    def __init__(self, ids, scores, matches: MatchCount) -> None:
        super().__init__(ids, scores)
        self.matches = matches


def best_scores(
    terms: list[BulkTerm], k: int, floor: float | None = None
) -> tuple[dict[int, float], list[dict[int, float] | None]]:
    """The exact scores of a set of documents that holds every document
    among the ``k`` best by the sum of ``terms`` (ties included); and, for
    each term read in full, its documents (None for the others).

    ``floor``: a score the ``k``-th best is known to reach."""
    n = len(terms)
    bounds = [term.bound() for term in terms]
    order = sorted(range(n), key=lambda i: (-bounds[i], terms[i].size()))
    found: list[dict[int, float]] = [{} for _ in terms]
    threshold = -math.inf if floor is None else floor
    running: dict[int, float] = {}
    pos = 0
    # Every posting of the terms with the highest bounds, while a document
    # none of them holds could still reach the k-th best.
    while pos < n:
        rest = math.fsum(bounds[i] for i in order[pos:])
        if len(running) >= k and max(running.values()) > rest:
            # (The k-th best is at most the best: no need to look before.)
            threshold = _kth(running, k, threshold)
        if _below(rest, threshold):
            break
        i = order[pos]
        terms[i].add_each(found[i], running)
        pos += 1
    read = set(order[:pos])
    complete: list[dict[int, float] | None] = [found[i] if i in read else None for i in range(n)]
    # The other terms, only for the documents that can still get there.
    for i in order[pos:]:
        rest = math.fsum(bounds[j] for j in order[pos:])
        pos += 1
        threshold = _kth(running, k, threshold)
        least = _least(threshold, rest)
        running = {d: s for d, s in running.items() if s >= least}
        if not running:
            break
        terms[i].add_for(running, found[i])
        for docnum, score in found[i].items():
            running[docnum] += score
    least = _least(_kth(running, k, threshold), 0.0)
    exact: dict[int, float] = {}
    for docnum, score in running.items():
        if score < least:
            continue
        # Summed in the query's order, as exhaustive scoring sums them.
        total = 0.0
        for scores in found:
            s = scores.get(docnum)
            if s is not None:
                total = total + s
        exact[docnum] = total
    return exact, complete


def _kth(running: dict[int, float], k: int, threshold: float) -> float:
    """``threshold``, or the ``k``-th best running score when higher."""
    if len(running) < k:
        return threshold
    return max(threshold, heapq.nlargest(k, running.values())[-1])


def _below(bound: float, threshold: float) -> bool:
    """Whether a score of at most ``bound`` is surely below ``threshold``."""
    return bound < _least(threshold, 0.0)


def _least(threshold: float, rest: float) -> float:
    """The least partial score from which ``rest`` more may reach
    ``threshold``, with a margin far wider than the rounding of sums taken
    in another order (scores and bounds are positive)."""
    return threshold - rest - 1e-9 * (1.0 + abs(threshold) + rest)


def ranked_top(q: wq.Query, k: int) -> wq.Query:
    """``q`` with its any-word ranking asking for the best ``k`` only, seen
    through the wrappers that pass scores on unchanged."""
    from search.query import Exhaustive, Weighted

    if type(q) is AnyWord:
        return TopAnyWord(q.subqueries, boost=q.boost, top=k)
    if isinstance(q, Weighted | Exhaustive):
        return q._rewrap(ranked_top(q.child, k))
    return q
