"""The words an index's titles use most, for examples that fit the index
(the search box's placeholder): a fixed phrase about one subject reads as
nonsense over a crawl of software manuals."""

from __future__ import annotations

import re
import weakref
from collections import Counter
from typing import Any

#: A word worth offering: two or more CJK characters, or a Latin word of
#: three letters or more (single characters and numbers say nothing).
_WORDLIKE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]{2,}|[a-z][a-z0-9+#.-]{2,}")
#: How many of the most frequent title terms to consider.
_CANDIDATES = 60

#: Per engine: the index commit and limit the words were taken at, and the words.
_cache: weakref.WeakKeyDictionary[Any, tuple[tuple[str | None, int], list[str]]] = weakref.WeakKeyDictionary()


def title_frequencies(reader: Any) -> Counter:
    """title term -> documents holding it."""
    return Counter({term: reader.doc_frequency("title", term) for term in reader.field_terms("title")})


def frequent_title_words(frequencies: Counter, limit: int = 3) -> list[str]:
    """The ``limit`` title words most documents hold (``frequencies``: from
    ``title_frequencies``), longest form only: jieba's search mode also
    indexes the parts of a word (亚马 of 亚马逊), so a term inside a
    candidate held by as many documents is dropped."""
    counts = [(n, term) for term, n in frequencies.items()]
    candidates = sorted(
        ((n, term) for n, term in counts if _WORDLIKE.fullmatch(term)),
        key=lambda pair: (-pair[0], -len(pair[1]), pair[1]),
    )[:_CANDIDATES]
    words = [
        term for n, term in candidates if not any(term != other and term in other and m >= n for m, other in candidates)
    ]
    return words[:limit]


def cached_frequent_title_words(engine: Any, limit: int = 3) -> list[str]:
    """``frequent_title_words`` of the engine's live index, computed again
    only when the engine's tables are (a few thousand terms: on every page
    view, or every commit, it adds up)."""
    engine.doc_count()  # notices a new commit
    key = (engine.tables_version, limit)
    cached = _cache.get(engine)
    if cached is not None and cached[0] == key:
        return cached[1]
    words = frequent_title_words(engine.title_frequencies(), limit)
    _cache[engine] = (key, words)
    return words
