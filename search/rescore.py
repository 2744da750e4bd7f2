"""A second look at a question's best results, character by character.

A question and its answers often name one thing with different words:
房主保险, 房屋保险 and 家庭保险 for home insurance, 人寿保险 and 寿险 for life
insurance, 残疾 and 伤残. Whole words and bigrams miss what such pairs
share; their characters do not. Scoring every document by its characters
would need a posting per character and document, a large part again of
the index; a question's first results are few, so their characters are
counted from their stored text instead, and the top ``question_window``
are re-ranked by a blend of both scores, as Elasticsearch's rescore
re-ranks a window of top hits.

Character document frequencies come from the gram lexicon: each character
of a CJK run starts exactly one gram (a bigram, or itself at the end of
the run), so the documents holding a character are at most the sum of the
document frequencies of the grams it starts. For the characters that
matter (the rarer ones) the sum is close; common ones saturate at the
document count either way.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any, TypeVar

from whoosh.scoring import bm25
from whoosh.searching import Searcher

from indexer.analysis import gram_units, is_cjk, non_cjk_units, normalize
from indexer.schema import GRAM_FIELDS
from search.scoring import rsj_idf
from search.terms import cached, doc_frequencies, field_lengths

#: The gram fields whose lexicon gives character statistics, and whose
#: text (title and body) a candidate is scored on.
_STAT_FIELDS = (GRAM_FIELDS["title"], GRAM_FIELDS["body"])

T = TypeVar("T")


def question_units(words: Sequence[str]) -> list[str]:
    """The distinct characters (and Latin or number units) of a question's
    content words (``search.query.content_words``): question words and
    particles (什么, 吗) say nothing about what is asked."""
    return list(dict.fromkeys(u for word in words for u, _start, _end in gram_units(word)))


def unit_document_frequency(searcher: Searcher, unit: str) -> int:
    """How many documents hold ``unit`` in their title or body (an upper
    bound for a CJK character; see the module)."""
    return min(unit_gram_frequency(searcher, unit), searcher.doc_count_all())


def unit_gram_frequency(searcher: Searcher, unit: str) -> int:
    """The document frequencies of the grams ``unit`` starts, added up,
    remembered per reader: not yet capped at the document count, so that
    a sharded index can add up its shards' figures first."""
    reader = searcher.reader()
    cache = reader.__dict__.setdefault("_zhsearch_unit_df", {})
    df = cache.get(unit)
    if df is None:
        df = 0
        for sub, _offset in searcher.leaf_searchers():
            leaf = sub.reader()
            for fieldname in _STAT_FIELDS:
                if is_cjk(unit):
                    # The grams the character starts: with the next one,
                    # or alone where its run ends.
                    df += sum(df for _term, df in doc_frequencies(leaf, fieldname, unit))
                elif (fieldname, unit) in leaf:
                    df += leaf.doc_frequency(fieldname, unit)
        cache[unit] = df
    return df


def unit_scores(
    searcher: Searcher,
    docnums: Sequence[int],
    units: Sequence[str],
    k1: float,
    b: float,
    stats: Any = None,
) -> list[float] | None:
    """Each document's character score: BM25 over ``units`` in its title
    and body. None when no unit is in the corpus (nothing to re-rank by).
    ``stats`` (``search.stats.CorpusStats``): the whole corpus's unit
    document frequencies and lengths, for a shard; None reads this
    searcher's."""
    if not docnums or not units:
        return None
    if stats is None:
        total = searcher.doc_count_all()
        frequency = {unit: unit_gram_frequency(searcher, unit) for unit in units}
    else:
        total = stats.doc_count_all
        frequency = {unit: stats.units.get(unit, 0) for unit in units}
    idf = {}
    for unit in units:
        n = min(frequency[unit], total)
        if n:
            idf[unit] = rsj_idf(n, total)
    if not idf:
        return None
    avg = sum(searcher.avg_field_length(f) for f in _STAT_FIELDS) or 1.0
    chars = [u for u in idf if is_cjk(u)]
    others = [u for u in idf if not is_cjk(u)]
    out = []
    for text, length in candidate_texts(searcher, docnums):
        # A character is counted where it stands; a Latin or number unit
        # only as a whole unit ("shop" is not in "shopping").
        counts = {u: text.count(u) for u in chars}
        if others:
            found = Counter(non_cjk_units(text))
            counts.update((u, found[u]) for u in others)
        out.append(sum(bm25(idf[u], tf, length, avg, b, k1) for u, tf in counts.items() if tf))
    return out


def blend_unit_scores(
    ranked: Sequence[tuple[T, float | None]], scores: Sequence[float], weight: float
) -> list[tuple[T, float]]:
    """``ranked`` re-ordered by score + ``weight`` × the top score × the
    character score relative to the best of the window.

    Both scores are taken relative to their best in the window, so the
    blend does not depend on how large either happens to be for this
    question; the result stays on the scale of the first score.
    """
    if not ranked:
        return []
    top = max((s or 0.0) for _d, s in ranked) or 1.0
    best = max(scores) or 1.0
    blended = [
        (item, (score or 0.0) + weight * top * unit_score / best)
        for (item, score), unit_score in zip(ranked, scores, strict=True)
    ]
    blended.sort(key=lambda item: -item[1])
    return blended


#: Characters of normalized candidate texts kept per segment reader (the
#: least recently used dropped first): about 8 MB.
TEXT_CACHE_CHARS = 4_000_000


def candidate_texts(searcher: Searcher, docnums: Sequence[int]) -> list[tuple[str, int]]:
    """The normalized title and body of each document, with its length in
    the title and body gram fields.

    Normalizing (width, case, script) was the larger part of a second
    look, and the same answers come up for many questions: the texts are
    kept with their segment's reader (a segment never changes), within
    ``TEXT_CACHE_CHARS``, and the lengths read from the segment's length
    arrays."""
    leaves = searcher.leaf_searchers()
    starts = [offset for _sub, offset in leaves]
    out = []
    for docnum in docnums:
        sub, offset = leaves[bisect_right(starts, docnum) - 1]
        reader = sub.reader()
        cache: OrderedDict = reader.__dict__.setdefault("_zhsearch_texts", OrderedDict())
        local = docnum - offset
        found = cached(cache, local)
        if found is not None:
            out.append(found)
            continue
        stored = sub.stored_fields(local)
        text = normalize("\n".join(x for x in (stored.get("title"), stored.get("body")) if x))
        lengths = [field_lengths(sub, f) for f in _STAT_FIELDS]
        if all(each is not None for each in lengths):
            length = sum(each[local] for each in lengths)
        else:
            length = sum(sub.doc_field_length(local, f, 0) or 0 for f in _STAT_FIELDS)
        found = cache[local] = (text, length)
        used = reader.__dict__.get("_zhsearch_texts_chars", 0) + len(text)
        while used > TEXT_CACHE_CHARS and len(cache) > 1:
            used -= len(cache.popitem(last=False)[1][0])
        reader.__dict__["_zhsearch_texts_chars"] = used
        out.append(found)
    return out
