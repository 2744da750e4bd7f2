"""The Whoosh schema: which fields exist and how each is analysed.

Word fields (title, body, tags, author) are scored by BM25F and keep no
positions; the gram fields (title_g, body_g) keep positions and serve exact
phrases, proximity and the fallback when segmentation disagrees. Field
weights live in the query side, not here, so they can be tuned without
rebuilding the index.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterator
from pickle import dumps

from whoosh import columns
from whoosh.fields import COLUMN, DATETIME, ID, STORED, TEXT, Schema
from whoosh.system import pack_uint

from indexer.analysis import (
    LINE_GAP as LINE_GAP,  # the gap between lines' positions, part of this schema's layout
)
from indexer.analysis import (
    LONG_TEXT_CHARS,
    Segmentation,
    gram_analyzer,
    gram_chunks,
    index_words,
    keyword_analyzer,
    normalize,
    segmentation_of_analyzer,
    text_pieces,
    word_analyzer,
)

Posting = tuple[bytes, int, float, bytes]


class WordField(TEXT):
    """A word field (BM25F-scored, no positions) that indexes a text by
    counting ``index_words`` directly: the same terms and frequencies as its
    analyzer chain, without Whoosh building a token object per word."""

    def index(self, value, **kwargs) -> Iterator[Posting]:
        if not isinstance(value, str) or kwargs.get("mode", "index") != "index":
            yield from super().index(value, **kwargs)
            return
        boost = self.format.field_boost
        seg = segmentation_of_analyzer(self.analyzer)
        if len(value) <= LONG_TEXT_CHARS:
            counts = Counter(index_words(value, seg))
        else:
            counts = Counter()
            for piece in text_pieces(value):
                counts.update(index_words(piece, seg))
        for word, freq in counts.items():
            if freq < len(_FREQ_VALUES) and boost == 1.0:
                # Shared objects: a build pools millions of these.
                yield word.encode("utf-8"), freq, _FREQ_WEIGHTS[freq], _FREQ_VALUES[freq]
            else:
                yield word.encode("utf-8"), freq, freq * boost, pack_uint(freq)


class GramField(TEXT):
    """A positional gram field indexed straight from ``gram_chunks`` (the
    same terms and positions as its analyzer, ``GramTokenizer``); the
    values are Whoosh's ``Positions`` encoding."""

    def index(self, value, **kwargs) -> Iterator[Posting]:
        if not isinstance(value, str) or kwargs.get("mode", "index") != "index":
            yield from super().index(value, **kwargs)
            return
        boost = self.format.field_boost
        for positions in partitioned_gram_positions(normalize(value)):
            yield from _gram_postings(positions, boost)


#: Grams of a long text given positions at once (some 25 MB of them).
PART_GRAMS = 100_000


def partitioned_gram_positions(normalized: str, part_grams: int = PART_GRAMS) -> Iterator[dict[str, list[int]]]:
    """The positions of each gram of a text, for one share of its grams at
    a time (by hash; a text under ``part_grams`` is one share): a text of a million distinct grams needs
    a dictionary as large, but its shares need only a part each. Every
    share reads the whole text again, a few seconds for 5 MB."""
    parts = len(normalized) // part_grams + 1
    for part in range(parts):
        positions: defaultdict[str, list[int]] = defaultdict(list)
        for base, grams in gram_chunks(normalized):
            for pos, gram in enumerate(grams, base):
                if parts == 1 or hash(gram) % parts == part:
                    positions[gram].append(pos)
        yield positions


def _gram_postings(positions: dict[str, list[int]], boost: float) -> Iterator[Posting]:
    """Postings in ``Positions`` encoding from each gram's positions."""
    for gram, poslist in positions.items():
        if len(poslist) == 1 and poslist[0] < len(_ONE_POSITION):
            yield gram.encode("utf-8"), 1, boost, _ONE_POSITION[poslist[0]]
            continue
        deltas = [poslist[0]] + [b - a for a, b in zip(poslist, poslist[1:], strict=False)]
        freq = len(poslist)
        weight = _FREQ_WEIGHTS[freq] if freq < len(_FREQ_WEIGHTS) and boost == 1.0 else freq * boost
        yield gram.encode("utf-8"), freq, weight, pack_uint(len(deltas)) + dumps(deltas, 2)


#: ``Positions.encode([p])`` for the positions most grams have: most occur
#: once in a document.
_ONE_POSITION = [pack_uint(1) + dumps([p], 2) for p in range(8192)]
#: ``Frequency`` weights and values of the frequencies most words have.
_FREQ_WEIGHTS = [float(f) for f in range(256)]
_FREQ_VALUES = [pack_uint(f) for f in range(256)]


#: Positional gram fields, paired with the word field they shadow.
GRAM_FIELDS = {"title": "title_g", "lead": "lead_g", "body": "body_g"}
#: What a stored document carries (the input fields).
STORED_FIELDS = ("id", "url", "title", "body", "tags", "published", "source", "author", "crawled", "crawl_url")
#: Of those, the crawl metadata: not content (left out of the content hash).
CRAWL_FIELDS = ("crawled", "crawl_url")
#: Fields later versions added: an index built before them has none, and
#: documents written into it go without.
LATER_FIELDS = (*CRAWL_FIELDS, "site", "facet_site")


#: The column of a shard's documents that gives their place in indexing
#: order across the whole sharded index (a single index's document number).
ORDER_FIELD = "order"


def build_schema(seg: Segmentation | None = None, sharded: bool = False) -> Schema:
    """The schema of an index, or of one shard of a sharded index (which
    also keeps each document's ``ORDER_FIELD``)."""
    words = word_analyzer(seg)
    grams = gram_analyzer()
    schema = Schema(
        id=ID(stored=True, unique=True, sortable=True),
        url=STORED(),
        title=WordField(analyzer=words, phrase=False, stored=True),
        title_g=GramField(analyzer=grams, phrase=True),
        body=WordField(analyzer=words, phrase=False, stored=True),
        body_g=GramField(analyzer=grams, phrase=True),
        lead=WordField(analyzer=words, phrase=False),
        lead_g=GramField(analyzer=grams, phrase=True),
        # Tags are searched as words and filtered exactly (tag:...).
        tags=WordField(analyzer=words, phrase=False, stored=True),
        tag=ID(analyzer=keyword_analyzer()),
        source=ID(analyzer=keyword_analyzer(), stored=True),
        # The host, or the top folder a page was indexed from: filtered
        # exactly (site:...), counted, and shown under each title.
        site=ID(analyzer=keyword_analyzer(), stored=True),
        author=WordField(analyzer=words, phrase=False, stored=True),
        # Stored as given (date or datetime text); indexed as a datetime.
        published=STORED(),
        date=DATETIME(sortable=True),
        # Crawl metadata: when the page was fetched (WARC-Date), and from
        # where when that is not its canonical url (so --prune can match a
        # web archive's revisit record to it).
        crawled=STORED(),
        crawl_url=STORED(),
        hash=COLUMN(columns.VarBytesColumn()),
        # Per-document values for sorting and facet counts, read by docnum
        # without decoding stored fields. Missing dates are 0 so they sort
        # last when newest comes first.
        sort_date=COLUMN(columns.NumericColumn("Q", default=0)),
        facet_tags=COLUMN(columns.VarBytesColumn()),
        facet_source=COLUMN(columns.VarBytesColumn()),
        facet_site=COLUMN(columns.VarBytesColumn()),
        # Near-duplicate signature (indexer.dedupe), so a later crawl is
        # checked against what is already indexed.
        dupsig=COLUMN(columns.VarBytesColumn()),
    )
    if sharded:
        schema.add(ORDER_FIELD, COLUMN(columns.NumericColumn("Q", default=0)))
    return schema


#: Separates the values of a multi-valued column (tags).
VALUE_SEPARATOR = "\x1f"


class SegmentColumn:
    """One column of a whole index, read segment by segment.

    Whoosh's ``MultiReader.column_reader`` leaves out the segments that
    have no file for the column (none of their documents had a value, or
    they were written before the field existed) and then numbers the
    documents after them wrongly: an undated first segment made every date
    lookup of a recency ranking read past the end. Here a segment without
    the column gives ``None`` for its documents.
    """

    def __init__(self, reader, name: str) -> None:
        self._offsets: list[int] = []
        self._columns: list = []
        for leaf, offset in reader.leaf_readers():
            self._offsets.append(offset)
            present = name in leaf.schema and leaf.has_column(name)
            self._columns.append(leaf.column_reader(name) if present else None)

    def __getitem__(self, docnum: int):
        i = bisect_right(self._offsets, docnum) - 1
        column = self._columns[i]
        return None if column is None else column[docnum - self._offsets[i]]
