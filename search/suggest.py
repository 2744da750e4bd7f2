"""Completions for the search box, from what the index's articles hold.

Completing the last word typed on its own invented queries: 跨境电 became
跨境电器 (跨境 + a word starting with 电), which no article holds. The
completions here are whole phrases taken from the index: each title's
words and runs of two or three consecutive words, and the same of each
tag, ranked by how many articles hold them. A phrase is offered when it starts with what
was typed (normalized, so Traditional input completes to the same
phrases), or when its pinyin or its initials start with typed letters
(``ya``, ``yamax``, ``ymx`` → 亚马逊). The table is built once per index
generation and keeps the most used phrases only.
"""

from __future__ import annotations

import bisect
import heapq
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable

from indexer.analysis import Segmentation, is_cjk, normalize, query_words
from search.query import STOPWORDS
from search.spelling import pinyin_of, table_due

#: Phrases kept (the most used).
MAX_PHRASES = 50_000
#: Words in the longest title phrase offered.
MAX_PHRASE_WORDS = 3
#: Where a title's words stop touching: punctuation, and spaces other than
#: one between Latin letters or digits (TikTok Shop stays one phrase).
_BREAK_RE = re.compile(r"[^\w ]+|(?<![a-z0-9]) +| +(?![a-z0-9])")
#: Matches looked at for one completion (a short prefix can match many).
MAX_EXPANSIONS = 2_000


def _join(words: Iterable[str]) -> str:
    """Words as one would type them: Chinese run together, a space where
    Latin letters or digits meet."""
    out = ""
    for word in words:
        if out and not (is_cjk(out[-1]) or is_cjk(word[0])):
            out += " "
        out += word
    return out


class _Prefixes:
    """Keys in sorted order, each with its phrase, looked up by prefix."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        items = sorted(pairs)
        self._keys = [k for k, _p in items]
        self._phrases = [p for _k, p in items]

    def starting_with(self, prefix: str) -> Iterable[str]:
        i = bisect.bisect_left(self._keys, prefix)
        end = min(len(self._keys), i + MAX_EXPANSIONS)
        while i < end and self._keys[i].startswith(prefix):
            yield self._phrases[i]
            i += 1


def _title_phrases(stored: dict, seg: Segmentation | None) -> set[str]:
    """The phrases one article offers: its title's and tags' words and
    runs of words, joined only where they touch (表单；子… gives 表单 and
    子…, never 表单子)."""
    phrases: set[str] = set()
    for text in (stored.get("title") or "", *(stored.get("tags") or ())):
        for run in _BREAK_RE.split(normalize(text)):
            words = query_words(run, seg)
            for n in range(1, MAX_PHRASE_WORDS + 1):
                for i in range(len(words) - n + 1):
                    # A phrase does not begin or end with a particle (表格的).
                    if words[i] not in STOPWORDS and words[i + n - 1] not in STOPWORDS:
                        phrases.add(_join(words[i : i + n]))
    return {p for p in phrases if len(p) >= 2}


class _SegmentPhrases:
    """Phrase counts over one segment's live articles, kept by its reader:
    a later commit only takes away the phrases of articles it deleted."""

    def __init__(self, reader, seg: Segmentation | None) -> None:
        self.counts: Counter[str] = Counter()
        self.deleted: set[int] = set(reader.deleted_docs_set) if reader.has_deletions() else set()
        for docnum, stored in reader.iter_docs():
            if docnum not in self.deleted:
                self.counts.update(_title_phrases(stored, seg))

    def update(self, reader, seg: Segmentation | None) -> None:
        if not reader.has_deletions():
            return
        for docnum in reader.deleted_docs_set - self.deleted:
            self.counts.subtract(_title_phrases(reader.stored_fields(docnum), seg))
            self.deleted.add(docnum)


#: Seconds a table serves incremental commits before it is rebuilt (from
#: each segment's counts; a new generation always gets a new table).
MAX_AGE = 600.0


def phrase_counts(reader, seg: Segmentation | None) -> Counter:
    """How many live articles use each phrase (remembered per segment, so
    a later table counts only what changed)."""
    df: Counter[str] = Counter()
    for leaf, _offset in reader.leaf_readers():
        counted = leaf.__dict__.get("_zhsearch_phrases")
        if counted is None:
            counted = leaf.__dict__["_zhsearch_phrases"] = _SegmentPhrases(leaf, seg)
        else:
            counted.update(leaf, seg)
        df.update(counted.counts)
    return df


def _most_used(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


class Completions:
    """The phrase table of the live index; a build swaps in a new one whole."""

    def __init__(self) -> None:
        self._version: str | None = None
        self._built_at = 0.0
        self._table = (_Prefixes(()), _Prefixes(()), _Prefixes(()), {})

    @property
    def version(self) -> str | None:
        """The index commit the table was built from."""
        return self._version

    def prepare(
        self, reader, version: str, seg: Segmentation | None = None, counts: Callable[[], Counter] | None = None
    ) -> bool:
        """Build the table if this generation has none, or it is older than
        ``MAX_AGE`` and the index changed since. Whether it was built.
        ``counts``: the phrase counts of the whole index, where ``reader``
        does not hold all of it (a sharded index's)."""
        if not table_due(self._version, self._built_at, version, MAX_AGE):
            return False
        self._build(counts() if counts is not None else phrase_counts(reader, seg))
        self._version = version
        self._built_at = time.monotonic()
        return True

    def _build(self, df: Counter) -> None:
        # The most used phrases, ties in code point order: the same table
        # whatever order the segments (or shards) were counted in.
        kept = dict(heapq.nsmallest(MAX_PHRASES, ((p, n) for p, n in df.items() if n > 0), key=_most_used))
        pinyin: list[tuple[str, str]] = []
        initials: list[tuple[str, str]] = []
        for phrase in kept:
            if all(is_cjk(c) for c in phrase):
                syllables = pinyin_of(phrase)
                pinyin.append(("".join(syllables), phrase))
                initials.append(("".join(s[0] for s in syllables if s), phrase))
        self._table = (_Prefixes((p, p) for p in kept), _Prefixes(pinyin), _Prefixes(initials), kept)

    def complete(self, text: str, limit: int = 8) -> list[str]:
        """Phrases of the index that finish ``text``, most used first."""
        key = normalize(text).strip()
        if not key:
            return []
        by_text, by_pinyin, by_initials, df = self._table
        found = set(by_text.starting_with(key))
        letters = key.replace(" ", "")
        if letters.isascii() and letters.isalpha():
            found.update(by_pinyin.starting_with(letters))
            if len(letters) >= 2:
                found.update(by_initials.starting_with(letters))
        found.discard(key)
        return sorted(found, key=lambda p: (-df[p], len(p), p))[:limit]
