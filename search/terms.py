"""One BM25F term's postings in one segment, scored in bulk.

``BulkTerm`` computes the scores ``whoosh.scoring.bm25`` gives, term for
term (so the floats are the same), a posting block at a time, with each
field's lengths read once per segment; it knows the largest score any of
its postings can have (for ``search.pruning``).

The posting lists of common words are long (保险: 11,000 of 13,000
InsuranceQA answers in a segment, 86 blocks) and a question asks for some
of them nearly every time; decoding their blocks (unzip, unpickle, sum the
document number deltas) was most of what looking up a few hundred
documents in them cost. Such a list is kept decoded with its segment's
reader (a segment never changes), as two compact arrays, within a byte
budget.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from whoosh.matching import ListMatcher
from whoosh.util.numeric import byte_to_length

from indexer.codec import LeanTermsReader, length_bytes
from search.budget import check_time

#: ``byte_to_length`` for every byte value (field lengths are stored as one).
_LENGTHS = [byte_to_length(b) for b in range(256)]
#: Posting lists at least this long are kept decoded (``long_postings``).
LONG_POSTINGS = 1024
#: Read a posting list whole rather than look each candidate up in it
#: when it holds at most this many postings per candidate (as
#: ``search.matching.AllWords``); a decoded list is looked up by bisection.
SCAN_RATIO = 4
DECODED_SCAN_RATIO = 16
#: Bytes of decoded posting lists kept per segment reader, the least
#: recently used dropped first (12 bytes a posting).
LONG_POSTINGS_BYTES = 16 << 20


class BulkTerm:
    """A term's postings in one segment, scored in bulk (see the module)."""

    __slots__ = (
        "matcher",
        "boost",
        "idf",
        "avgfl",
        "b",
        "k1",
        "lengths",
        "norms",
        "deleted",
        "info",
        "decoded",
        "_read",
    )

    def __init__(
        self,
        matcher,
        boost: float,
        scorer,
        lengths: list[int],
        norms: list[float],
        deleted,
        info,
        decoded: tuple[array, array] | None = None,
    ) -> None:
        self.matcher = matcher
        self.boost = boost
        self.idf, self.avgfl, self.b, self.k1 = scorer.idf, scorer.avgfl, scorer.B, scorer.K1
        self.lengths = lengths
        self.norms = norms
        self.deleted = deleted
        self.info = info
        #: (documents, weights) of the whole list, when kept decoded.
        self.decoded = decoded
        self._read = False

    def _postings(self):
        """The matcher, at the start of the postings (each read starts
        there)."""
        m = self.matcher
        if self._read and not isinstance(m, ListMatcher):
            m.reset()
        self._read = True
        return m

    def score(self, tf: float, length: int) -> float:
        """One posting's score, times the boost: the same float as
        ``add_to`` adds."""
        k1 = self.k1
        s = self.idf * ((tf * (k1 + 1)) / (tf + k1 * ((1 - self.b) + self.b * length / self.avgfl)))
        return s * self.boost

    def size(self) -> int:
        return self.info.doc_frequency()

    def bound(self) -> float:
        """No posting of the term scores more (the whole score, boost
        included): its highest frequency in its shortest field, as the
        term's dictionary entry records them. BM25 rises with the frequency
        and falls with the length, and so does each floating-point step of
        ``score``. The entry keeps the frequency as a 32-bit float, so it is
        taken a little higher; with the length normalization off the length
        does not lower the bound."""
        tf = self.info.max_weight() * (1 + 1e-6)
        length = self.info.min_length() if self.b > 0 else 0
        return self.score(tf, length)

    def add_to(self, scores: dict[int, float], only=None) -> None:
        """Add the score of each posting to ``scores`` (those of the
        documents in ``only`` when given)."""
        idf, k1, boost = self.idf, self.k1, self.boost
        norms, deleted = self.norms, self.deleted
        get = scores.get
        blocks = (self.decoded,) if self.decoded is not None else _blocks(self._postings())
        k1p = k1 + 1
        every = only is None and not deleted
        for ids, weights in blocks:
            check_time()
            # whoosh.scoring.bm25, term for term, so the scores are the same.
            if every:
                for docnum, tf in zip(ids, weights, strict=True):
                    scores[docnum] = get(docnum, 0.0) + (idf * ((tf * k1p) / (tf + norms[docnum]))) * boost
                continue
            for docnum, tf in zip(ids, weights, strict=True):
                if (only is not None and docnum not in only) or (deleted and docnum in deleted):
                    continue
                scores[docnum] = get(docnum, 0.0) + (idf * ((tf * k1p) / (tf + norms[docnum]))) * boost

    def add_each(self, scores: dict[int, float], running: dict[int, float]) -> None:
        """Set each posting's score in ``scores`` (empty: a term holds a
        document once, so the score is the same float ``add_to`` would
        leave there) and add it to ``running`` too, in one pass."""
        idf, k1, boost = self.idf, self.k1, self.boost
        norms, deleted = self.norms, self.deleted
        k1p = k1 + 1
        get = running.get
        blocks = (self.decoded,) if self.decoded is not None else _blocks(self._postings())
        for ids, weights in blocks:
            check_time()
            for docnum, tf in zip(ids, weights, strict=True):
                if deleted and docnum in deleted:
                    continue
                # whoosh.scoring.bm25, term for term, so the scores are the same.
                s = scores[docnum] = (idf * ((tf * k1p) / (tf + norms[docnum]))) * boost
                running[docnum] = get(docnum, 0.0) + s

    def add_for(self, candidates: dict[int, float], scores: dict[int, float]) -> None:
        """Set ``scores[d]`` for each of the ``candidates`` the term holds:
        reading the whole list, or looking each one up, whichever costs
        less."""
        ratio = DECODED_SCAN_RATIO if self.decoded is not None else SCAN_RATIO
        if self.size() <= ratio * len(candidates):
            self.add_to(scores, only=candidates)
        else:
            self.probe(sorted(candidates), scores)

    def probe(self, candidates: list[int], scores: dict[int, float]) -> None:
        """Set ``scores[d]`` for each of the (sorted) ``candidates`` the
        term holds, skipping through the postings to each: cheaper than
        reading a long list for a few candidates."""
        deleted, lengths = self.deleted, self.lengths
        if self.decoded is not None:
            ids, weights = self.decoded
            end = len(ids)
            at = 0
            for docnum in candidates:
                at = bisect_left(ids, docnum, at)
                if at == end:
                    return
                if ids[at] == docnum and not (deleted and docnum in deleted):
                    scores[docnum] = self.score(weights[at], lengths[docnum])
            return
        m = self._postings()
        if isinstance(m, ListMatcher):
            wanted = set(candidates)
            for docnum, tf in zip(*next(_blocks(m)), strict=True):
                if docnum in wanted and not (deleted and docnum in deleted):
                    scores[docnum] = self.score(tf, lengths[docnum])
            return
        for _i, docnum in probe(m, candidates):
            if not (deleted and docnum in deleted):
                scores[docnum] = self.score(m.weight(), lengths[docnum])


def probe(m, candidates: list[int]) -> Iterator[tuple[int, int]]:
    """(index, document) of each of the (sorted) candidate documents that
    ``m`` matches, skipping ``m`` to each in turn (``m`` stays on it)."""
    for i, docnum in enumerate(candidates):
        if not i & 255:
            check_time()
        if not m.is_active():
            return
        if m.id() < docnum:
            m.skip_to(docnum)
            if not m.is_active():
                return
        if m.id() == docnum:
            yield i, docnum


def cached(cache: OrderedDict, key):
    """``cache[key]`` marked as the most recently used, or None.

    The per-segment caches are shared by a serving worker's requests and
    its refresher thread (which answers recent queries again for a new
    commit), so an entry can be dropped between the look and the mark."""
    found = cache.get(key)
    if found is not None:
        try:
            cache.move_to_end(key)
        except KeyError:
            pass
    return found


def long_postings(reader, fieldname: str, btext: bytes, m, info) -> tuple[array, array] | None:
    """A long posting list's (documents, weights), decoded once and kept
    with the segment's reader (see the module); None for a shorter one.
    ``m``: a fresh matcher over the list."""
    if info.doc_frequency() < LONG_POSTINGS or isinstance(m, ListMatcher):
        return None
    cache: OrderedDict = reader.__dict__.setdefault("_zhsearch_postings", OrderedDict())
    key = (fieldname, btext)
    found = cached(cache, key)
    if found is not None:
        return found
    ids = array("i")
    # Weights as the matcher reads them (32-bit floats where a block
    # stores one weight for all), kept exactly.
    weights = array("d")
    for block_ids, block_weights in _blocks(m):
        check_time()
        ids.extend(block_ids)
        weights.extend(block_weights if type(block_weights) is not array else block_weights.tolist())
    m.reset()
    found = cache[key] = (ids, weights)
    used = reader.__dict__.get("_zhsearch_postings_bytes", 0) + 12 * len(ids)
    while used > LONG_POSTINGS_BYTES and len(cache) > 1:
        _key, (old_ids, _w) = cache.popitem(last=False)
        used -= 12 * len(old_ids)
    reader.__dict__["_zhsearch_postings_bytes"] = used
    return found


def posting_id_blocks(m) -> Iterator[Sequence[int]]:
    """The documents of a leaf matcher's postings (deleted ones too), a
    block at a time, without reading the weights."""
    if isinstance(m, ListMatcher):
        yield m._ids
        return
    while m.is_active():
        check_time()
        if m._ids is None:
            m._read_ids()
        yield m._ids[m._i :]
        m._i = m._blocklength
        m._next_block()


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


def length_norms(searcher, fieldname: str, lengths: list[int], scorer) -> list[float]:
    """BM25's length part, ``k1 * ((1 - b) + b * length / avgfl)``, for
    every document of ``lengths`` (``field_lengths``): the same floats the
    scoring formula computes (the same operations in the same order), once
    per segment, field and commit instead of once per posting. Kept with
    the segment's reader for the latest average length (a commit changes
    it)."""
    avgfl, b, k1 = scorer.avgfl, scorer.B, scorer.K1
    cache = searcher.reader().__dict__.setdefault("_zhsearch_norms", {})
    found = cache.get(fieldname)
    if found is not None and found[0] == (avgfl, b, k1):
        return found[1]
    norms = [k1 * ((1 - b) + b * length / avgfl) for length in lengths]
    cache[fieldname] = ((avgfl, b, k1), norms)
    return norms


def doc_frequencies(reader, fieldname: str, prefix: str = "") -> Iterator[tuple[bytes, int]]:
    """(term bytes, document frequency) of a segment's terms in
    ``fieldname`` that start with ``prefix``: from the compact terms file's
    first bytes of each entry where the segment has one (a question's
    characters start thousands of grams between them, and the did-you-mean
    table reads every word), else through each term's info."""
    if fieldname not in reader.schema:
        return iter(())
    terms = getattr(reader, "_terms", None)
    if isinstance(terms, LeanTermsReader):
        return terms.doc_frequencies(fieldname, reader.schema[fieldname].to_bytes(prefix) if prefix else b"")
    items = reader.iter_prefix(fieldname, prefix) if prefix else reader.iter_field(fieldname)
    return ((term, info.doc_frequency()) for term, info in items)


def field_lengths(searcher, fieldname: str) -> list[int] | None:
    """Every document's length in ``fieldname`` in this segment (0 where
    it has none), decoded once per segment reader; None when the searcher
    is not over a single segment."""
    reader = searcher.reader()
    if not hasattr(reader, "_perdoc"):
        return None
    cache = reader.__dict__.setdefault("_zhsearch_lengths", {})
    lengths = cache.get(fieldname)
    if lengths is None:
        lengths = [_LENGTHS[b] for b in length_bytes(reader._perdoc, fieldname, reader.doc_count_all())]
        cache[fieldname] = lengths
    return lengths
