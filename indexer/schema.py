"""The Whoosh schema: which fields exist and how each is analysed.

Word fields (title, body, tags, author) are scored by BM25F and keep no
positions; the gram fields (title_g, body_g) keep positions and serve exact
phrases, proximity and the fallback when segmentation disagrees. Field
weights live in the query side, not here, so they can be tuned without
rebuilding the index.
"""

from __future__ import annotations

from whoosh import columns
from whoosh.fields import COLUMN, DATETIME, ID, STORED, TEXT, Schema

from indexer.analysis import Segmentation, gram_analyzer, keyword_analyzer, word_analyzer

#: Positional gram fields, paired with the word field they shadow.
GRAM_FIELDS = {"title": "title_g", "lead": "lead_g", "body": "body_g"}
#: What a stored document carries (the input fields).
STORED_FIELDS = ("id", "url", "title", "body", "tags", "published", "source", "author")


def build_schema(seg: Segmentation | None = None) -> Schema:
    words = word_analyzer(seg)
    grams = gram_analyzer()
    return Schema(
        id=ID(stored=True, unique=True, sortable=True),
        url=STORED(),
        title=TEXT(analyzer=words, phrase=False, stored=True),
        title_g=TEXT(analyzer=grams, phrase=True),
        body=TEXT(analyzer=words, phrase=False, stored=True),
        body_g=TEXT(analyzer=grams, phrase=True),
        lead=TEXT(analyzer=words, phrase=False),
        lead_g=TEXT(analyzer=grams, phrase=True),
        # Tags are searched as words and filtered exactly (tag:...).
        tags=TEXT(analyzer=words, phrase=False, stored=True),
        tag=ID(analyzer=keyword_analyzer()),
        source=ID(analyzer=keyword_analyzer(), stored=True),
        author=TEXT(analyzer=words, phrase=False, stored=True),
        # Stored as given (date or datetime text); indexed as a datetime.
        published=STORED(),
        date=DATETIME(sortable=True),
        hash=COLUMN(columns.VarBytesColumn()),
        # Per-document values for sorting and facet counts, read by docnum
        # without decoding stored fields. Missing dates are 0 so they sort
        # last when newest comes first.
        sort_date=COLUMN(columns.NumericColumn("Q", default=0)),
        facet_tags=COLUMN(columns.VarBytesColumn()),
        facet_source=COLUMN(columns.VarBytesColumn()),
        # Near-duplicate signature (indexer.dedupe), so a later crawl is
        # checked against what is already indexed.
        dupsig=COLUMN(columns.VarBytesColumn()),
    )


#: Separates the values of a multi-valued column (tags).
VALUE_SEPARATOR = "\x1f"
