"""Near-duplicate detection: the same article under several URLs.

Two pages are the same article when their normalized titles are equal and
their bodies share nearly all their character 4-shingles (letters, digits
and ideographs only): the resemblance is estimated from bottom-k sketches
(the 48 smallest shingle hashes, a MinHash variant) and must reach 0.9. The
title condition keeps apart help pages that embed the same paragraphs under
different titles; candidates are looked up by title and smallest shingle
hashes, so a check is cheap.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass

from indexer.analysis import normalize

#: Resemblance (estimated Jaccard of shingle sets) from which two bodies match.
MIN_RESEMBLANCE = 0.9
#: Bodies shorter than this (in word characters) are not compared.
MIN_CHARS = 60
SKETCH_SIZE = 48
_WORD_CHARS_RE = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Signature:
    title_key: str
    sketch: tuple[int, ...]

    def to_bytes(self) -> bytes:
        return self.title_key.encode("ascii") + struct.pack(f">{len(self.sketch)}I", *self.sketch)

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature | None:
        if not data or len(data) < 16:
            return None
        n = (len(data) - 16) // 4
        return cls(data[:16].decode("ascii"), struct.unpack(f">{n}I", data[16 : 16 + 4 * n]))


def signature(title: str | None, body: str | None) -> Signature | None:
    """The signature of an article, or None when its body is too short."""
    text = _WORD_CHARS_RE.sub("", normalize(body or ""))
    if len(text) < MIN_CHARS:
        return None
    hashes = {zlib.crc32(text[i : i + 4].encode("utf-8")) for i in range(len(text) - 3)}
    title_key = hashlib.blake2b(" ".join(normalize(title or "").split()).encode("utf-8"), digest_size=8).hexdigest()
    return Signature(title_key, tuple(sorted(heapq.nsmallest(SKETCH_SIZE, hashes))))


def resemblance(a: Signature, b: Signature) -> float:
    """Estimated Jaccard similarity of the two shingle sets."""
    k = min(len(a.sketch), len(b.sketch))
    union_bottom = heapq.nsmallest(k, set(a.sketch) | set(b.sketch))
    both = set(a.sketch) & set(b.sketch)
    return sum(1 for h in union_bottom if h in both) / k if k else 0.0


#: Lookup keys: bands of the sketch's smallest hashes. A single hash is a
#: poor key (a frequent shingle with a small hash puts hundreds of articles
#: in one bucket); four together single out near-copies.
BANDS = 3
BAND_SIZE = 4


class DuplicateFinder:
    """Signatures of the documents kept so far, by title and smallest
    shingle hashes, so a lookup compares a handful of candidates even when
    thousands of articles share a title (or have none)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple, list[tuple[Signature, str]]] = defaultdict(list)
        self._keys: dict[str, list[tuple]] = {}

    @staticmethod
    def _lookup_keys(sig: Signature) -> list[tuple[str, tuple[int, ...]]]:
        return [
            (sig.title_key, sig.sketch[b * BAND_SIZE : (b + 1) * BAND_SIZE])
            for b in range(BANDS)
            if len(sig.sketch) >= (b + 1) * BAND_SIZE
        ]

    def add(self, doc_id: str, sig: Signature | None) -> None:
        if sig is None:
            return
        keys = self._lookup_keys(sig)
        self._keys[doc_id] = keys
        for key in keys:
            self._buckets[key].append((sig, doc_id))

    def remove(self, doc_id: str) -> None:
        for key in self._keys.pop(doc_id, ()):
            self._buckets[key] = [e for e in self._buckets[key] if e[1] != doc_id]

    def find(self, doc_id: str, sig: Signature | None) -> str | None:
        """The id of a kept document this one duplicates, if any."""
        if sig is None:
            return None
        seen: set[str] = set()
        for key in self._lookup_keys(sig):
            for other, other_id in self._buckets.get(key, ()):
                if other_id != doc_id and other_id not in seen:
                    seen.add(other_id)
                    if resemblance(sig, other) >= MIN_RESEMBLANCE:
                        return other_id
        return None
