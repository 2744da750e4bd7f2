"""The query language and its translation into Whoosh queries.

What people type, as on the big search engines::

    跨境电商 物流              all words must match (ranked by BM25F)
    "跨境电商"                 exact phrase (contiguous after normalization)
    亚马逊 -广告               exclude a word or "phrase"
    亚马逊 OR Shopee           either (OR binds tighter than the implicit AND)
    title:物流  author:张三    words in one field
    tag:物流  source:出海日报  exact tag or source (filters, not scored)
    site:help.libreoffice.org  exact site: host, or top folder of local pages
    date:2020-01-01..2020-06-30   a date range; either end may be left open

Parsing gives a small syntax tree (``ParsedQuery``) that knows the words to
highlight; ``compile_query`` turns it into Whoosh queries over the word and
gram fields. A query that cannot be understood raises ``QueryError`` with a
message meant for the person who typed it.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from whoosh import query as wq
from whoosh.matching import WrappingMatcher
from whoosh.query.spans import SpanNear2

from indexer.analysis import (
    Segmentation,
    gram_units,
    index_grams,
    is_cjk,
    normalize,
    normalize_keyword,
    phrase_grams,
    query_words,
)
from indexer.codec import CachingTermsReader
from indexer.schema import GRAM_FIELDS
from search.budget import check_time
from search.matching import AllWords, AnyWord, Scored, Unpruned, with_bonus

#: Longest query accepted, in characters.
MAX_QUERY_CHARS = 1_000
#: Most clauses (words, phrases, filters) in one query.
MAX_CLAUSES = 64
#: Most words (after segmentation) in one query.
MAX_WORDS = 48
#: Most units (characters or Latin words) in one quoted phrase.
MAX_PHRASE_UNITS = 64
#: Most index terms a one-character search may expand to.
MAX_EXPANSION = 512

#: Words that carry no meaning on their own in a query: they may be absent
#: from a matching document (unless they are all the query has). Function
#: words, and the question words of natural-language questions ("我可以……
#: 吗？", "如何……"), which answers rarely repeat: requiring them cost a fifth
#: of nDCG@10 on the InsuranceQA dev questions and changed nothing on the
#: known-item sets.
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 也 都 就 而 着 之 被 把 对 于 以 为 其 这 那 个 吗 呢 吧 啊 地 得 中 上 下 有 将 从 "
    "什么 如何 怎么 怎样 为什么 哪些 哪个 是否 可以 能否 能 会 我 我的 你 你的 他 她 它 我们 需要 应该 要 "
    "有没有 多少 多久 谁 哪里 一个 如果 还是 得到 获得 提供 做 "
    "a an the of to in on for and or is are was be by with at as".split()
)

_FIELD_ALIASES = {
    "title": "title",
    "author": "author",
    "tag": "tag",
    "tags": "tag",
    "source": "source",
    "site": "site",
    "date": "date",
    "标题": "title",
    "作者": "author",
    "标签": "tag",
    "来源": "source",
    "站点": "site",
    "网站": "site",
    "日期": "date",
}
#: Clauses that filter (exact values, ranges) rather than score.
FILTER_KINDS = ("tag", "source", "site", "date")
_QUOTES = {'"': '"', "“": "”", "「": "」"}
_DATE_PART_RE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


class QueryError(ValueError):
    """A query the parser cannot understand; ``field`` names the request
    parameter at fault (``q`` for the query text)."""

    #: The error code the API answers with.
    code = "bad_query"

    def __init__(self, message: str, field: str = "q") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


#: What a plain-text reading of a query drops: quotes and brackets, and
#: operators and signs standing alone.
_QUOTES_RE = re.compile('["“”()（）]')
_OPERATORS = {"OR", "AND", "NOT", "|", "||", "&&", "-", "+"}


def plain_text(text: str) -> str:
    """``text`` with its query syntax taken as plain words: quotes and
    brackets dropped, lone operators dropped, leading signs dropped and
    ``field:`` prefixes turned into words. For a search box, where an
    unbalanced quote or a dangling OR is a typo, not a request."""
    words = []
    for token in _QUOTES_RE.sub(" ", text).split():
        if token.upper() in _OPERATORS:
            continue
        token = token.lstrip("-+")
        head, colon, rest = token.partition(":")
        words.extend(w for w in ((head, rest) if colon else (token,)) if w)
    return " ".join(words)


class TooExpensive(QueryError):
    """The time budget ran out before the query found anything to show."""

    code = "too_expensive"

    def __init__(self) -> None:
        super().__init__(
            "this query needs more work than one search may take (many single characters or exclusions);"
            " use longer words, or quotes around phrases"
        )


@dataclass(frozen=True)
class Clause:
    """One thing the user asked for: words, a phrase or a filter."""

    kind: str  # "words" | "phrase" | "tag" | "source" | "site" | "date"
    value: str
    field: str | None = None  # for words and phrases: None (all) or "title"/"author"
    negated: bool = False
    date_range: tuple[dt.datetime | None, dt.datetime | None] | None = None


@dataclass
class ParsedQuery:
    """The query as the user meant it: groups of alternatives that must all
    match, exclusions, and filters."""

    groups: list[list[Clause]] = field(default_factory=list)
    excluded: list[Clause] = field(default_factory=list)
    filters: list[list[Clause]] = field(default_factory=list)

    def highlight_terms(
        self, seg: Segmentation | None = None, synonyms: Callable[[str], Sequence[str]] | None = None
    ) -> list[str]:
        """Normalized strings to mark in titles and snippets."""
        terms: list[str] = []
        for group in self.groups:
            for clause in group:
                if clause.kind == "phrase":
                    terms.append(normalize(clause.value).strip())
                elif clause.kind == "words":
                    words = query_words(clause.value, seg)
                    meaningful = [w for w in words if w not in STOPWORDS] or words
                    terms.extend(meaningful)
                if synonyms is not None:
                    for text in [clause.value, *query_words(clause.value, seg)]:
                        terms.extend(normalize(alt).strip() for alt in synonyms(text))
        seen: list[str] = []
        for t in terms:
            if t and t not in seen:
                seen.append(t)
        return seen

    def lone_characters(self) -> frozenset[str]:
        """The Chinese characters the query asks for on their own (a word of
        one character, or a phrase of one): these are marked wherever they
        stand; other single characters only as part of a query word."""
        out = set()
        for group in self.groups:
            for clause in group:
                value = normalize(clause.value).strip()
                if clause.kind in ("words", "phrase") and len(value) == 1 and is_cjk(value):
                    out.add(value)
        return frozenset(out)

    @property
    def has_positive(self) -> bool:
        return bool(self.groups)


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


@dataclass
class _Token:
    text: str
    quoted: bool
    negated: bool
    field: str | None
    is_or: bool = False


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        negated = False
        if ch in "-－" and i + 1 < n and not text[i + 1].isspace():
            negated = True
            i += 1
        fieldname = None
        m = re.match(r"([A-Za-z]+|[\u4e00-\u9fff]{2}):", text[i:])
        if m and m.group(1).lower() in _FIELD_ALIASES:
            fieldname = _FIELD_ALIASES[m.group(1).lower()]
            i += len(m.group(0))
            if i >= n or text[i].isspace():
                raise QueryError(f"{m.group(0)} needs a value right after the colon")
        if i < n and text[i] in _QUOTES:
            close = _QUOTES[text[i]]
            end = text.find(close, i + 1)
            if end < 0:
                raise QueryError(f"unbalanced quote: {text[i]} at character {i + 1} is never closed")
            tokens.append(_Token(text[i + 1 : end], True, negated, fieldname))
            i = end + 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in _QUOTES:
            j += 1
        word = text[i:j]
        i = j
        if not negated and fieldname is None and word in ("OR", "|"):
            tokens.append(_Token(word, False, False, None, is_or=True))
            continue
        if not word:
            # "-" or "title:" directly before a quote was handled above;
            # a bare sign or field name is taken literally.
            word = text[start:j]
            negated, fieldname = False, None
        tokens.append(_Token(word, False, negated, fieldname))
    return tokens


def parse_query(text: str) -> ParsedQuery:
    """Parse what the user typed; raises QueryError on what cannot be meant."""
    if text is None:
        raise QueryError("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    text = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in text)
    tokens = _lex(text)
    if len(tokens) > MAX_CLAUSES:
        raise QueryError(f"the query has more than {MAX_CLAUSES} words or operators")
    parsed = ParsedQuery()
    pending_or = False
    for tok in tokens:
        if tok.is_or:
            if not (parsed.groups or parsed.filters) or pending_or:
                raise QueryError("OR needs a word on each side")
            pending_or = True
            continue
        clause = _clause(tok)
        if clause is None:
            continue
        if clause.negated:
            if pending_or:
                raise QueryError("OR cannot join an excluded word")
            parsed.excluded.append(clause)
            continue
        target = parsed.filters if clause.kind in FILTER_KINDS else parsed.groups
        if pending_or:
            last = parsed.groups[-1] if target is parsed.groups and parsed.groups else None
            last_f = parsed.filters[-1] if target is parsed.filters and parsed.filters else None
            if last is not None and (parsed.groups and target is parsed.groups):
                last.append(clause)
            elif last_f is not None and last_f[0].kind == clause.kind:
                last_f.append(clause)
            else:
                raise QueryError("OR must join two words, or two filters of the same kind")
            pending_or = False
            continue
        target.append([clause])
    if pending_or:
        raise QueryError("OR needs a word on each side")
    if not parsed.groups and not parsed.filters:
        if parsed.excluded:
            raise QueryError("the query only excludes; add a word to search for")
        raise QueryError("the query is empty")
    return parsed


def _clause(tok: _Token) -> Clause | None:
    value = tok.text.strip()
    if tok.field in ("tag", "source", "site"):
        if not normalize_keyword(value):
            raise QueryError(f"{tok.field}: needs a value")
        return Clause(tok.field, value, negated=tok.negated)
    if tok.field == "date":
        return Clause("date", value, negated=tok.negated, date_range=parse_date_range(value))
    if not any(ch.isalnum() for ch in value):
        return None  # punctuation only: nothing to search for
    kind = "phrase" if tok.quoted else "words"
    return Clause(kind, value, field=tok.field, negated=tok.negated)


def parse_date_range(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``2020-01-01..2020-06-30``, ``2020..``, ``..2020-06``, or one date,
    month or year; ends are inclusive."""
    text = text.strip()
    if ".." in text:
        lo_text, hi_text = text.split("..", 1)
    else:
        lo_text = hi_text = text
    lo = _date_bound(lo_text, upper=False) if lo_text.strip() else None
    hi = _date_bound(hi_text, upper=True) if hi_text.strip() else None
    if lo is None and hi is None:
        raise QueryError(f"date: needs a date or a range such as 2020-01-01..2020-06-30, not {text!r}")
    if lo is not None and hi is not None and lo > hi:
        raise QueryError(f"date range {text!r} ends before it starts")
    return lo, hi


def _date_bound(text: str, upper: bool) -> dt.datetime:
    m = _DATE_PART_RE.match(text.strip())
    if not m:
        raise QueryError(f"not a date: {text!r} (use YYYY, YYYY-MM or YYYY-MM-DD)")
    year = int(m[1])
    month = int(m[2]) if m[2] else None
    day = int(m[3]) if m[3] else None
    try:
        if not upper:
            return dt.datetime(year, month or 1, day or 1)
        if day is not None:
            return dt.datetime(year, month, day, 23, 59, 59)
        if month is not None:
            nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
            return dt.datetime.combine(nxt - dt.timedelta(days=1), dt.time(23, 59, 59))
        return dt.datetime(year, 12, 31, 23, 59, 59)
    except ValueError:
        raise QueryError(f"not a date: {text!r}") from None


# --------------------------------------------------------------------------
# Compiling
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """Field weights and the share given to looser kinds of match.

    Whole-word matches in the word fields rank above gram (sub-word or
    cross-segmentation) matches; a query found as one contiguous string earns
    a proximity bonus. Values chosen by benchmarks/tune.py on the dev splits
    of knownitem_html and knownitem_poetry (MRR@10 0.910 and 0.978); ``near``
    went from 12 to 20 once the bonus stopped spanning two lines (html
    0.9214 to 0.9266, poetry 0.9778 at both).

    Questions (``question_*``) were set on InsuranceQA dev questions outside
    the 1000 that ``search eval --sample 1000 --seed 0`` draws (as
    benchmarks/tune.py leaves them out), then checked on those. On 300
    tuning questions nDCG@10 went from 0.2238 to 0.2310 with the gram bag,
    0.2435 ranking every question by any word (not only those of four words
    or more), 0.2504 without the per-word phrase grams the bag repeats; on
    1000, from 0.2451 there to 0.2533 with ``question_k1`` 0.5 and 0.2554
    with the question idf, 0.2652 with the second look by characters
    (``question_chars`` 0.35, 0.5, 0.7: 0.2638, 0.2652, 0.2629;
    ``question_chars_b`` 0.6 and 0.9: 0.2649; a window of 50 or 200:
    0.2653 and 0.2652). The known-item sets have no question and are
    unchanged.
    """

    title: float = 2.0
    lead: float = 1.5
    body: float = 1.0
    tags: float = 0.5
    author: float = 2.0
    gram: float = 0.4
    proximity: float = 0.5
    #: Bonus for documents whose title, lead or body holds the query's words
    #: in order within ``near_slop`` units of each other.
    near: float = 20.0
    near_slop: int = 12
    #: BM25F saturation and length normalization (per field where given).
    k1: float = 1.2
    b: float = 0.65
    title_b: float = 0.5
    lead_b: float = 0.3
    #: A plain query that asks (a question mark, 吗, 如何, 什么 …) with at
    #: least this many content words reads as a question, not as keywords:
    #: it is ranked by BM25 over any of its words and grams (no
    #: all-words-first, no proximity bonus), and the lead counts
    #: ``question_lead`` instead of ``lead``. Keyword queries, however long
    #: (a remembered verse line), keep all-words-first.
    question_words: int = 1
    question_lead: float = 0.5
    #: A question also asks for each of its grams (every pair of adjacent
    #: characters, across word boundaries too) in the title and body, as
    #: independent terms at this share of the field's weight.
    question_grams: float = 0.5
    #: BM25 saturation for questions: an answer that holds more of the
    #: question's words should beat one that repeats a few of them.
    question_k1: float = 0.5
    #: A question's first ``question_window`` results are re-ranked with
    #: a BM25 score over the characters of its content words (see
    #: search/rescore.py), blended in at this weight relative to the first
    #: score, and with this length normalization.
    question_chars: float = 0.5
    question_chars_b: float = 0.75
    question_window: int = 100

    def weighting(self, question: bool = False):
        """BM25F with these parameters; with ``question``, a question's own
        saturation (``question_k1``) and idf (see ``ProbabilisticBM25F``)."""
        from whoosh import scoring

        from search.scoring import ProbabilisticBM25F

        if question:
            return ProbabilisticBM25F(B=self.b, K1=self.question_k1, title_B=self.title_b, lead_B=self.lead_b)
        return scoring.BM25F(B=self.b, K1=self.k1, title_B=self.title_b, lead_B=self.lead_b)


DEFAULT_WEIGHTS = Weights()


@dataclass
class CompiledQuery:
    strict: wq.Query
    loose: wq.Query | None
    #: The query reads as a question: ``strict`` is already the any-word
    #: query (there is no ``loose`` to fall back to).
    rank_loose: bool
    filter: wq.Query | None
    exclude: wq.Query | None
    #: For a question ranked by any word: the documents holding every
    #: word (counted, not ranked). None otherwise.
    every: wq.Query | None = None


def compile_query(
    parsed: ParsedQuery,
    seg: Segmentation | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
    synonyms: Callable[[str], Sequence[str]] | None = None,
) -> CompiledQuery:
    """Whoosh queries for a parsed query: ``strict`` (every group must
    match) and ``loose`` (any group may, for the any-word fallback; None when
    the strict query has nothing to loosen).

    A question (see ``_is_question``) gets ``rank_loose``: its ``strict``
    query is the any-word query, without a proximity part and with the
    lead weighted ``question_lead``."""
    question = _is_question(parsed, seg, weights)
    if question:
        # The gram bag (``_Builder.gram_bag``) holds every gram of each word.
        weights = dataclasses.replace(weights, lead=weights.question_lead, gram=0.0)
    builder = _Builder(seg, weights, synonyms)
    required: list[wq.Query] = []
    optional: list[wq.Query] = []
    units_for_loose: list[wq.Query] = []
    for group in parsed.groups:
        alternatives = []
        for clause in group:
            req, opt = builder.clause(clause)
            alternatives.append(req)
            optional.extend(opt)
        req_q = alternatives[0] if len(alternatives) == 1 else wq.Or(alternatives)
        required.append(req_q)
        units_for_loose.extend(_units(req_q))
    near = builder.near(content_words(parsed, seg))
    if near is not None:
        optional.append(near)
    filter_q = _filters(parsed.filters)
    exclude_q = None
    if parsed.excluded:
        excluded = [builder.excluded(c) for c in parsed.excluded]
        exclude_q = excluded[0] if len(excluded) == 1 else wq.Or(excluded)
    if required:
        strict: wq.Query = AllWords(required)
        if optional:
            strict = WithBonus(strict, wq.Or(optional))
    else:
        strict = wq.Every()
    loose = None
    if question:
        units_for_loose.extend(builder.gram_bag(parsed))
    if len(units_for_loose) > 1:
        loose = AnyWord(units_for_loose)
        if optional and not question:
            loose = WithBonus(loose, wq.Or(optional))
    rank_loose = question and loose is not None
    every = None
    if rank_loose:
        # Nothing to fall back to: the question is ranked by any word at once.
        every = AllWords(required) if required else None
        strict, loose = Weighted(loose, weights.weighting(question=True)), None
    return CompiledQuery(
        strict=strict, loose=loose, rank_loose=rank_loose, filter=filter_q, exclude=exclude_q, every=every
    )


def _is_question(parsed: ParsedQuery, seg: Segmentation | None, weights: Weights) -> bool:
    """Whether a query reads as a natural-language question: only plain
    words (no quotes, fields or OR), something that asks (see
    ``_ASKING_RE``), and at least ``question_words`` content words.

    Counting words alone took long keyword queries (remembered verse lines)
    for questions, ranking them by any word: slower, and no better."""
    content = 0
    asks = False
    for group in parsed.groups:
        if len(group) != 1 or group[0].kind != "words" or group[0].field is not None:
            return False
        asks = asks or _ASKING_RE.search(group[0].value) is not None
        content += sum(1 for w in query_words(group[0].value, seg) if w not in STOPWORDS)
    return asks and content >= weights.question_words


#: What makes a query ask: a question mark, or a modern interrogative word
#: or particle. 5,059 of the 5,081 InsuranceQA dev questions have one; no
#: known-item query does. (Classical 何 alone is left out: verse has it.)
_ASKING_RE = re.compile(
    r"[？?]|吗|如何|什么|怎么|怎样|怎麼|是否|能否|可否|为什么|為什麼|哪|多少|何时|何時|"
    r"\b(?:how|what|why|when|where|which|who|can|does|do|is|are|should)\b",
    re.IGNORECASE,
)


def content_words(parsed: ParsedQuery, seg: Segmentation | None = None) -> list[str]:
    """The query's content words (and phrases) in order, without stopwords:
    the chain of the proximity bonus, and what a question's second look
    (search/rescore.py) reads its characters from. Only groups without
    alternatives: an OR has no single order."""
    texts: list[str] = []
    for group in parsed.groups:
        if len(group) != 1 or group[0].field is not None:
            continue
        clause = group[0]
        if clause.kind == "phrase":
            texts.append(clause.value)
        else:
            texts.extend(w for w in query_words(clause.value, seg) if w not in STOPWORDS)
    return texts


class CappedPrefix(wq.Prefix):
    """A prefix query that expands to at most MAX_EXPANSION terms, so one
    common character cannot make a query scan the whole vocabulary.

    Where only the documents matter (an exclusion), they are read once
    from the posting lists of its terms (``docs``), not through Whoosh's
    union of hundreds of term matchers: a query excluding eight common
    characters spent seconds advancing those unions document by document.
    """

    def _btexts(self, ixreader):
        return itertools.islice(super()._btexts(ixreader), MAX_EXPANSION)

    def docs(self, searcher):
        """The documents of the expansion's terms: read with each term's
        dictionary entry, which holds the postings of a term in one
        document (most bigrams) without a posting list to open."""
        reader = searcher.reader()
        found: set[int] = set()
        terms = itertools.islice(reader.iter_prefix(self.fieldname, self.text), MAX_EXPANSION)
        for i, (btext, info) in enumerate(terms):
            if not i & 63:
                check_time()
            if info.is_inlined():
                found.update(info.inlined_postings()[0])
            else:
                found.update(reader.postings(self.fieldname, btext).all_ids())
        return iter(sorted(found))


def query_docs(q: wq.Query, searcher) -> set[int]:
    """The documents a query matches, without scoring and without building
    its matcher tree: unions and intersections of the parts' documents,
    segment by segment as matchers see them (a capped prefix expands per
    segment). Exclusions are resolved this way once per query."""
    return {docnum + offset for leaf, offset in searcher.leaf_searchers() for docnum in _segment_docs(q, leaf)}


def _segment_docs(q: wq.Query, searcher) -> set[int]:
    check_time()
    if isinstance(q, wq.Or):
        found: set[int] = set()
        for sub in q.subqueries:
            found |= _segment_docs(sub, searcher)
        return found
    if isinstance(q, wq.And):
        parts = sorted((_segment_docs(sub, searcher) for sub in q.subqueries), key=len)
        return set.intersection(*parts) if parts else set()
    if q is wq.NullQuery:
        return set()
    return set(q.docs(searcher))


class Near(SpanNear2):
    """Whoosh's ordered span query, with a size estimate that works.

    ``SpanNear2._and_query`` names a module it never imports, so estimating
    its size raised NameError. Whoosh estimates sizes to balance a union of
    three or more parts on a large segment, so a query with the proximity
    bonus in every searchable field failed there.
    """

    def _and_query(self) -> wq.And:
        return wq.And(self.qs)


class Weighted(wq.WrappingQuery):
    """Scores its child with its own weighting model instead of the
    searcher's (a question's BM25 parameters)."""

    def __init__(self, child: wq.Query, weighting) -> None:
        super().__init__(child)
        self.weighting = weighting

    def _rewrap(self, child: wq.Query) -> Weighted:
        return self.__class__(child, self.weighting)

    def matcher(self, searcher, context=None):
        if context is None:
            context = searcher.context()
        return self.child.matcher(searcher, context.set(weighting=self.weighting))


class Boosted(wq.WrappingQuery):
    """Applies a boost to a query that ignores its own (span queries)."""

    def __init__(self, child: wq.Query, boost: float = 1.0) -> None:
        super().__init__(child)
        self.boost = boost

    def _rewrap(self, child: wq.Query) -> Boosted:
        return self.__class__(child, self.boost)

    def matcher(self, searcher, context=None):
        m = self.child.matcher(searcher, context)
        return m if self.boost == 1.0 else WrappingMatcher(m, boost=self.boost)


class WithBonus(wq.AndMaybe):
    """``a``'s matches, with ``b``'s score added where ``b`` matches too.

    ``b`` (the proximity spans and phrases, optional words) asks for many
    terms in the gram fields, and building its matchers was half of a
    typical query. In a segment where ``a`` matches nothing they would
    score nothing, so they are not built there.
    """

    def matcher(self, searcher, context=None):
        a = self.a.matcher(searcher, context)
        if not a.is_active():
            return a
        b = self.b.matcher(searcher, context)
        if isinstance(a, Scored):
            return with_bonus(a, b)
        return self.matcherclass(a, b)


class Exhaustive(wq.WrappingQuery):
    """Scores every document its child matches.

    Whoosh's collector periodically asks the matcher tree to drop the parts
    that cannot lift a document into the current top N (``replace`` with the
    lowest score kept so far), even with ``optimize=False``. That relies on
    each matcher's upper bound (``max_quality``), and some bounds are too
    low: an ``Or`` over a small segment preloads its matches and reports the
    largest bound of its parts instead of their sum. Pruned on that bound,
    an ``And`` of such ``Or`` parts silently skips documents that belong in
    the top results (and out of the total). This wrapper turns the pruning
    off, so the ranking is exact whatever the page size.
    """

    def _rewrap(self, child: wq.Query) -> Exhaustive:
        return self.__class__(child)

    def matcher(self, searcher, context=None):
        # Asked once per segment: the terms' bytes are worked out once.
        encoded = self.__dict__.setdefault("_encoded", {})
        child = _present(self.child, searcher.reader(), encoded)
        if child is wq.NullQuery:
            return wq.NullQuery.matcher(searcher, context)
        return Unpruned(child.matcher(searcher, context))


def _present(q: wq.Query, reader, encoded: dict | None = None) -> wq.Query:
    """``q`` without the parts that cannot match in ``reader`` (one
    segment): terms it does not hold, and what requires them.

    A query asks for each word in up to eight fields, and most words are
    missing from most of them. Whoosh still builds a matcher for every
    missing term and keeps it in the union tree it walks for each document;
    with ``optimize=False`` the tree is never trimmed. Dropping them first
    leaves the scores as they were (a missing term adds nothing) and made
    matching the larger share of a query's time cheaper. ``encoded``
    keeps each term's bytes for the next segment (see ``_holds``).
    """
    if encoded is None:
        encoded = {}
    if isinstance(q, wq.Term):
        return q if _holds(reader, q.fieldname, q.text, encoded) else wq.NullQuery
    if isinstance(q, wq.Phrase):
        return q if all(_holds(reader, q.fieldname, w, encoded) for w in q.words) else wq.NullQuery
    if isinstance(q, SpanNear2):
        return q if all(_present(sub, reader, encoded) is not wq.NullQuery for sub in q.qs) else wq.NullQuery
    if isinstance(q, wq.Or | wq.And):
        subs = [_present(sub, reader, encoded) for sub in q.subqueries]
        if isinstance(q, wq.And):
            if any(sub is wq.NullQuery for sub in subs):
                return wq.NullQuery
        else:
            subs = [sub for sub in subs if sub is not wq.NullQuery]
            if not subs:
                return wq.NullQuery
        out = copy.copy(q)
        out.subqueries = subs
        return out
    if isinstance(q, wq.AndMaybe | wq.AndNot):
        a = _present(q.a, reader, encoded)
        if a is wq.NullQuery:
            return wq.NullQuery
        b = _present(q.b, reader, encoded)
        if b is wq.NullQuery:
            return a
        out = copy.copy(q)
        out.a, out.b = a, b
        return out
    if isinstance(q, Boosted | Exhaustive | Weighted):
        child = _present(q.child, reader, encoded)
        return wq.NullQuery if child is wq.NullQuery else q._rewrap(child)
    return q


def _holds(reader, fieldname: str, text: str, encoded: dict) -> bool:
    """``(fieldname, text) in reader``, asked of our codec's term table
    directly: Whoosh's way checks the schema and encodes the text again in
    every segment for each of the 50-300 terms a query asks about, which
    took a third of the time spent trimming queries. ``encoded`` maps
    (field, text) to the term's bytes (None: no such field)."""
    terms = getattr(reader, "_terms", None)
    if not isinstance(terms, CachingTermsReader) or reader.is_closed:
        return (fieldname, text) in reader
    key = (fieldname, text)
    try:
        tbytes = encoded[key]
    except KeyError:
        schema = reader.schema
        tbytes = encoded[key] = schema[fieldname].to_bytes(text) if fieldname in schema else None
    return tbytes is not None and terms._info(fieldname, tbytes) is not None


def _units(q: wq.Query) -> list[wq.Query]:
    """The separately satisfiable parts of a required query (its And parts)."""
    if isinstance(q, wq.And):
        return list(q.subqueries)
    return [q]


class _Builder:
    def __init__(
        self, seg: Segmentation | None, weights: Weights, synonyms: Callable[[str], Sequence[str]] | None = None
    ) -> None:
        self.seg = seg
        self.synonyms = synonyms or (lambda text: ())
        self.w = weights
        self.word_count = 0

    def words(self, text: str) -> list[str]:
        """The words of ``text``, counted against the query's word budget."""
        words = query_words(text, self.seg)
        self.word_count += len(words)
        if self.word_count > MAX_WORDS:
            raise QueryError(f"the query has more than {MAX_WORDS} words; shorten it")
        return words

    def _word_fields(self, restrict: str | None) -> list[tuple[str, float]]:
        w = self.w
        if restrict == "title":
            return [("title", w.title)]
        if restrict == "author":
            return [("author", w.author)]
        return [("title", w.title), ("lead", w.lead), ("body", w.body), ("tags", w.tags), ("author", w.author)]

    def _gram_fields(self, restrict: str | None) -> list[tuple[str, float]]:
        if restrict == "author":
            return []
        w = self.w
        fields = [("title", w.title), ("lead", w.lead), ("body", w.body)]
        if restrict == "title":
            fields = fields[:1]
        return [(GRAM_FIELDS[f], weight) for f, weight in fields]

    def phrase(self, text: str, restrict: str | None, boost: float = 1.0, slop: int = 1) -> wq.Query | None:
        """Match ``text`` as contiguous units in the gram fields."""
        if restrict == "author":
            # Names are short and have no gram field: all their words.
            terms = [wq.Term("author", w, boost=self.w.author * boost) for w in query_words(text, self.seg)]
            return None if not terms else terms[0] if len(terms) == 1 else wq.And(terms)
        grams = phrase_grams(text)
        if not grams:
            return None
        if len(grams) > MAX_PHRASE_UNITS:
            raise QueryError(f"a phrase may hold at most {MAX_PHRASE_UNITS} characters or words")
        parts: list[wq.Query] = []
        for fieldname, weight in self._gram_fields(restrict):
            if len(grams) == 1:
                parts.append(wq.Term(fieldname, grams[0], boost=weight * boost))
            else:
                parts.append(wq.Phrase(fieldname, grams, slop=slop, boost=weight * boost))
        return parts[0] if len(parts) == 1 else wq.Or(parts)

    def near(self, texts: Sequence[str]) -> wq.Query | None:
        """The words in order, each within ``near_slop`` units of the last,
        in the title, the lead or the body."""
        if len(texts) < 2:
            return None
        parts: list[wq.Query] = []
        for fieldname, weight in (
            (GRAM_FIELDS["title"], self.w.title),
            (GRAM_FIELDS["lead"], self.w.lead),
            (GRAM_FIELDS["body"], self.w.body),
        ):
            spans: list[wq.Query] = []
            for text in texts:
                grams = phrase_grams(text)
                if len(grams) == 1 and not (len(grams[0]) == 1 and is_cjk(grams[0])):
                    spans.append(wq.Term(fieldname, grams[0]))
                elif len(grams) > 1:
                    spans.append(wq.Phrase(fieldname, grams))
            if len(spans) >= 2:
                near = Near(spans, slop=self.w.near_slop, ordered=True, mindist=1)
                parts.append(Boosted(near, self.w.near * weight))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else wq.Or(parts)

    def gram_bag(self, parsed: ParsedQuery) -> list[wq.Query]:
        """Each gram of a question's words, on its own, in the title and
        body gram fields.

        A question shares few whole words with its answers, and jieba cuts
        the two differently ("新车手" is 新 + 车手 in a question, 新车 in an
        answer). Scoring every bigram, those across the query's word
        boundaries included, finds the overlap the word fields miss: on
        InsuranceQA tuning questions it was the larger part of the gain over
        words and per-word phrases alone. Lone characters are left out:
        the gram fields hold one only where a run of text ends.
        """
        grams: dict[str, None] = {}
        for group in parsed.groups:
            for clause in group:
                if clause.kind == "words":
                    grams.update((g, None) for g in index_grams(clause.value) if not (len(g) == 1 and is_cjk(g)))
        fields = [(GRAM_FIELDS["title"], self.w.title), (GRAM_FIELDS["body"], self.w.body)]
        return [
            wq.Term(fieldname, gram, boost=weight * self.w.question_grams)
            for gram in grams
            for fieldname, weight in fields
        ]

    def word(self, word: str, context: Sequence[str], index: int, restrict: str | None) -> wq.Query:
        """One query word: a whole-word match in any word field, or the same
        characters contiguous in a gram field (where jieba cut the document
        differently)."""
        parts: list[wq.Query] = [
            wq.Term(fieldname, word, boost=weight) for fieldname, weight in self._word_fields(restrict)
        ]
        if self.w.gram:  # zero for questions: their gram bag holds these grams
            parts.extend(self._gram_parts(word, context, index, restrict))
        return wq.Or(parts)

    def _gram_parts(self, word: str, context: Sequence[str], index: int, restrict: str | None) -> list[wq.Query]:
        gram_text = word
        if len(word) == 1 and is_cjk(word):
            # A lone character: ask for it with a neighbour from the query.
            if index + 1 < len(context) and is_cjk(context[index + 1][:1]):
                gram_text = word + context[index + 1][0]
            elif index > 0 and is_cjk(context[index - 1][-1:]):
                gram_text = context[index - 1][-1] + word
        if len(gram_units(normalize(gram_text))) > 1:
            # Several units (CJK characters, or letters and digits as in
            # "iphone15"): the same units contiguous in a gram field.
            gq = self.phrase(gram_text, restrict, boost=self.w.gram)
            return [] if gq is None else [gq]
        if len(word) == 1 and is_cjk(word):
            # A character typed alone: wherever it stands, inside any word.
            return [
                CappedPrefix(fieldname, word, boost=weight * self.w.gram, constantscore=True)
                for fieldname, weight in self._gram_fields(restrict)
            ]
        return []

    def clause(self, clause: Clause) -> tuple[wq.Query, list[wq.Query]]:
        """(required part, optional boosts) of a positive clause."""
        if clause.kind == "phrase":
            q = self.phrase(clause.value, clause.field)
            if q is None:
                raise QueryError(f"nothing to search for in {clause.value!r}")
            return self._with_synonyms(q, clause.value, clause.field), []
        words = self.words(clause.value)
        if not words:
            raise QueryError(f"nothing to search for in {clause.value!r}")
        meaningful = [i for i, w in enumerate(words) if w not in STOPWORDS] or list(range(len(words)))
        required = [
            self._with_synonyms(self.word(words[i], words, i, clause.field), words[i], clause.field) for i in meaningful
        ]
        optional: list[wq.Query] = [
            self.word(w, words, i, clause.field) for i, w in enumerate(words) if i not in meaningful
        ]
        if len(words) > 1:
            # The words together and in order, as typed: a proximity bonus.
            near = self.phrase(clause.value, clause.field, boost=self.w.proximity)
            if near is not None:
                optional.append(near)
        req = required[0] if len(required) == 1 else wq.And(required)
        if len(words) > 1:
            req = self._with_synonyms(req, clause.value, clause.field)
        return req, optional

    def _with_synonyms(self, query: wq.Query, text: str, restrict: str | None) -> wq.Query:
        """``query``, or any of the synonyms of ``text`` (each matched as
        its own words)."""
        alternatives = []
        for alt in self.synonyms(text):
            words = query_words(alt, self.seg)
            parts = [self.word(w, words, i, restrict) for i, w in enumerate(words) if w not in STOPWORDS]
            if parts:
                alternatives.append(parts[0] if len(parts) == 1 else wq.And(parts))
        return wq.Or([query, *alternatives]) if alternatives else query

    def excluded(self, clause: Clause) -> wq.Query:
        if clause.kind in FILTER_KINDS:
            return _filter_clause(clause)
        if clause.kind == "phrase":
            q = self.phrase(clause.value, clause.field)
        else:
            words = self.words(clause.value)
            parts = [self.word(w, words, i, clause.field) for i, w in enumerate(words)]
            q = None if not parts else parts[0] if len(parts) == 1 else wq.And(parts)
        return q if q is not None else wq.NullQuery


def _filter_clause(clause: Clause) -> wq.Query:
    if clause.kind == "date":
        lo, hi = clause.date_range or (None, None)
        return wq.DateRange("date", lo, hi)
    return wq.Term(clause.kind, normalize_keyword(clause.value))


def _filters(groups: list[list[Clause]]) -> wq.Query | None:
    parts: list[wq.Query] = []
    for group in groups:
        qs = [_filter_clause(c) for c in group]
        parts.append(qs[0] if len(qs) == 1 else wq.Or(qs))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else wq.And(parts)
