"""Chinese text analysis shared by indexing, querying and highlighting.

Every piece of text goes through the same normalization (NFKC, lowercase,
Traditional to Simplified) before it is segmented, so that a query typed in
one script, width or case meets the document written in another.

Two token streams come out of a text:

* **words**: jieba's accurate segmentation, plus fine-grained sub-words
  (dictionary words inside longer words, letter and digit parts of mixed
  tokens) at index time, so that a query segmented differently from the
  document still meets it. Words carry no positions: they are scored by BM25F.
* **grams**: one token per *unit* (a CJK character or a run of Latin letters
  or of digits) at consecutive positions: a CJK character followed by another
  CJK character gives their bigram, the last CJK character of a run gives
  itself, a Latin or digit run gives itself. A quoted phrase becomes a phrase
  over these tokens, which matches exactly the documents that contain the
  phrase's units contiguously, whatever jieba made of either side.

The analyzers are Whoosh analysis chains (a tokenizer and filters composed
with ``|``) and are pickled into the index schema, so they hold only their
configuration and build the segmenter lazily.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from whoosh.analysis import Filter, Token, Tokenizer

__all__ = [
    "GramTokenizer",
    "LINE_GAP",
    "Segmentation",
    "KeywordTokenizer",
    "PunctuationFilter",
    "SubwordFilter",
    "ZhTokenizer",
    "gram_analyzer",
    "gram_units",
    "index_gram_lines",
    "index_grams",
    "index_words",
    "is_cjk",
    "keyword_analyzer",
    "normalize",
    "normalize_keyword",
    "phrase_grams",
    "query_words",
    "word_analyzer",
]

# CJK ideographs: the unified block, extension A, compatibility ideographs and
# the supplementary planes' extensions.
_CJK_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# A unit of the gram stream: one CJK character, a Latin letter run, or a
# number (with an optional decimal part).
_UNIT_RE = re.compile(f"[{_CJK_RANGES}]|[^\\W\\d_{_CJK_RANGES}]+|\\d+(?:\\.\\d+)?")
# The same units but CJK characters: a CJK character is never part of one,
# so they are found where _UNIT_RE finds them.
_NON_CJK_UNIT_RE = re.compile(f"[^\\W\\d_{_CJK_RANGES}]+|\\d+(?:\\.\\d+)?")
# Runs of units that make grams together: CJK runs, and single Latin or
# number units.
_RUN_RE = re.compile(f"[{_CJK_RANGES}]+|[^\\W\\d_{_CJK_RANGES}]+|\\d+(?:\\.\\d+)?")
# Letter/digit boundaries inside a mixed token such as "iphone15".
_ALNUM_PART_RE = re.compile(r"[^\W\d_]+|\d+(?:\.\d+)?")


def is_cjk(ch: str) -> bool:
    """True for a single CJK ideograph (the ranges of ``_CJK_RANGES``)."""
    if len(ch) != 1:
        return False
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x3134F


@functools.lru_cache(maxsize=1)
def t2s_converter():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """Fold width, case and script so equal words compare equal.

    Remembered for the last few texts, because the indexer runs several
    analyzers (words and grams, for title and body) over the same field
    value; see also ``remember_normalized``.
    """
    try:
        return _normalized[text]
    except KeyError:
        pass
    folded = text
    if not unicodedata.is_normalized("NFKC", folded):
        folded = unicodedata.normalize("NFKC", folded)
    folded = t2s_converter().convert(folded.lower())
    remember_normalized(text, folded)
    return folded


def remember_normalized(text: str, folded: str) -> None:
    """Let ``normalize(text)`` answer ``folded`` (which it must be) for a
    while: a process that got a text's normal form from another (an
    indexing worker, from the process that read the record) need not fold
    it again."""
    if len(text) > LONG_TEXT_CHARS:
        return  # a handful of those would hold hundreds of MB
    try:
        if len(_normalized) >= _NORMALIZED_KEPT:
            del _normalized[next(iter(_normalized))]
    except (KeyError, RuntimeError, StopIteration):
        pass  # another thread changed the memo meanwhile; it stays about as small
    _normalized[text] = folded


#: Texts ``normalize`` remembers (oldest forgotten first).
_NORMALIZED_KEPT = 64
_normalized: dict[str, str] = {}


def normalize_keyword(value: str) -> str:
    """Normal form of an exact-match value (tag, source): folded and trimmed."""
    return " ".join(normalize(value).split())


# --------------------------------------------------------------------------
# Segmenters
# --------------------------------------------------------------------------


class JiebaSegmenter:
    """jieba's accurate mode, with an optional user dictionary: the reference."""

    def __init__(self, userdict: str | None = None) -> None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        self._tk = jieba.Tokenizer()
        self._tk.initialize()
        if userdict:
            self._tk.load_userdict(userdict)

    def tokenize(self, text: str) -> Iterator[tuple[str, int, int]]:
        return self._tk.tokenize(text, mode="default", HMM=True)

    def is_word(self, word: str) -> bool:
        return bool(self._tk.FREQ.get(word))

    def words(self, text: str) -> list[str]:
        """The tokens of ``text`` that hold a letter, digit or ideograph."""
        return [w for w in self._tk.cut(text, HMM=True) if _has_word_char(w)]


class RJiebaSegmenter:
    """jieba-rs (rjieba): the same dictionary and algorithm, about 4 times
    faster here. Where the two differ, the tokens are cut the way jieba cuts
    them: jieba reads only U+4E00-U+9FD5 as Chinese (rarer ideographs come
    out one by one) and splits Latin words at punctuation that is not part
    of a dictionary word (``Wi-Fi``, ``N.V.``, ``www.example.com``)."""

    def __init__(self, userdict: str | None = None) -> None:
        import rjieba

        if not userdict:
            # Importing rjieba already loads its dictionary, into the
            # instance behind its module-level functions (0.1 s of a small
            # batch's 0.8 s command): a second instance would load it again.
            self._jieba: Any = rjieba
            return
        self._jieba = rjieba.Jieba()
        for word, freq, tag in read_userdict(userdict):
            self._jieba.add_word(word, freq, tag)

    def tokenize(self, text: str) -> Iterator[tuple[str, int, int]]:
        has_word = self._jieba.has_word
        for word, start, end in self._jieba.tokenize(text, "default", True):
            if _JIEBA_PLAIN_RE.fullmatch(word) or has_word(word):
                yield word, start, end
            else:
                for m in _JIEBA_SPLIT_RE.finditer(word):
                    yield m.group(), start + m.start(), start + m.end()

    def is_word(self, word: str) -> bool:
        return self._jieba.has_word(word)

    def words(self, text: str) -> list[str]:
        """The tokens of ``text`` that hold a letter, digit or ideograph.

        Text that is all Chinese jieba reads as such, punctuation and space
        (most Chinese text) needs no token checked: its words are exactly
        the tokens that start with an ideograph.
        """
        if _JIEBA_HAN_TEXT_RE.fullmatch(text):
            return [w for w in self._jieba.cut(text, True) if "\u4e00" <= w[0] <= "\u9fd5"]
        return [w for w, _s, _e in self.tokenize(text) if _has_word_char(w)]


# Tokens jieba would give as they are: Chinese it reads as such, or Latin
# letters and digits (with a decimal part or a percent sign).
_JIEBA_PLAIN_RE = re.compile(r"[\u4e00-\u9fd5]+|[a-zA-Z0-9]+|[0-9]+(?:\.[0-9]+)?%?|\s+|.")
# How jieba cuts anything else: Chinese runs, Latin/digit runs, one by one.
_JIEBA_SPLIT_RE = re.compile(r"[\u4e00-\u9fd5]+|[a-zA-Z0-9]+(?:\.[0-9]+)?%?|\s+|.")
# Text of ideographs jieba reads as Chinese and characters that are not
# letters, digits or "_" (punctuation, space, symbols).
_JIEBA_HAN_TEXT_RE = re.compile(r"(?:[\u4e00-\u9fd5]|[^\w])*")
SEGMENTERS = {"jieba": JiebaSegmenter, "rjieba": RJiebaSegmenter}


def read_userdict(path: str) -> Iterator[tuple[str, int | None, str | None]]:
    """Entries of a jieba user dictionary: ``word [frequency] [tag]``."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.strip().lstrip("\ufeff").split()
            if not parts:
                continue
            freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            tag = parts[-1] if len(parts) > 1 and not parts[-1].isdigit() else None
            yield parts[0], freq, tag


@dataclass(frozen=True)
class Segmentation:
    """Which segmenter and user dictionary an index was built with; queries
    must be cut the same way."""

    userdict: str | None = None
    engine: str = "jieba"

    def segmenter(self) -> JiebaSegmenter | RJiebaSegmenter:
        return _segmenter(self.engine, self.userdict or None)


_segmenters: dict[tuple[str, str | None], object] = {}
_segmenters_lock = threading.Lock()


def _segmenter(engine: str, userdict: str | None):
    """One segmenter per engine, dictionary and process: loading a
    dictionary takes up to a second, so every analyzer shares it."""
    if engine not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {engine!r} (use {' or '.join(SEGMENTERS)})")
    key = (engine, userdict)
    seg = _segmenters.get(key)
    if seg is not None:
        # Asked for every field value an indexer analyses: no lock once made.
        return seg
    with _segmenters_lock:
        seg = _segmenters.get(key)
        if seg is None:
            seg = _segmenters[key] = SEGMENTERS[engine](userdict)
        return seg


def get_segmenter(seg: Segmentation | None = None):
    return (seg or Segmentation()).segmenter()


# A letter, digit or ideograph (``str.isalnum``): ``\w`` without "_".
_WORD_CHAR_RE = re.compile(r"[^\W_]")


def _has_word_char(text: str) -> bool:
    return _WORD_CHAR_RE.search(text) is not None


class SpanTokenizer(Tokenizer):
    """Whoosh's tokenizer plumbing, once: subclasses say which tokens a
    value holds (``spans``: text, position, start and end character) and
    this fills in the Token Whoosh reuses."""

    def spans(self, value: str) -> Iterator[tuple[str, int, int, int]]:
        raise NotImplementedError

    def __call__(
        self,
        value,
        positions=False,
        chars=False,
        keeporiginal=False,
        removestops=True,
        start_pos=0,
        start_char=0,
        tokenize=True,
        mode="",
        **kwargs,
    ):
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        for text, pos, start, end in self.spans(value):
            t.text = text
            t.boost = 1.0
            t.stopped = False
            if keeporiginal:
                t.original = text
            if positions:
                t.pos = start_pos + pos
            if chars:
                t.startchar = start_char + start
                t.endchar = start_char + end
            yield t


# --------------------------------------------------------------------------
# Word stream
# --------------------------------------------------------------------------


class ZhTokenizer(SpanTokenizer):
    """Normalizes a text and yields jieba's accurate-mode words."""

    def __init__(self, seg: Segmentation | None = None) -> None:
        self.seg = seg or Segmentation()

    def __eq__(self, other):
        return isinstance(other, ZhTokenizer) and other.seg == self.seg

    def __setstate__(self, state):
        # Indexes written before segmenters were selectable used jieba.
        self.__dict__.update(state)
        if "seg" not in state:
            self.seg = Segmentation(userdict=state.get("userdict"), engine="jieba")

    def spans(self, value: str) -> Iterator[tuple[str, int, int, int]]:
        for i, (word, start, end) in enumerate(self.seg.segmenter().tokenize(normalize(value))):
            yield word, i, start, end


class PunctuationFilter(Filter):
    """Drops whitespace and punctuation tokens; keeps anything with a letter,
    digit or ideograph in it."""

    def __call__(self, tokens):
        for t in tokens:
            if _has_word_char(t.text):
                yield t


class SubwordFilter(Filter):
    """At index time, adds the parts of a token that a query may name alone.

    For a CJK word longer than two characters: its dictionary 2- and 3-grams
    (what jieba's search mode adds). For a token mixing letters and digits
    (``iphone15``): its letter and digit runs. Sub-words share the parent
    token's position and character span.
    """

    def __init__(self, seg: Segmentation | None = None) -> None:
        self.seg = seg or Segmentation()

    def __eq__(self, other):
        return isinstance(other, SubwordFilter) and other.seg == self.seg

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "seg" not in state:
            self.seg = Segmentation(userdict=state.get("userdict"), engine="jieba")

    def __call__(self, tokens):
        seg = None
        for t in tokens:
            yield t
            if t.mode == "query":
                continue
            word = t.text
            if seg is None:
                seg = self.seg.segmenter()
            for part in subwords(word, seg):
                t.text = part
                yield t
            t.text = word


def subwords(word: str, seg) -> Sequence[str]:
    """The parts of an index token a query may name alone (see SubwordFilter)."""
    if len(word) > 2 and is_cjk(word[0]):
        return _dictionary_subwords(word, seg)
    if len(word) > 1 and not word.isalpha() and not word.isdigit():
        parts = _ALNUM_PART_RE.findall(word)
        if len(parts) >= 2:
            return parts
    return ()


def _dictionary_subwords(word: str, seg) -> list[str]:
    out = []
    n = len(word)
    for size in (2, 3):
        if n <= size:
            break
        for i in range(n - size + 1):
            gram = word[i : i + size]
            if seg.is_word(gram):
                out.append(gram)
    return out


def word_analyzer(seg: Segmentation | None = None):
    """The analyzer of the word fields (title, body, tags, author)."""
    return ZhTokenizer(seg) | PunctuationFilter() | SubwordFilter(seg)


def index_words(text: str, seg: Segmentation | None = None) -> list[str]:
    """The terms ``word_analyzer`` indexes for ``text``, in stream order.

    The same chain as plain calls: the indexer's hot path, where Whoosh's
    per-token objects cost more than the segmentation itself.
    """
    segmenter = get_segmenter(seg)
    out: list[str] = []
    append = out.append
    extend = out.extend
    for word in segmenter.words(normalize(text)):
        append(word)
        # Two letters or two ideographs have no parts (see ``subwords``).
        if len(word) > 2 or (len(word) == 2 and not word.isalpha()):
            extend(subwords(word, segmenter))
    return out


def segmentation_of(schema) -> Segmentation | None:
    """The segmentation an index was built with (from its word analyzer)."""
    try:
        analyzer = schema["body"].analyzer
    except KeyError:
        return None
    return segmentation_of_analyzer(analyzer)


def segmentation_of_analyzer(analyzer) -> Segmentation | None:
    for part in getattr(analyzer, "items", [analyzer]):
        if isinstance(part, ZhTokenizer):
            return part.seg
    return None


def query_words(text: str, seg: Segmentation | None = None) -> list[str]:
    """A query's words: normalized, accurate-mode, no sub-words, no punctuation."""
    return get_segmenter(seg).words(normalize(text))


# --------------------------------------------------------------------------
# Gram stream
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gram:
    text: str
    pos: int
    start: int
    end: int


def gram_units(text: str) -> list[tuple[str, int, int]]:
    """The units of a normalized text: CJK characters and Latin/digit runs,
    with their character spans. Whitespace and punctuation are not units, but
    they end a CJK run."""
    return [(m.group(), m.start(), m.end()) for m in _UNIT_RE.finditer(text)]


def non_cjk_units(text: str) -> list[str]:
    """The Latin and number units of a normalized text, as ``gram_units``
    finds them, without walking its CJK characters one by one."""
    return _NON_CJK_UNIT_RE.findall(text)


def _gram_texts(units: Sequence[tuple[str, int, int]]) -> list[str]:
    """One gram per unit, at the unit's position: a CJK character directly
    followed by another gives their bigram, anything else gives itself."""
    out = []
    last = len(units) - 1
    for i, (u, _s, e) in enumerate(units):
        if i < last and len(u) == 1 and is_cjk(u):
            nu, ns, _ne = units[i + 1]
            if ns == e and len(nu) == 1 and is_cjk(nu):
                out.append(u + nu)
                continue
        out.append(u)
    return out


def _grams(units: Sequence[tuple[str, int, int]]) -> list[Gram]:
    return [
        Gram(text, i, units[i][1], units[i + 1][2] if len(text) > len(units[i][0]) else units[i][2])
        for i, text in enumerate(_gram_texts(units))
    ]


def grams(text: str) -> list[Gram]:
    """The gram tokens of a raw text (normalized here)."""
    return _grams(gram_units(normalize(text)))


def index_grams(text: str) -> list[str]:
    """The gram terms of ``text``; a term's position is its index.

    The same terms as ``_gram_texts(gram_units(...))``, a run at a time: a
    CJK run of n characters gives its n-1 bigrams and its last character,
    any other run itself (the indexer's hot path, Chinese text being
    mostly CJK runs).
    """
    return _normalized_grams(normalize(text))


def index_gram_lines(text: str) -> list[list[str]]:
    """``index_grams`` of each line of ``text``, normalized once as a whole
    (normalization leaves line breaks where they are)."""
    return [_normalized_grams(line) for line in normalize(text).split("\n")]


#: Texts longer than this are analysed a piece at a time (see
#: ``text_pieces`` and ``gram_chunks``): one 5 MB record analysed whole
#: took gigabytes, outside the writer's memory budget.
LONG_TEXT_CHARS = 200_000
#: Characters, or grams, in one piece of a long text.
PIECE_CHARS = 65_536
# Text up to its last character jieba never puts inside a word (it cuts
# its blocks there).
_LAST_BLOCK_END_RE = re.compile(r"(?s).*[^\u4e00-\u9fd5a-zA-Z0-9+#&._%\-]")


def text_pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` in consecutive pieces of about ``size`` characters, cut
    after a line break, or else after a character jieba ends its blocks
    at (space, punctuation), so each piece segments as it would in the
    whole; a run of more than ``size`` characters with no such place is
    cut where it must be."""
    start = 0
    while len(text) - start > size:
        end = text.rfind("\n", start, start + size) + 1
        if end <= start:
            last = _LAST_BLOCK_END_RE.match(text, start + size // 2, start + size)
            end = last.end() if last else start + size
        yield text[start:end]
        start = end
    if start < len(text):
        yield text[start:]


def gram_chunks(normalized: str, size: int = PIECE_CHARS) -> Iterator[tuple[int, list[str]]]:
    """The grams of a normalized text, at the positions ``index_gram_lines``
    gives them (lines ``LINE_GAP`` apart), a chunk of about ``size`` grams
    at a time: ``(position of the chunk's first gram, grams)``."""
    base = 0
    for line in normalized.split("\n"):
        pos = base
        out: list[str] = []
        for run in _RUN_RE.findall(line):
            if len(run) > 1 and is_cjk(run[0]):
                for i in range(0, len(run) - 1, size):
                    out.extend(map(str.__add__, run[i : i + size], run[i + 1 : i + size + 1]))
                    if len(out) >= size:
                        yield pos, out
                        pos += len(out)
                        out = []
                out.append(run[-1])
            else:
                out.append(run)
            if len(out) >= size:
                yield pos, out
                pos += len(out)
                out = []
        if out:
            yield pos, out
            pos += len(out)
        base = pos + LINE_GAP


def _normalized_grams(text: str) -> list[str]:
    out: list[str] = []
    extend = out.extend
    append = out.append
    for run in _RUN_RE.findall(text):
        if len(run) > 1 and is_cjk(run[0]):
            extend(map(str.__add__, run, run[1:]))
            append(run[-1])
        else:
            append(run)
    return out


def phrase_grams(text: str) -> list[str]:
    """The gram tokens a document must hold at consecutive positions to
    contain ``text`` contiguously.

    The last character of the phrase's final CJK run is already covered by
    the bigram before it; in the document it may be followed by more CJK
    text, so it is not asked for as a unigram (nor is a lone CJK character
    ending a longer phrase, for the same reason). A phrase that is one CJK
    character long can only be asked as that unigram.
    """
    units = gram_units(normalize(text))
    toks = _grams(units)
    if len(toks) >= 2 and len(toks[-1].text) == 1 and is_cjk(toks[-1].text):
        toks.pop()
    return [g.text for g in toks]


#: Positions left empty between two lines in the gram fields: more than the
#: proximity window (``search.query.Weights.near_slop``), as Lucene's
#: position_increment_gap keeps phrases from spanning two values, so a
#: heading and the line under it are not one passage. Small, so that most
#: positions stay in ``indexer.schema``'s table of encoded single positions.
LINE_GAP = 16


class GramTokenizer(SpanTokenizer):
    """Normalizes a text and yields its gram tokens at unit positions, each
    line ``LINE_GAP`` positions after the last (as ``GramField`` indexes
    them)."""

    def __eq__(self, other):
        return isinstance(other, GramTokenizer)

    def spans(self, value: str) -> Iterator[tuple[str, int, int, int]]:
        pos = start = 0
        for line in normalize(value).split("\n"):
            units = gram_units(line)
            for g in _grams(units):
                yield g.text, pos + g.pos, start + g.start, start + g.end
            pos += len(units) + LINE_GAP
            start += len(line) + 1


def gram_analyzer():
    """The analyzer of the gram fields (title_g, body_g)."""
    return GramTokenizer()


# --------------------------------------------------------------------------
# Exact-match values
# --------------------------------------------------------------------------


class KeywordTokenizer(SpanTokenizer):
    """The whole value as one normalized token, so that ``source:電商前線``
    finds the source ``电商前线``. (Whoosh hands a list value to the field
    as ready-made tokens, bypassing the analyzer: multi-valued fields such
    as tags are normalized with ``normalize_keyword`` by the writer.)"""

    def __eq__(self, other):
        return isinstance(other, KeywordTokenizer)

    def spans(self, value: str) -> Iterator[tuple[str, int, int, int]]:
        text = normalize_keyword(value)
        if text:
            yield text, 0, 0, len(value)


def keyword_analyzer():
    return KeywordTokenizer()
