"""Highlighted titles and snippets, without running the segmenter again.

The matched words are located by their surface form in the normalized
stored text (the same NFKC / lowercase / Traditional-to-Simplified folding
the index used), then mapped back to the original characters. Everything
that is not a match is HTML-escaped; the only markup in the output is our
own ``<mark>``.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Collection, Sequence
from html import escape

from indexer.analysis import is_cjk, t2s_converter

#: Where a snippet would rather start or end: after Chinese (and Latin)
#: sentence punctuation or a line break.
SENTENCE_END = "。！？；!?;\n"
_SPACE_RE = re.compile(r"\s+")


#: Texts at least this long have their normal form kept for the next
#: snippet of the same text (a long article is a hit for many queries:
#: folding a 25,000-character one took 1.7 ms, most of a query's time with
#: snippets), up to about this many characters in all.
LONG_TEXT = 2_000
LONG_TEXT_CACHE_CHARS = 4_000_000


class _NormalForms:
    """The normal forms of the long texts snippeted last, least recently
    used first out, bounded by their characters (a mapping back counts as
    eight characters an entry: a list of ints)."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._held = 0
        self._forms: OrderedDict[str, tuple[str, list[int] | None, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> tuple[str, list[int] | None] | None:
        with self._lock:
            form = self._forms.get(text)
            if form is None:
                return None
            self._forms.move_to_end(text)
            return form[0], form[1]

    def put(self, text: str, norm: str, mapping: list[int] | None) -> None:
        cost = len(text) + len(norm) + (8 * len(mapping) if mapping else 0)
        if cost > self._budget:
            return
        with self._lock:
            if text in self._forms:
                return
            self._forms[text] = (norm, mapping, cost)
            self._held += cost
            while self._held > self._budget:
                _text, (_norm, _mapping, old) = self._forms.popitem(last=False)
                self._held -= old


_normal_forms = _NormalForms(LONG_TEXT_CACHE_CHARS)


def normalize_with_map(text: str) -> tuple[str, list[int] | None]:
    """The normalized text and, for each of its characters, the index of the
    original character it came from (None when they line up one to one)."""
    if len(text) < LONG_TEXT:
        return _normalized(text)
    form = _normal_forms.get(text)
    if form is None:
        form = _normalized(text)
        _normal_forms.put(text, *form)
    return form


def _normalized(text: str) -> tuple[str, list[int] | None]:
    norm, mapping = text.lower(), None
    if len(norm) != len(text) or not unicodedata.is_normalized("NFKC", text):
        norm, mapping = _fold_text(text)
    converted = t2s_converter().convert(norm)
    if len(converted) != len(norm):
        # A phrase rule changed the length: fall back to character by character.
        converted = "".join(t2s_converter().convert(ch) or ch for ch in norm)
        if len(converted) != len(norm):
            converted = norm
    return converted, mapping


def _fold_text(text: str) -> tuple[str, list[int] | None]:
    """NFKC and lowercase, character by character, with the map back.

    Chinese text is rarely NFKC-normal (full-width punctuation, an
    ellipsis), but only a few distinct characters change: fold those where
    they occur instead of walking the whole text one character at a time,
    which cost a long page several milliseconds per snippet.
    """
    same_length: dict[str, str] = {}
    longer: dict[str, str] = {}
    for ch in set(_MAYBE_FOLDED_RE.findall(text)):
        folded = _fold(ch)
        if folded != ch:
            (same_length if len(folded) == 1 else longer)[ch] = folded
    folded_text = _replace_all(text, same_length)
    mapping: list[int] | None = None
    if longer:
        # Positions are unchanged so far; expand the rest, mapping back.
        pieces: list[str] = []
        mapping = []
        pos = 0
        for m in re.finditer("|".join(map(re.escape, longer)), folded_text):
            start = m.start()
            expansion = longer[m.group()]
            pieces += (folded_text[pos:start], expansion)
            mapping.extend(range(pos, start))
            mapping.extend([start] * len(expansion))
            pos = start + 1
        pieces.append(folded_text[pos:])
        mapping.extend(range(pos, len(folded_text)))
        folded_text = "".join(pieces)
    norm = folded_text.lower()
    if len(norm) != len(folded_text):
        # Lowercasing lengthened a character (rare): walk the text.
        return _fold_each(text)
    return norm, mapping


#: Characters NFKC may change: all but ASCII and the CJK ideographs of the
#: main blocks, which it never changes. (A set of every character of a long
#: page cost more than folding it.)
_MAYBE_FOLDED_RE = re.compile(r"[^\x00-\x7f\u3400-\u4dbf\u4e00-\u9fff]")


def _replace_all(text: str, table: dict[str, str]) -> str:
    if len(table) <= 16:  # a few scans of the text beat translate()
        for ch, folded in table.items():
            text = text.replace(ch, folded)
        return text
    return text.translate({ord(ch): folded for ch, folded in table.items()})


def _fold_each(text: str) -> tuple[str, list[int]]:
    """NFKC and lowercase one character at a time, mapping each back."""
    pieces: list[str] = []
    mapping: list[int] = []
    for i, ch in enumerate(text):
        n = _fold(ch).lower()
        pieces.append(n)
        mapping.extend([i] * len(n))
    return "".join(pieces), mapping


@functools.lru_cache(maxsize=65_536)
def _fold(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch)


def _same_class(a: str, b: str) -> bool:
    if a.isascii() and b.isascii():
        return (a.isalpha() and b.isalpha()) or (a.isdigit() and b.isdigit())
    return False


def find_matches(norm: str, terms: Sequence[str], lone: Collection[str] = ()) -> list[tuple[int, int, str]]:
    """Spans of ``terms`` in the normalized text, merged where they overlap;
    Latin words and numbers only match whole (``15`` not inside ``2015``).

    A single Chinese character (a part jieba cut off a query word: 表 of
    数据透视表, 行 of a question) is marked only where it touches another
    match, as part of the query word, unless it is in ``lone``: characters
    the query asks for on their own. Marked everywhere, it lit up 图表 and
    工作表 for 数据透视表."""
    spans: list[tuple[int, int, str]] = []
    for term in terms:
        if not term:
            continue
        start = norm.find(term)
        while start >= 0:
            end = start + len(term)
            before_ok = start == 0 or not _same_class(norm[start - 1], term[0])
            after_ok = end == len(norm) or not _same_class(norm[end], term[-1])
            if before_ok and after_ok:
                spans.append((start, end, term))
            start = norm.find(term, start + 1)
    spans = _without_lone_characters(spans, lone)
    spans.sort()
    merged: list[tuple[int, int, str]] = []
    for s, e, t in spans:
        if merged and s <= merged[-1][1]:
            ps, pe, pt = merged[-1]
            merged[-1] = (ps, max(pe, e), pt)
        else:
            merged.append((s, e, t))
    return merged


def _without_lone_characters(spans: list[tuple[int, int, str]], lone: Collection[str]) -> list[tuple[int, int, str]]:
    """``spans`` less the single Chinese characters that neither the query
    asks for alone nor touch a longer match (directly, or through a chain
    of such characters)."""
    single = [sp for sp in spans if len(sp[2]) == 1 and is_cjk(sp[2]) and sp[2] not in lone]
    if not single:
        return spans
    kept = [sp for sp in spans if not (len(sp[2]) == 1 and is_cjk(sp[2]) and sp[2] not in lone)]
    edges = {pos for s, e, _t in kept for pos in (s, e)}
    covered = [(s, e) for s, e, _t in kept]
    pending = sorted(single)
    changed = True
    while changed and pending:
        changed = False
        rest = []
        for sp in pending:
            s, e, _t = sp
            if s in edges or e in edges or any(cs < e and s < ce for cs, ce in covered):
                kept.append(sp)
                edges.update((s, e))
                covered.append((s, e))
                changed = True
            else:
                rest.append(sp)
        pending = rest
    return kept


def _to_original(spans, mapping: list[int] | None, text_len: int) -> list[tuple[int, int, str]]:
    if mapping is None:
        return spans
    out = []
    for s, e, t in spans:
        os_ = mapping[s]
        oe = mapping[e - 1] + 1 if e - 1 < len(mapping) else text_len
        out.append((os_, oe, t))
    return out


def _render(text: str, start: int, end: int, spans) -> str:
    """Escape text[start:end], wrapping the spans inside it in <mark>."""
    out: list[str] = []
    pos = start
    for s, e, _t in spans:
        if e <= start or s >= end:
            continue
        s, e = max(s, start), min(e, end)
        if s > pos:
            out.append(escape(_SPACE_RE.sub(" ", text[pos:s]), quote=False))
        out.append("<mark>" + escape(_SPACE_RE.sub(" ", text[s:e]), quote=False) + "</mark>")
        pos = e
    if pos < end:
        out.append(escape(_SPACE_RE.sub(" ", text[pos:end]), quote=False))
    return "".join(out)


def highlight_all(text: str | None, terms: Sequence[str], lone: Collection[str] = ()) -> str:
    """The whole text (a title), escaped, with every match marked."""
    if not text:
        return ""
    norm, mapping = normalize_with_map(text)
    spans = _to_original(find_matches(norm, terms, lone), mapping, len(text))
    return _render(text, 0, len(text), spans)


def snippet(text: str | None, terms: Sequence[str], size: int = 140, lone: Collection[str] = ()) -> str:
    """The passage of about ``size`` characters holding the most distinct
    matched words (then the most matches), cut at sentence punctuation where
    one is near, escaped, with ``<mark>`` around the matches."""
    if not text:
        return ""
    text_len = len(text)
    norm, mapping = normalize_with_map(text)
    spans = _to_original(find_matches(norm, terms, lone), mapping, text_len)
    if text_len <= size:
        return _with_ellipses(text, 0, text_len, spans)
    if not spans:
        start, end = _skip_space(text, 0), min(text_len, size)
        return _with_ellipses(text, start, _end_at_sentence(text, start, end, size), [])
    best = (-1, -1, 0)
    best_i = 0
    j = 0
    # Sliding window over match starts: which window of `size` characters
    # that begins at a match holds the most distinct terms, then matches?
    for i, (s, _e, _t) in enumerate(spans):
        while j < len(spans) and spans[j][1] <= s + size:
            j += 1
        window = spans[i:j]
        score = (len({t for _s, _e2, t in window}), len(window), -s)
        if score > best:
            best, best_i = score, i
    first = spans[best_i][0]
    start = _start_at_sentence(text, first, size)
    end = min(text_len, start + size)
    end = _end_at_sentence(text, start, end, size)
    if end < spans[best_i][1]:
        end = min(text_len, spans[best_i][1])
    return _with_ellipses(text, start, end, spans)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _start_at_sentence(text: str, first_match: int, size: int) -> int:
    """Begin at the start of the sentence holding the first match, if that is
    not too far back; else a little before the match."""
    lookback = max(10, size // 3)
    lo = max(0, first_match - lookback)
    for k in range(first_match - 1, lo - 1, -1):
        if text[k] in SENTENCE_END:
            return _skip_space(text, k + 1)
    if lo == 0:
        return _skip_space(text, 0)
    # No sentence start near: after the nearest comma or space before the
    # match, else a little before it, never inside a Latin word or number
    # (a snippet began "…breOffice").
    near = max(lo, first_match - size // 6)
    for k in range(first_match - 1, near - 1, -1):
        if text[k] in _PAUSES or text[k].isspace():
            return _skip_space(text, k + 1)
    start = near
    while start > lo and _is_word_char(text[start - 1]) and _is_word_char(text[start]):
        start -= 1
    if start > lo or not _is_word_char(text[start]):
        return _skip_space(text, start)
    while start < first_match and _is_word_char(text[start]):
        start += 1
    return _skip_space(text, start)


#: Where a clause ends inside a sentence.
_PAUSES = '，、,：:（(「“"'


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _end_at_sentence(text: str, start: int, end: int, size: int) -> int:
    """End after sentence punctuation in the last three fifths of the window."""
    if end >= len(text):
        return len(text)
    floor = start + (2 * size) // 5
    for k in range(end - 1, floor - 1, -1):
        if text[k] in SENTENCE_END:
            return k + 1
    return end


def _with_ellipses(text: str, start: int, end: int, spans) -> str:
    body = _render(text, start, end, spans).strip()
    if start > 0:
        body = "…" + body
    if end < len(text) and text[start:end].strip():
        body = body + "…"
    return body
