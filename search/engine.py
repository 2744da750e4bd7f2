"""The search engine the CLI and the web app talk to.

``SearchEngine`` keeps one Whoosh searcher open per process and moves to a
new one only when the index has committed something new, opening just the
segments the commit added (``search.readers``), so fresh articles appear
without a restart and an unchanged index costs nothing to reuse. A serving
worker does that in a background thread (``search.background``); a command
does it on the request that first sees the commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from whoosh import query as wq
from whoosh.searching import Searcher

from indexer.analysis import get_segmenter, normalize_keyword, segmentation_of
from indexer.config import Settings
from indexer.sites import display_url, host_of
from indexer.store import IndexDamaged, IndexMissing, IndexStore, changed_files, is_read_error
from indexer.threads import native_lock
from indexer.writer import stored_to_record
from search.background import Refresher
from search.budget import time_budget
from search.collect import RESCORE_WINDOW, Candidate, Candidates, Plan, collect, rank
from search.facets import facet_counts, overview_counts, segment_facets
from search.frequent import title_frequencies
from search.highlight import highlight_all, snippet
from search.query import (
    DEFAULT_WEIGHTS,
    ParsedQuery,
    QueryError,
    TooExpensive,
    Weights,
    compile_query,
    content_words,
    parse_query,
    plain_text,
)
from search.readers import CommitSearcher, ReaderPool
from search.rescore import question_units
from search.spelling import Speller
from search.suggest import Completions
from search.synonyms import Synonyms
from search.terms import field_lengths

SORTS = ("relevance", "date")
#: Answers kept per process (for the current index commit only).
CACHE_SIZE = 512
#: How often a serving worker's refresher looks for a new commit (seconds).
REFRESH_SECONDS = 0.2
#: Answers of the old commit that the refresher computes again for a new
#: one before swapping it in (as Solr's autowarm): the most recently used
#: of those asked again after they were first computed (an answer asked
#: once is as likely never to be asked again, and re-answering it on every
#: commit cost each worker 0.2 s of CPU per commit under a load of new
#: queries), and for how long at most: it delays the commit's freshness.
AUTOWARM = 32
AUTOWARM_SECONDS = 0.2
#: A query finding fewer articles than this gets a did-you-mean.
SUGGEST_BELOW = 3
#: Deepest result a caller may page to (page × size).
MAX_RESULT_DEPTH = 10_000


@dataclass
class SearchRequest:
    """What a caller asks; validated here so the CLI and API agree."""

    q: str
    page: int = 1
    size: int | None = None
    sort: str = "relevance"
    tags: Sequence[str] = ()
    sources: Sequence[str] = ()
    sites: Sequence[str] = ()
    since: dt.date | None = None
    until: dt.date | None = None
    snippets: bool = True
    facets: bool = False
    #: False for a search box: a query the parser rejects for its syntax
    #: (an unbalanced quote, a dangling OR) is searched as plain words.
    strict: bool = True
    #: A query that finds nothing is answered with its correction, when
    #: one finds every word (as search engines do with a typo).
    autocorrect: bool = True
    #: Blend a date decay into relevance (for news-like corpora).
    recent: bool = False


@dataclass
class Hit:
    id: str
    url: str | None
    title: str | None
    title_html: str
    snippet_html: str
    tags: list[str]
    source: str | None
    author: str | None
    published: str | None
    score: float
    #: The host, or the top folder a page was indexed from.
    site: str | None = None
    #: A readable trail to the page (``host › folder › page``).
    display_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SearchResult:
    query: str
    total: int
    took_ms: float
    page: int
    size: int
    sort: str
    fallback: bool
    hits: list[Hit] = field(default_factory=list)
    facets: dict[str, list[dict[str, Any]]] | None = None
    #: A corrected query (pinyin, homophone typos) when this one found little.
    suggestion: str | None = None
    #: The time budget ran out: these are the best of the matches found
    #: by then (the total counts those), not of all.
    partial: bool = False
    #: The words searched instead of the query, when its syntax was broken
    #: and the request was not strict.
    interpreted_as: str | None = None
    #: For an any-word ranking (a question, a fallback): how many of the
    #: ``total`` hold every word; the rest hold some. None otherwise.
    all_words: int | None = None
    #: ``{"from": typed, "to": searched}`` when the typed query found
    #: nothing and these are its correction's results.
    corrected: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "total": self.total,
            "took_ms": round(self.took_ms, 2),
            "page": self.page,
            "size": self.size,
            "sort": self.sort,
            "fallback": self.fallback,
            "results": [h.to_dict() for h in self.hits],
            "facets": self.facets,
            "suggestion": self.suggestion,
            "partial": self.partial,
            "interpreted_as": self.interpreted_as,
            "all_words": self.all_words,
            "corrected": self.corrected,
        }


def cached_answer(
    cache: OrderedDict[tuple, tuple[SearchRequest, SearchResult]],
    key: tuple,
    started: float,
    reused: set[tuple] | None = None,
) -> SearchResult | None:
    """The answer cached under ``key`` (its time: the lookup's), now the
    most recently used, and noted in ``reused``; None when there is none."""
    cached = cache.get(key)
    if cached is None:
        return None
    with contextlib.suppress(KeyError):  # another thread's answer pushed it out
        cache.move_to_end(key)
    if reused is not None:
        reused.add(key)
    return dataclasses.replace(cached[1], took_ms=(time.perf_counter() - started) * 1000)


def keep_answer(
    cache: OrderedDict[tuple, tuple[SearchRequest, SearchResult]],
    key: tuple,
    request: SearchRequest,
    result: SearchResult,
    reused: set[tuple] | None = None,
) -> None:
    """Cache ``result``, keeping the ``CACHE_SIZE`` most recently used (and
    ``reused`` to those); a partial answer depends on how busy the machine
    was, and is not kept."""
    if result.partial:
        return
    cache[key] = (request, result)
    while len(cache) > CACHE_SIZE:
        gone = cache.popitem(last=False)[0]
        if reused is not None:
            reused.discard(gone)


@dataclass
class _Live:
    """One commit as requests see it."""

    version: str
    searcher: Searcher
    #: Its segment files' (size, inode), checked before each use.
    files: dict[str, tuple[int, int]]
    segmentation: Any
    #: Answers for this commit: key -> (request, result).
    cache: OrderedDict[tuple, tuple[SearchRequest, SearchResult]] = field(default_factory=OrderedDict)
    #: Keys of the answers asked again from the cache.
    reused: set[tuple] = field(default_factory=set)


class SearchEngine:
    """Searches one index folder (its live generation).

    What a request searches is one ``_Live`` state: a searcher over one
    commit, and the answers cached for it. A new commit becomes a new
    state, swapped in whole. A one-shot command (and the test client) makes
    it on the request that first sees the commit; a serving worker starts
    ``start_refresher`` instead, and its requests never wait for a reopen.
    """

    def __init__(self, settings: Settings, weights: Weights = DEFAULT_WEIGHTS) -> None:
        self.settings = settings
        self.weights = weights
        self.store = IndexStore(settings.index)
        self._refresh_lock = native_lock()
        self._live: _Live | None = None
        self._readers = ReaderPool()
        self._refresher: Refresher | None = None
        #: ``store.change_token()`` when the refresher last looked.
        self._seen: tuple[int, ...] | None = None
        self.segmentation = settings.segmentation
        self.synonyms = Synonyms(settings.synonyms)
        self._speller = Speller()
        self._completions = Completions()

    # -- the open searcher --------------------------------------------------

    def searcher(self) -> Searcher:
        """The current searcher (reopened first, when no refresher runs and
        the index changed since)."""
        return self._current().searcher

    def _current(self) -> _Live:
        live = self._live
        if live is None or (self._refresher is None and self.store.version() != live.version):
            with self._refresh_lock:
                live = self._live
                if live is None or self.store.version() != live.version:
                    live = self._refresh()
        changed = changed_files(live.files)
        if changed and self.store.version() != live.version:
            # A newer commit (a merge deletes the segments it merged; a
            # rebuild replaces a damaged generation): open it now rather
            # than read files that may have been cut short.
            with self._refresh_lock:
                live = self._live if self._live.version == self.store.version() else self._refresh()
            changed = changed_files(live.files)
        if changed:
            # Reading a mapped segment file cut short would kill the process.
            raise IndexDamaged(f"{changed[0]} changed under the server; run 'search check'")
        return live

    def _refresh(self, warm: Sequence[tuple[tuple, SearchRequest]] = ()) -> _Live:
        """Open what the index's latest commit holds (only its new segments
        are opened), warm it, and make it live."""
        try:
            ix, toc, files = self.store.open_toc()
            reader, opened = self._readers.open(ix, toc)
            searcher = CommitSearcher(reader, weighting=self.weights.weighting(), closereader=False, fromindex=ix)
        except (IndexMissing, IndexDamaged):
            raise
        except Exception as err:
            raise IndexDamaged(f"{self.store.root}: cannot open a searcher ({type(err).__name__}: {err})") from None
        version = f"{Path(ix.storage.folder).name}:{toc.generation}"
        # Queries are cut the way this index was built.
        segmentation = segmentation_of(toc.schema) or self.settings.segmentation
        live = _Live(version, searcher, files, segmentation)
        # The bulk scorers read each segment's field lengths once: read the
        # new segments' now rather than in the first queries.
        scored = [name for name, field in toc.schema.items() if field.scorable]
        for sub, _offset in searcher.leaf_searchers():
            if sub.reader() in opened:
                for name in scored:
                    field_lengths(sub, name)
                segment_facets(sub.reader())
        self.segmentation = segmentation
        until = time.monotonic() + AUTOWARM_SECONDS
        for key, request in reversed(warm):  # the most recent first
            if time.monotonic() > until:
                break
            self._warm(live, key, request)
        self._live = live
        return live

    def _warm(self, live: _Live, key: tuple, request: SearchRequest) -> None:
        """Answer a request the previous commit had cached, for the new one."""
        try:
            with time_budget(self.settings.query_budget_ms / 1000):
                result = self._search(request, live, time.perf_counter())
        except Exception:  # noqa: BLE001 - a request that now fails is simply not cached
            return
        if not result.partial:
            live.cache[(live.version, *key[1:])] = (request, result)

    def start_refresher(self, interval: float = REFRESH_SECONDS) -> None:
        """Notice commits in a background thread (an OS thread, also under
        gevent) and swap in each new commit once it is open and warm, as
        Lucene's ``SearcherManager.maybeRefresh`` does; the did-you-mean
        and completion tables are rebuilt there too, the old ones serving
        meanwhile."""
        if self._refresher is None:
            self._refresher = Refresher(self, interval)
            self._refresher.start()

    def refresh_now(self) -> bool:
        """The refresher's round, in this thread: swap in a new commit if
        there is one (answers of the old one that were asked recently are
        computed again first). Whether a new commit was swapped in."""
        token = self.store.change_token()
        if token is not None and token == self._seen and self._live is not None:
            return False
        with self._refresh_lock:
            live = self._live
            if live is not None and self.store.version() == live.version:
                self._seen = token
                return False
            recent = []
            if live is not None:
                reused = live.reused.copy()
                recent = [(key, request) for key, (request, _r) in live.cache.copy().items() if key in reused]
            self._refresh(recent[-AUTOWARM:])
            self._seen = token
            return True

    def refresh_tables(self) -> bool:
        """Bring the did-you-mean and completion tables up to date with the
        live commit (when due: see ``Speller.prepare``), in this thread.
        Whether either was built again."""
        live = self._live
        return live is not None and self._prepare_tables(live)

    def _prepare_tables(self, live: _Live) -> bool:
        reader = live.searcher.reader()
        spelled = self._speller.prepare(reader, live.version)
        completed = self._completions.prepare(reader, live.version, live.segmentation)
        return spelled or completed

    def warm_up(self) -> None:
        """Load the segmenter, open the index, build the did-you-mean and
        completion tables and read the field lengths now, so the first
        requests do not pay for them."""
        get_segmenter(self.segmentation)
        try:
            live = self._current()
        except (IndexMissing, IndexDamaged):
            return  # requests answer 503 until an index is there and whole
        self._prepare_tables(live)

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.stop()
            self._refresher = None
        with self._refresh_lock:
            self._live = None
            self._readers.close()

    @property
    def version(self) -> str | None:
        live = self._live
        return live.version if live is not None else None

    @property
    def tables_version(self) -> str | None:
        """The commit that what is derived from the whole index (completion
        and did-you-mean tables, the search box's examples) is as of: with
        a refresher, rebuilt now and then rather than on every commit."""
        return self._completions.version if self._refresher is not None else self.version

    # -- searching ----------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResult:
        """One page of results. Answers are cached per index commit, so a
        repeated query (paging back, a popular search) costs a lookup."""
        started = time.perf_counter()
        live = self._current()
        # Every field of the request, the index commit and the synonyms.
        key = (live.version, self.synonyms.version(), repr(request))
        cached = cached_answer(live.cache, key, started, live.reused)
        if cached is not None:
            return cached
        # Loading the segmenter (once per process) is not this query's work:
        # a cold command-line search spent a second of its budget on it.
        get_segmenter(self.segmentation)
        with time_budget(self.settings.query_budget_ms / 1000):
            result = self._search(request, live, started)
        keep_answer(live.cache, key, request, result, live.reused)
        return result

    def _search(self, request: SearchRequest, live: _Live, started: float) -> SearchResult:
        try:
            return self._search_in(request, live, started)
        except Exception as err:
            if is_read_error(err):
                raise IndexDamaged(
                    f"{self.store.root}: part of the index cannot be read ({err}); run 'search check'"
                ) from None
            raise

    def _search_in(self, request: SearchRequest, live: _Live, started: float) -> SearchResult:
        return answer(request, _OneIndex(self, live), started)

    def suggest(self, text: str, limit: int = 8) -> list[str]:
        """Completions of the search box from the index's own phrases. When
        nothing completes the whole box (several words typed), the last word
        is completed and each such query is kept only if some article holds
        every one of its words."""
        live = self._current()
        if self._refresher is None:
            self._completions.prepare(live.searcher.reader(), live.version, live.segmentation)
        return complete_box(self._completions, text, limit, self.search)

    # -- documents ----------------------------------------------------------

    def doc_count(self) -> int:
        """Live documents."""
        return self.searcher().doc_count()

    def title_frequencies(self) -> Counter:
        """Title term -> documents holding it (``search.frequent``)."""
        return title_frequencies(self.searcher().reader())

    def document(self, doc_id: str) -> dict[str, Any] | None:
        """The stored document with this id, as an input record."""
        stored = self.searcher().document(id=doc_id)
        return None if stored is None else stored_to_record(stored)

    def overview(self) -> dict[str, list[dict[str, Any]]]:
        """Facets over the whole index (for a search page with no query)."""
        return facet_counts(overview_counts(self.searcher()))

    def related(self, doc_id: str, limit: int = 5) -> list[dict[str, Any]]:
        """Articles sharing the most distinctive words of this one (Whoosh's
        more-like-this over the body's key terms)."""
        searcher = self.searcher()
        docnum = searcher.document_number(id=doc_id)
        if docnum is None:
            return []
        text = related_text(searcher.stored_fields(docnum))
        if not text:
            return []
        hits = searcher.more_like(docnum, RELATED_FIELD, text=text, top=limit, numterms=RELATED_TERMS)
        return [related_record(h) for h in hits]

    def stats(self) -> dict[str, Any]:
        searcher = self.searcher()
        store = self.store
        path = store.current_dir()
        mtime = max((p.stat().st_mtime for p in path.iterdir() if p.name.endswith(".toc")), default=None)
        return {
            "index": str(store.root),
            "generation": self.version,
            "documents": searcher.doc_count(),
            "last_update": dt.datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="seconds")
            if mtime
            else None,
            "size_bytes": store.size_bytes(),
        }


class Finder(Protocol):
    """Where a request's candidates and hits come from: one index, or the
    shards of one (``search.shards``). Each says how it plans requests."""

    settings: Settings
    segmentation: Any
    weights: Weights
    synonyms: Synonyms

    def candidates(self, request: SearchRequest, plan: Plan, loose: bool) -> list[Candidates]:
        """Every shard's ``search.collect.collect`` of ``plan``."""

    def hits(self, request: SearchRequest, page: list[Candidate]) -> list[Hit]:
        """The hits of ``page``, in its order."""

    def suggestion(self, request: SearchRequest) -> str | None:
        """The did-you-mean of the request's query."""


def complete_box(
    completions: Completions, text: str, limit: int, search: Callable[[SearchRequest], SearchResult]
) -> list[str]:
    """Completions of the search box: the index's phrases that finish it or,
    when none does (several words typed), each completion of the last word
    kept only if some article holds every word of the query it makes."""
    found = completions.complete(text, limit)
    words = text.split()
    if found or len(words) < 2:
        return found
    head = " ".join(words[:-1])
    out: list[str] = []
    for phrase in completions.complete(words[-1], limit * 2):
        q = f"{head} {phrase}"
        try:
            answer = search(SearchRequest(q=q, size=1, snippets=False, autocorrect=False))
        except QueryError:
            continue
        if answer.total and not answer.fallback and not answer.partial:
            out.append(q)
            if len(out) >= limit:
                break
    return out


#: Related articles: the field whose distinctive words (Whoosh's Bo1
#: expansion model over the whole corpus) make the query, and how many.
RELATED_FIELD = "body"
RELATED_TERMS = 12


def related_text(stored: dict[str, Any]) -> str:
    """What an article's related ones are found from: its title and body."""
    return "\n".join(x for x in (stored.get("title"), stored.get("body")) if x)


def related_record(hit: Any) -> dict[str, Any]:
    return {"id": hit["id"], "url": hit.get("url"), "title": hit.get("title")}


def answer(request: SearchRequest, finder: Finder, started: float) -> SearchResult:
    """One page of results from what ``finder``'s shards find: the any-word
    fallback and the did-you-mean decided on what all of them found."""
    return _answered(request, finder, started, *_all_words(request, finder))


def _corrected(request: SearchRequest, finder: Finder, started: float) -> SearchResult | None:
    """The answer to ``request``, a did-you-mean correction, when it finds
    articles by all of its words (only then does it replace the asked
    query's answer); otherwise None, known from that first pass alone,
    before an any-word pass, a page and a suggestion of its own were
    worked out for nothing (a third of a mistyped query's time)."""
    plan, interpreted_as, found = _all_words(request, finder)
    if not sum(f.total for f in found) or any(f.partial for f in found):
        return None
    return _answered(request, finder, started, plan, interpreted_as, found)


def _all_words(request: SearchRequest, finder: Finder) -> tuple[Plan, str | None, list[Candidates]]:
    """``request`` planned, and the candidates of its all-words pass."""
    plan, interpreted_as = plan_request(request, finder.settings, finder.segmentation, finder.weights, finder.synonyms)
    return plan, interpreted_as, finder.candidates(request, plan, False)


def _answered(
    request: SearchRequest,
    finder: Finder,
    started: float,
    plan: Plan,
    interpreted_as: str | None,
    found: list[Candidates],
) -> SearchResult:
    """``answer`` from the shards' all-words candidates ``found``."""
    fallback = False
    if sum(f.total for f in found) == 0 and plan.compiled.loose is not None and not any(f.partial for f in found):
        found = finder.candidates(request, plan, True)
        fallback = sum(f.total for f in found) > 0
        for each in found:
            each.all_words = 0 if fallback else None
    if any(f.partial for f in found) and not sum(f.total for f in found):
        raise TooExpensive()
    ranking = rank(plan, found, dt.datetime.now())
    hits = finder.hits(request, ranking.ranked[(plan.page - 1) * plan.size : plan.limit])
    suggestion = None
    if (fallback or ranking.total < SUGGEST_BELOW) and plan.parsed.groups and not ranking.partial:
        suggestion = finder.suggestion(request)
    if suggestion and suggestion != request.q and request.autocorrect and (fallback or not ranking.total):
        instead = _corrected(dataclasses.replace(request, q=suggestion, autocorrect=False), finder, started)
        if instead is not None and not instead.partial:
            return dataclasses.replace(instead, corrected={"from": request.q, "to": suggestion})
    return SearchResult(
        query=request.q,
        total=ranking.total,
        took_ms=(time.perf_counter() - started) * 1000,
        page=request.page,
        size=plan.size,
        sort=request.sort,
        fallback=fallback,
        hits=hits,
        facets=facet_counts(ranking.facets) if ranking.facets is not None else None,
        suggestion=suggestion if suggestion != request.q else None,
        partial=ranking.partial,
        interpreted_as=interpreted_as,
        all_words=None if ranking.partial else ranking.all_words,
    )


def page_hits(
    searcher: Searcher,
    request: SearchRequest,
    page: list[Candidate],
    segmentation: Any,
    synonyms: Synonyms,
    snippet_chars: int,
) -> list[Hit]:
    """The hits of candidates of one searcher: stored fields, and the
    highlighted title and snippet."""
    parsed = _parsed(request)
    terms = parsed.highlight_terms(segmentation, synonyms.alternatives)
    lone = parsed.lone_characters()
    return [
        make_hit(searcher.stored_fields(c.docnum), c.score, terms, request.snippets, lone, snippet_chars) for c in page
    ]


def _parsed(request: SearchRequest) -> ParsedQuery:
    """The parsed query whose words a page highlights (a request that
    reached its hits has a query that parses, or one searched as words)."""
    if not request.q.strip():
        return ParsedQuery()
    try:
        return parse_query(request.q)
    except QueryError:
        return parse_query(plain_text(request.q))


def make_hit(
    stored: dict[str, Any],
    score: float | None,
    terms: list[str],
    snippets: bool,
    lone: frozenset[str],
    snippet_chars: int,
) -> Hit:
    title = stored.get("title")
    body = stored.get("body")
    # An index built before sites were stored: the URL's host.
    site = stored.get("site") or host_of(stored.get("url"))
    return Hit(
        id=stored["id"],
        url=stored.get("url"),
        title=title,
        title_html=highlight_all(title, terms, lone) if snippets else "",
        snippet_html=snippet(body, terms, snippet_chars, lone) if snippets else "",
        tags=list(stored.get("tags") or []),
        source=stored.get("source"),
        author=stored.get("author"),
        published=stored.get("published"),
        score=round(float(score), 4) if score is not None else 0.0,
        site=site,
        display_url=display_url(stored.get("url"), stored["id"], site),
    )


class _OneIndex:
    """A single index: one shard, scored with its own statistics."""

    def __init__(self, engine: SearchEngine, live: _Live) -> None:
        self.engine, self.live = engine, live
        self.settings, self.weights, self.synonyms = engine.settings, engine.weights, engine.synonyms
        self.segmentation = engine.segmentation

    def candidates(self, request: SearchRequest, plan: Plan, loose: bool) -> list[Candidates]:
        return [collect(self.live.searcher, plan, loose)]

    def hits(self, request: SearchRequest, page: list[Candidate]) -> list[Hit]:
        s = self.settings
        return page_hits(self.live.searcher, request, page, self.segmentation, self.synonyms, s.snippet_chars)

    def suggestion(self, request: SearchRequest) -> str | None:
        engine, reader = self.engine, self.live.searcher.reader()
        if engine._refresher is None:
            engine._speller.prepare(reader, self.live.version)
        return engine._speller.suggest(reader, request.q, self.segmentation)


def plan_request(
    request: SearchRequest, settings: Settings, segmentation: Any, weights: Weights, synonyms: Synonyms
) -> tuple[Plan, str | None]:
    """What ``request`` asks of every shard, checked, and the words searched
    instead of its query when its syntax was broken and it is not strict.
    A ``QueryError`` names what is wrong."""
    size = settings.page_size if request.size is None else request.size
    _check_paging(request.page, size, settings.max_page_size)
    if request.sort not in SORTS:
        raise QueryError(f"sort must be one of {', '.join(SORTS)}", field="sort")
    if request.since and request.until and request.since > request.until:
        raise QueryError("since is after until", field="since")
    interpreted_as = None
    if request.q.strip() or not (request.tags or request.sources or request.sites or request.since or request.until):
        try:
            parsed = parse_query(request.q)
        except QueryError:
            plain = plain_text(request.q)
            if request.strict or not plain or plain == request.q:
                raise
            parsed, interpreted_as = parse_query(plain), plain
    else:
        parsed = ParsedQuery()  # a filter alone (a tag chip): every article it lets through
    compiled = compile_query(parsed, segmentation, weights, synonyms.alternatives)
    limit = request.page * size
    recent = request.recent and request.sort == "relevance"
    by_units = compiled.rank_loose and request.sort == "relevance" and weights.question_chars > 0
    window = limit
    if recent:
        window = max(window, RESCORE_WINDOW)
    if by_units:
        window = max(window, weights.question_window)
    plan = Plan(
        parsed=parsed,
        compiled=compiled,
        filter=_and(compiled.filter, _request_filter(request)),
        sort=request.sort,
        facets=request.facets,
        size=size,
        page=request.page,
        window=window,
        recent=recent,
        by_units=by_units,
        units=question_units(content_words(parsed, segmentation)) if by_units else [],
        weights=weights,
    )
    return plan, interpreted_as


def _check_paging(page: int, size: int, max_size: int) -> None:
    if not isinstance(page, int) or page < 1:
        raise QueryError("page must be a whole number from 1", field="page")
    if not isinstance(size, int) or size < 1 or size > max_size:
        raise QueryError(f"size must be a whole number from 1 to {max_size}", field="size")
    if page * size > MAX_RESULT_DEPTH:
        raise QueryError(f"results deeper than {MAX_RESULT_DEPTH} are not served; narrow the query", field="page")


def _request_filter(request: SearchRequest) -> wq.Query | None:
    parts: list[wq.Query] = []
    for tag in request.tags:
        if normalize_keyword(tag):
            parts.append(wq.Term("tag", normalize_keyword(tag)))
    for name, values in (("source", request.sources), ("site", request.sites)):
        terms = [wq.Term(name, normalize_keyword(v)) for v in values if normalize_keyword(v)]
        if terms:
            parts.append(terms[0] if len(terms) == 1 else wq.Or(terms))
    if request.since or request.until:
        lo = dt.datetime.combine(request.since, dt.time.min) if request.since else None
        hi = dt.datetime.combine(request.until, dt.time.max) if request.until else None
        parts.append(wq.DateRange("date", lo, hi))
    return _and(*parts)


def _and(*queries: wq.Query | None) -> wq.Query | None:
    qs = [q for q in queries if q is not None]
    if not qs:
        return None
    return qs[0] if len(qs) == 1 else wq.And(qs)
