"""Did-you-mean: a better query from the index's own vocabulary.

When a query finds little, each word that the index does not hold (or
holds rarely) is compared with frequent index words by pinyin, so that
pinyin typed in Latin letters (``yamaxun``), its initials (``ymx``) and
homophone typos (``亚码逊``) all lead to ``亚马逊``. The pinyin table is
built from words of two to six characters that at least two articles use,
once per index generation (and hourly while incremental commits add words).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable

from indexer.analysis import Segmentation, is_cjk, normalize, query_words
from search.terms import doc_frequencies

#: Fields whose vocabulary is offered.
VOCABULARY_FIELDS = ("title", "tags", "body")
#: Most words in the pinyin table (the most frequent).
MAX_WORDS = 60_000
#: A query word used by fewer articles than this is worth correcting.
RARE = 2
#: Seconds a pinyin table serves incremental commits before it is rebuilt
#: (from each segment's vocabulary, counted once per segment). A new
#: generation (a rebuild) always gets a new table.
MAX_AGE = 600.0


#: Letters of pinyin split into words (a long run costs quadratic time).
_MAX_PINYIN_LETTERS = 60
#: Letters of the longest pinyin word looked up (six syllables).
_MAX_WORD_LETTERS = 36
#: Words whose pinyin is remembered between builds (a table's worth and more).
_MEMO_WORDS = 500_000
_pinyin_memo: dict[str, list[str]] = {}


def table_due(built_for: str | None, built_at: float, version: str, max_age: float) -> bool:
    """Whether a table built for commit ``built_for`` (at monotonic time
    ``built_at``) must be built again for ``version``: always for a new
    generation, and after ``max_age`` seconds for a newer commit of the
    same one (the rule of both the pinyin and the completion table)."""
    if built_for is None or version.split(":", 1)[0] != built_for.split(":", 1)[0]:
        return True
    return version != built_for and time.monotonic() - built_at > max_age


def pinyin_of(word: str) -> list[str]:
    """``lazy_pinyin(word)``, remembered: a table rebuilt after a commit
    asks again for nearly every word it asked before, and a query asked
    again (its next page, a filter added) for the same stretches."""
    found = _pinyin_memo.get(word)
    if found is None:
        from pypinyin import lazy_pinyin

        if len(_pinyin_memo) >= _MEMO_WORDS:
            _pinyin_memo.clear()
        found = _pinyin_memo[word] = lazy_pinyin(word)
    return found


def segment_vocabulary(reader) -> Counter:
    """word -> documents of one segment holding it (words of two to six
    CJK characters), counted once per segment: its reader keeps it, and a
    segment's terms never change."""
    cache = reader.__dict__.get("_zhsearch_vocabulary")
    if cache is None:
        cache = Counter()
        for fieldname in VOCABULARY_FIELDS:
            if fieldname not in reader.schema:
                continue
            for raw, df in doc_frequencies(reader, fieldname):
                word = raw.decode("utf-8") if isinstance(raw, bytes) else raw
                if 2 <= len(word) <= 6 and all(is_cjk(c) for c in word):
                    cache[word] += df
        reader.__dict__["_zhsearch_vocabulary"] = cache
    return cache


def vocabulary(reader) -> Counter:
    """word -> documents holding it, over every segment of ``reader``."""
    freq: Counter[str] = Counter()
    for leaf, _offset in reader.leaf_readers():
        freq.update(segment_vocabulary(leaf))
    return freq


class Speller:
    """The pinyin table of the live index. A build makes a new table and
    swaps it in whole, so a suggestion made meanwhile uses the old one."""

    def __init__(self) -> None:
        self._version: str | None = None
        self._built_at = 0.0
        self._by_pinyin: dict[str, str] = {}
        self._by_initials: dict[str, str] = {}

    def _build(self, freq: Counter) -> None:
        by_pinyin: dict[str, str] = {}
        by_initials: dict[str, str] = {}
        # Most frequent first: it wins a tie; between equally frequent
        # words the first in code point order (not the first found, which
        # would depend on how documents fell into segments or shards).
        frequent = sorted(((w, n) for w, n in freq.items() if n >= RARE), key=lambda item: (-item[1], item[0]))
        for word, _count in itertools.islice(frequent, MAX_WORDS):
            syllables = pinyin_of(word)
            by_pinyin.setdefault("".join(syllables), word)
            if len(word) >= 3:
                by_initials.setdefault("".join(s[0] for s in syllables if s), word)
        self._by_pinyin, self._by_initials = by_pinyin, by_initials

    def prepare(self, reader, version: str, freq: Callable[[], Counter] | None = None) -> bool:
        """Build the pinyin table if this generation has none, or it is
        older than ``MAX_AGE`` and the index changed since. Whether it was
        built. ``freq``: the corpus's ``vocabulary``, when it is not
        ``reader``'s (a sharded index adds up its shards')."""
        if not table_due(self._version, self._built_at, version, MAX_AGE):
            return False
        self._build(freq() if freq is not None else vocabulary(reader))
        self._version = version
        self._built_at = time.monotonic()
        return True

    def suggest(self, reader, text: str, seg: Segmentation | None = None) -> str | None:
        """A corrected query, or None when nothing better is known (from
        the table ``prepare`` made last)."""
        changed = False
        out = []
        for chunk in text.split():
            if ":" in chunk or chunk.startswith(("-", '"', "“")):
                out.append(chunk)
                continue
            norm = normalize(chunk)
            if norm.isascii() and norm.isalpha():
                candidate = None
                if self._doc_freq(reader, norm) < RARE:
                    candidate = (
                        self._by_pinyin.get(norm)
                        or (self._by_initials.get(norm) if len(norm) >= 3 else None)
                        or self._pinyin_words(norm)
                    )
                out.append(candidate or chunk)
                changed = changed or candidate is not None
                continue
            words = query_words(chunk, seg)
            fixed = self._homophones(reader, words)
            changed = changed or fixed != words
            out.append("".join(fixed) if fixed != words else chunk)
        return " ".join(out) if changed else None

    def _pinyin_words(self, letters: str) -> str | None:
        """Pinyin of any length as index words: ``shujutoushi`` is 数据 +
        透视 when no single word reads so. The split into words (each a
        whole number of syllables) uses as few words as it can."""
        if len(letters) > _MAX_PINYIN_LETTERS:
            return None
        best: list[list[str] | None] = [[]] + [None] * len(letters)
        for end in range(1, len(letters) + 1):
            for start in range(max(0, end - _MAX_WORD_LETTERS), end):
                head = best[start]
                word = self._by_pinyin.get(letters[start:end])
                if head is not None and word and (best[end] is None or len(head) + 1 < len(best[end])):
                    best[end] = [*head, word]
        found = best[-1]
        return "".join(found) if found and len(found) > 1 else None

    def _homophones(self, reader, words: list[str]) -> list[str]:
        """``words`` with rare Chinese stretches replaced by a frequent index
        word that reads the same: a word (亚码逊 → 亚马逊), or a word and
        the character jieba cut off it (防火 + 强 → 防火墙)."""
        out: list[str] = []
        i = 0
        while i < len(words):
            for span in (3, 2, 1):
                stretch = "".join(words[i : i + span])
                if i + span > len(words) or len(stretch) < 2 or not all(is_cjk(c) for c in stretch):
                    continue
                if span == 1 and self._doc_freq(reader, stretch) >= RARE:
                    continue
                candidate = self._by_pinyin.get("".join(pinyin_of(stretch)))
                if candidate and candidate != stretch and len(candidate) == len(stretch):
                    out.append(candidate)
                    i += span
                    break
            else:
                out.append(words[i])
                i += 1
        return out

    @staticmethod
    def _doc_freq(reader, word: str) -> int:
        return sum(reader.doc_frequency(f, word) for f in VOCABULARY_FIELDS if f in reader.schema)
