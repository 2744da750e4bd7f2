"""Did-you-mean: a better query from the index's own vocabulary.

When a query finds little, each word that the index does not hold (or
holds rarely) is compared with frequent index words by pinyin, so that
pinyin typed in Latin letters (``yamaxun``), its initials (``ymx``) and
homophone typos (``亚码逊``) all lead to ``亚马逊``. The pinyin table is
built from words of two to six characters that at least two articles use,
once per index generation (and hourly while incremental commits add words).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from indexer.analysis import Segmentation, is_cjk, normalize, query_words

#: Fields whose vocabulary is offered.
VOCABULARY_FIELDS = ("title", "tags", "body")
#: Most words in the pinyin table (the most frequent).
MAX_WORDS = 60_000
#: A query word used by fewer articles than this is worth correcting.
RARE = 2
#: Seconds a pinyin table serves incremental commits before it is rebuilt
#: (building it reads the whole vocabulary: seconds on a large index). A new
#: generation (a rebuild) always gets a new table.
MAX_AGE = 3600.0


class Speller:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: str | None = None
        self._built_at = 0.0
        self._by_pinyin: dict[str, str] = {}
        self._by_initials: dict[str, str] = {}

    def _build(self, reader) -> None:
        from pypinyin import lazy_pinyin

        freq: Counter[str] = Counter()
        for fieldname in VOCABULARY_FIELDS:
            if fieldname not in reader.schema:
                continue
            for raw, info in reader.iter_field(fieldname):
                word = raw.decode("utf-8") if isinstance(raw, bytes) else raw
                if 2 <= len(word) <= 6 and all(is_cjk(c) for c in word) and info.doc_frequency() >= RARE:
                    freq[word] += info.doc_frequency()
        by_pinyin: dict[str, str] = {}
        by_initials: dict[str, str] = {}
        for word, _count in freq.most_common(MAX_WORDS):  # most frequent first: it wins a tie
            syllables = lazy_pinyin(word)
            by_pinyin.setdefault("".join(syllables), word)
            if len(word) >= 3:
                by_initials.setdefault("".join(s[0] for s in syllables if s), word)
        self._by_pinyin, self._by_initials = by_pinyin, by_initials

    def prepare(self, reader, version: str) -> None:
        """Build the pinyin table if this generation has none (or it is old)."""
        generation = version.split(":", 1)[0]
        with self._lock:
            stale = time.monotonic() - self._built_at > MAX_AGE
            if generation != self._version or stale:
                self._build(reader)
                self._version = generation
                self._built_at = time.monotonic()

    def suggest(self, reader, version: str, text: str, seg: Segmentation | None = None) -> str | None:
        """A corrected query, or None when nothing better is known."""
        self.prepare(reader, version)
        from pypinyin import lazy_pinyin

        changed = False
        out = []
        for chunk in text.split():
            if ":" in chunk or chunk.startswith(("-", '"', "“")):
                out.append(chunk)
                continue
            norm = normalize(chunk)
            if norm.isascii() and norm.isalpha():
                candidate = self._by_pinyin.get(norm) or (self._by_initials.get(norm) if len(norm) >= 3 else None)
                if candidate and self._doc_freq(reader, norm) < RARE:
                    out.append(candidate)
                    changed = True
                    continue
                out.append(chunk)
                continue
            words = query_words(chunk, seg)
            fixed = []
            for word in words:
                replacement = None
                if len(word) >= 2 and all(is_cjk(c) for c in word) and self._doc_freq(reader, word) < RARE:
                    candidate = self._by_pinyin.get("".join(lazy_pinyin(word)))
                    if candidate and candidate != word:
                        replacement = candidate
                fixed.append(replacement or word)
                changed = changed or replacement is not None
            out.append("".join(fixed) if any(r != w for r, w in zip(fixed, words, strict=True)) else chunk)
        return " ".join(out) if changed else None

    @staticmethod
    def _doc_freq(reader, word: str) -> int:
        return sum(reader.doc_frequency(f, word) for f in VOCABULARY_FIELDS if f in reader.schema)
