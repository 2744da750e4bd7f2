"""A search in two halves: what one index (or one shard) finds, and what
is made of the findings of one or several.

``collect`` runs a planned request on one searcher and returns its
candidates: the best ``plan.window`` documents with what ranking them
further needs (their sort key, their date, their character score), the
number of matches and the facet counts. ``rank`` puts the candidates of
every shard in one order, with ties going to the document indexed first,
and applies the re-rankings that look at the whole window (a question's
second look, the recency bonus). A single index is one shard: the engine
runs exactly these steps on it, so a sharded index, whose shards score with
the statistics of the whole corpus (``search.stats``), gives the same
answers by construction rather than by a second implementation.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from whoosh import query as wq
from whoosh import sorting
from whoosh.collectors import FilterCollector
from whoosh.searching import Results, Searcher
from whoosh.util.times import long_to_datetime

from indexer.schema import ORDER_FIELD, SegmentColumn
from search.budget import OutOfTime, out_of_time
from search.counting import query_bits
from search.facets import NewestFirst, Tally
from search.matching import TopScores
from search.pruning import ranked_top
from search.query import CompiledQuery, Exhaustive, ParsedQuery, TooExpensive, Weights, query_docs
from search.rescore import blend_unit_scores, unit_scores

#: With recent=True: how many top results are re-ranked, how fast the
#: bonus halves, and how much a brand-new article gains (x2 at most).
RESCORE_WINDOW = 200
RECENCY_HALF_LIFE_DAYS = 30.0
RECENCY_WEIGHT = 1.0


@dataclass
class Plan:
    """What a request asks of every shard, worked out once from the request
    alone (no index): the same on the coordinator and on each shard."""

    parsed: ParsedQuery
    compiled: CompiledQuery
    filter: wq.Query | None
    sort: str
    facets: bool
    size: int
    page: int
    #: How many of the best documents each shard returns.
    window: int
    recent: bool
    by_units: bool
    #: A question's characters and Latin units (``search.rescore``).
    units: list[str]
    weights: Weights

    @property
    def limit(self) -> int:
        return self.page * self.size


@dataclass
class Candidate:
    """One of a shard's best documents."""

    docnum: int
    score: float | None
    #: Sorts the candidates of every shard into the single index's order
    #: (ascending); its last part is ``order``.
    key: tuple
    #: Where the document stands in indexing order (the single index's
    #: document number): ties go to the lower.
    order: int
    #: Its ``sort_date`` (0 when undated), for the recency bonus.
    date: int = 0
    #: Its character score, for a question's second look (the head only).
    units: float | None = None
    #: Which shard it came from (set by the coordinator).
    shard: int = 0


@dataclass
class Candidates:
    """What one shard found for one request."""

    total: int
    partial: bool
    ranked: list[Candidate] = field(default_factory=list)
    #: For a question ranked by any word: how many hold every word.
    all_words: int | None = None
    facets: dict[str, Counter] | None = None
    #: A question's character scores could be worked out (some unit is in
    #: the corpus).
    units_scored: bool = False


def collect(searcher: Searcher, plan: Plan, loose: bool = False, stats: Any = None) -> Candidates:
    """Run ``plan`` (its strict query, or its any-word fallback when
    ``loose``) on one searcher. ``stats``: the corpus statistics for the
    second look (``search.stats.CorpusStats``); None reads this searcher's."""
    compiled = plan.compiled
    try:
        # Resolved to documents once: as a query, each candidate would
        # advance a union of every excluded word's terms.
        mask = query_docs(compiled.exclude, searcher) if compiled.exclude is not None else None
    except OutOfTime:
        raise TooExpensive() from None
    kwargs: dict[str, Any] = {"limit": plan.window, "filter": plan.filter, "mask": mask, "optimize": False}
    if plan.sort == "date":
        kwargs["sortedby"] = sorting.MultiFacet([NewestFirst(), sorting.ScoreFacet()])
    tally = Tally() if plan.facets else None
    q = compiled.loose if loose else compiled.strict
    # A question keeps only its best ``window`` by its first score
    # (``search.pruning``): ranked by that score alone (``TopScores``), and
    # with nothing filtered out (a filtered match would take a place among
    # them).
    if (
        not loose
        and compiled.rank_loose
        and plan.sort == "relevance"
        and plan.filter is None
        and mask is None
        and plan.window < searcher.doc_count()
    ):
        q = ranked_top(q, plan.window)
    results, partial = _run(searcher, Exhaustive(q), kwargs, tally)
    all_words = None
    if not loose and compiled.rank_loose and compiled.every is not None and not partial:
        if plan.filter is None and mask is None:
            all_words, partial = _count(searcher, compiled.every)
        else:
            counting = {**kwargs, "limit": 1, "sortedby": None}
            every, partial = _run(searcher, Exhaustive(compiled.every), counting)
            all_words = len(every)
    found = Candidates(total=len(results), partial=partial, all_words=all_words)
    found.ranked = _candidates(searcher, results, plan)
    if tally is not None:
        found.facets = tally.counts(searcher)
    if plan.by_units and not partial and not out_of_time():
        head = found.ranked[: plan.weights.question_window]
        w = plan.weights
        scores = unit_scores(searcher, [c.docnum for c in head], plan.units, w.question_k1, w.question_chars_b, stats)
        if scores is not None:
            found.units_scored = True
            for candidate, value in zip(head, scores, strict=True):
                candidate.units = value
    return found


def _candidates(searcher: Searcher, results: Results, plan: Plan) -> list[Candidate]:
    reader = searcher.reader()
    orders = SegmentColumn(reader, ORDER_FIELD) if ORDER_FIELD in reader.schema else None
    dates = SegmentColumn(reader, "sort_date") if plan.recent else None
    out = []
    for i in range(results.scored_length()):
        docnum = results.docnum(i)
        raw = results.score(i)
        order = orders[docnum] if orders is not None else docnum
        # A date-sorted hit carries its sort key, whose last part is
        # ScoreFacet's negated score.
        if isinstance(raw, tuple):
            score = -raw[-1] if raw and isinstance(raw[-1], int | float) else None
            key = (*raw, order)
        else:
            score = raw
            key = (-raw, order)
        out.append(Candidate(docnum, score, key, order, (dates[docnum] or 0) if dates is not None else 0))
    return out


@dataclass
class Ranking:
    """Every shard's candidates in one order, after the re-rankings."""

    ranked: list[Candidate]
    total: int
    partial: bool
    all_words: int | None
    facets: dict[str, Counter] | None


def rank(plan: Plan, shards: list[Candidates], now: dt.datetime) -> Ranking:
    """The candidates of every shard as the single index ranks them: by
    key (score, or date then score), ties by indexing order, the best
    ``window``; then a question's second look and the recency bonus over
    that window (both look at the window as a whole)."""
    ranked: list[Candidate] = []
    for number, found in enumerate(shards):
        for candidate in found.ranked:
            candidate.shard = number
            ranked.append(candidate)
    if len(shards) > 1:
        ranked.sort(key=lambda c: c.key)
    ranked = ranked[: plan.window]
    partial = any(found.partial for found in shards)
    counts = [found.all_words for found in shards]
    all_words = None if partial or any(c is None for c in counts) else sum(counts)
    facets = None
    if plan.facets:
        facets = {}
        for found in shards:
            for name, values in (found.facets or {}).items():
                facets.setdefault(name, Counter()).update(values)
    ranking = Ranking(ranked, sum(found.total for found in shards), partial, all_words, facets)
    if partial or out_of_time():
        # What is left of the budget goes to the page itself.
        ranking.partial = True
        return ranking
    if plan.by_units and any(found.units_scored for found in shards):
        w = plan.weights
        head = blend_unit_scores(
            [(c, c.score) for c in ranked[: w.question_window]],
            [c.units or 0.0 for c in ranked[: w.question_window]],
            w.question_chars,
        )
        for candidate, score in head:
            candidate.score = score
        ranking.ranked = [c for c, _s in head] + ranked[w.question_window :]
    if plan.recent and plan.sort == "relevance":
        ranking.ranked = by_recency(ranking.ranked, now)
    return ranking


def by_recency(ranked: list[Candidate], now: dt.datetime) -> list[Candidate]:
    """Relevance times (1 + w * 0.5 ** (age / half-life)): fresh articles
    rise, old ones keep their relevance; undated ones get no bonus."""
    for candidate in ranked:
        bonus = 0.0
        if candidate.date:
            age = max(0.0, (now - long_to_datetime(candidate.date)).total_seconds() / 86400)
            bonus = RECENCY_WEIGHT * 0.5 ** (age / RECENCY_HALF_LIFE_DAYS)
        candidate.score = round((candidate.score or 0.0) * (1 + bonus), 4)
    return sorted(ranked, key=lambda c: -c.score)


def _run(searcher: Searcher, q: wq.Query, kwargs: dict[str, Any], tally: Tally | None = None) -> tuple[Results, bool]:
    """``searcher.search(q, **kwargs)``, and whether the time budget ended
    it early (the results then hold what was collected by then). A ranking
    by score alone goes to ``TopScores``, which takes bulk-scored matches
    in one step. ``tally`` notes every match, for facets."""
    limit = kwargs["limit"]
    if kwargs.get("sortedby") or limit >= searcher.doc_count():
        collector = searcher.collector(**kwargs)
    else:
        collector = TopScores(limit, usequality=False)
        if kwargs.get("filter") or kwargs.get("mask"):
            collector = FilterCollector(collector, kwargs.get("filter"), kwargs.get("mask"))
    if tally is not None:
        tally.attach(collector)
    try:
        searcher.search_with_collector(q, collector)
    except OutOfTime:
        return collector.results(), True
    return collector.results(), False


def _count(searcher: Searcher, q: wq.Query) -> tuple[int, bool]:
    """How many documents ``q`` matches, counted without scoring them, and
    whether the time budget ended the count (then 0)."""
    try:
        return sum(query_bits(q, sub).bit_count() for sub, _offset in searcher.leaf_searchers()), False
    except OutOfTime:
        return 0, True
