"""Completions for the search box: the word being typed, finished from the
index's own vocabulary (titles and tags first, by how many articles use it).

For Chinese typed without spaces the unfinished part is the last word jieba
finds in it, so ``跨境电`` completes to ``跨境电商`` when the index holds
``电商``.
"""

from __future__ import annotations

from collections import Counter

from indexer.analysis import Segmentation, is_cjk, normalize, query_words

#: Fields whose words are offered, with the weight of an article using one.
SUGGEST_FIELDS = (("title", 3), ("tags", 3), ("body", 1))
#: Most lexicon entries looked at per field (a short prefix can match many).
MAX_EXPANSIONS = 2_000


def suggest(reader, text: str, limit: int = 8, seg: Segmentation | None = None) -> list[str]:
    """Up to ``limit`` completions of ``text`` (the whole box, completed)."""
    if not text or not text.strip():
        return []
    typed = text.rstrip()
    norm = normalize(typed)
    head_len = len(norm) - len(norm.split()[-1])
    tail = norm[head_len:]
    if tail and is_cjk(tail[-1]):
        words = query_words(tail, seg)
        partial = words[-1] if words and tail.endswith(words[-1]) else tail[-1]
    else:
        partial = tail
    if not partial:
        return []
    stem = typed[: len(typed) - len(partial)] if len(typed) == len(norm) else norm[: len(norm) - len(partial)]
    scores: Counter[str] = Counter()
    for fieldname, weight in SUGGEST_FIELDS:
        for i, raw in enumerate(reader.expand_prefix(fieldname, partial)):
            if i >= MAX_EXPANSIONS:
                break
            word = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            if word != partial:
                scores[word] += weight * reader.doc_frequency(fieldname, word)
    return [stem + word for word, _score in scores.most_common(limit)]
