"""Searching a sharded index (``indexer.shards``): the same answers as one
index holding the same documents.

A request goes to the shards in three rounds, as Elasticsearch's
``dfs_query_then_fetch``: every shard lists the statistics of the terms
the query can score (``search.stats``); every shard then collects its best
candidates scored with the sums (``search.collect``); the coordinator puts
them in one order (ties to the document indexed first), decides the
fallback and the did-you-mean on the whole, and asks only the shards that
hold the final page for its stored fields and snippets.

Related articles and search-box completions are built from the shards'
summed figures in the same way (``ShardedEngine.related``, ``suggest``).

A shard is a ``ShardSearcher``: in this process, or in Ray actors
(``replicas`` per shard) when the settings name a Ray cluster. Both run the
same code, so a test of one covers what the other computes. The actors
are named for the index, generation and shard, so the processes serving
an index share them; the last to let go of a generation stops them, and
those of a generation that was replaced stop soon after a newer one is
served (``retire_replaced``), whoever held them. An actor on a machine
that does not see the index folder serves a copy of its shard, sent
through Ray (``indexer.shards.serving_folder``).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh import query
from whoosh.classify import Expander
from whoosh.fields import Schema

from indexer.analysis import get_segmenter, segmentation_of
from indexer.cluster import ACTOR_NAMESPACE, ray_session
from indexer.config import Settings
from indexer.schema import ORDER_FIELD, SegmentColumn, build_schema
from indexer.shards import Manifest, manifest_fingerprint, read_manifest, serving_folder, shard_of
from indexer.shipping import index_key, this_node
from indexer.store import IndexStore
from indexer.writer import stored_to_record
from search.budget import time_budget
from search.collect import Candidate, Candidates, Plan, collect
from search.engine import (
    RELATED_FIELD,
    RELATED_TERMS,
    Hit,
    SearchRequest,
    SearchResult,
    answer,
    cached_answer,
    complete_box,
    keep_answer,
    page_hits,
    plan_request,
    related_record,
    related_text,
)
from search.facets import facet_counts, overview_counts
from search.frequent import title_frequencies
from search.query import DEFAULT_WEIGHTS, Weights
from search.spelling import Speller, vocabulary
from search.stats import CorpusStats, GlobalSearcher, shard_statistics
from search.suggest import Completions, phrase_counts
from search.synonyms import Synonyms


class ShardSearcher:
    """One shard, answering the coordinator's rounds."""

    def __init__(
        self,
        settings: Settings,
        folder: str,
        weights: Weights = DEFAULT_WEIGHTS,
        source: tuple[str, str] | None = None,
    ) -> None:
        """``source``: for an actor, the Ray node of the process that
        started it and the fingerprint of the generation's manifest there,
        whence the shard is copied to a machine that does not see it
        (``indexer.shards.serving_folder``)."""
        self.settings, self.weights = settings, weights
        self.folder = folder if source is None else serving_folder(settings, folder, *source)
        self.ix = whoosh_index.open_dir(self.folder)
        self.reader = self.ix.reader()
        self.segmentation = segmentation_of(self.reader.schema) or settings.segmentation
        self.synonyms = Synonyms(settings.synonyms)
        #: Terms scored without a corpus-wide figure (see ``GlobalSearcher``).
        self.misses: set[tuple[str, bytes]] = set()
        #: Serving processes using this shard, as a shared Ray actor.
        self._users = 0
        get_segmenter(self.segmentation)

    def searcher(self, stats: CorpusStats | None = None) -> GlobalSearcher:
        return GlobalSearcher(
            self.reader, stats=stats, weighting=self.weights.weighting(), closereader=False, fromindex=self.ix
        )

    def _plan(self, request: SearchRequest) -> Plan:
        return plan_request(request, self.settings, self.segmentation, self.weights, self.synonyms)[0]

    def statistics(self, request: SearchRequest) -> CorpusStats:
        plan = self._plan(request)
        c = plan.compiled
        # The exclusions and filters score nothing, but resolving them to
        # documents builds scorers too.
        queries = (c.strict, c.loose, c.every, c.exclude, plan.filter)
        return shard_statistics(self.searcher(), queries, plan.units)

    def candidates(self, request: SearchRequest, loose: bool, stats: CorpusStats | None) -> Candidates:
        searcher = self.searcher(stats)
        with time_budget(self.settings.query_budget_ms / 1000):
            found = collect(searcher, self._plan(request), loose, stats)
        self.misses |= searcher.misses
        return found

    def hits(self, request: SearchRequest, page: list[Candidate]) -> list[Hit]:
        s = self.settings
        return page_hits(self.searcher(), request, page, self.segmentation, self.synonyms, s.snippet_chars)

    def document(self, doc_id: str) -> dict[str, Any] | None:
        return self.searcher().document(id=doc_id)

    def frequencies(self, fieldname: str, texts: list[bytes]) -> dict[bytes, float]:
        """The collection frequencies here of those of ``texts`` found here."""
        return {t: self.reader.frequency(fieldname, t) for t in texts if (fieldname, t) in self.reader}

    def query_statistics(self, q: query.Query) -> CorpusStats:
        return shard_statistics(self.searcher(), [q])

    def similar(
        self, q: query.Query, doc_id: str, limit: int, stats: CorpusStats | None
    ) -> list[tuple[float, int, dict[str, Any]]]:
        """This shard's best ``limit`` matches of ``q`` but ``doc_id``, with
        their scores and places in indexing order."""
        searcher = self.searcher(stats)
        docnum = searcher.document_number(id=doc_id)
        orders = SegmentColumn(self.reader, ORDER_FIELD)
        hits = searcher.search(q, limit=limit, mask={docnum} if docnum is not None else None)
        return [(hit.score, orders[hit.docnum], related_record(hit)) for hit in hits]

    def overview(self) -> dict[str, Counter]:
        return overview_counts(self.searcher())

    def vocabulary(self) -> Counter:
        return vocabulary(self.reader)

    def title_frequencies(self) -> Counter:
        return title_frequencies(self.reader)

    def phrase_counts(self) -> Counter:
        return phrase_counts(self.reader, self.segmentation)

    def doc_frequency(self, fieldname: str, text: str) -> int:
        return self.reader.doc_frequency(fieldname, text)

    def schema_names(self) -> list[str]:
        return list(self.reader.schema.names())

    def pid(self) -> int:
        return os.getpid()

    def served_from(self) -> str:
        """The folder read: the index's, or this machine's copy of it."""
        return self.folder

    def attach(self) -> None:
        """A serving process begins to use this replica (see
        ``_ActorShard``)."""
        self._users += 1

    def detach(self) -> int | None:
        """A serving process is done with this replica: how many still use
        it, or None when that is not known (the replica was restarted, and
        the count went with its first life)."""
        import ray

        if ray.get_runtime_context().was_current_actor_reconstructed:
            return None
        self._users = max(0, self._users - 1)
        return self._users

    def segmentation_used(self) -> Any:
        return self.segmentation

    def misses_seen(self) -> int:
        return len(self.misses)

    def close(self) -> None:
        self.reader.close()
        self.ix.close()


class ShardedEngine:
    """``SearchEngine``'s answers over a sharded index (see the module).

    ``global_stats=False`` scores each shard with its own statistics: only
    for showing what the statistics round is for."""

    def __init__(
        self,
        settings: Settings,
        weights: Weights = DEFAULT_WEIGHTS,
        replicas: int | None = None,
        global_stats: bool = True,
    ) -> None:
        self.settings, self.weights = settings, weights
        self.store = IndexStore(settings.index)
        self.synonyms = Synonyms(settings.synonyms)
        self.global_stats = global_stats
        self.replicas = max(1, settings.shard_replicas if replicas is None else replicas)
        self._lock = threading.Lock()
        self._version: str | None = None
        self._shards: list[Any] = []
        self._session = None
        self.segmentation = settings.segmentation
        self._speller = Speller()
        self._completions = Completions()
        #: Answers of the live generation (``SearchEngine``'s cache: a
        #: generation never changes, so it holds until the next one).
        self._answers: OrderedDict[tuple, tuple[SearchRequest, SearchResult]] = OrderedDict()

    # -- the open shards --------------------------------------------------

    def _open(self) -> None:
        version = self.store.version()
        if version == self._version:
            return
        with self._lock:
            if version == self._version:
                return
            generation = self.store.current_dir()
            manifest = read_manifest(generation)
            folders = [str(generation / part.name) for part in manifest.parts]
            old = self._shards
            if self.settings.ray_address:
                ray = self._ray()
                source = (this_node(ray), manifest_fingerprint(manifest))
                self._shards = [
                    _ActorShard.start(ray, self.settings, f, self.weights, self.replicas, source) for f in folders
                ]
                retire_replaced(ray, self.store.root, generation)
            else:
                self._shards = [_LocalShard(ShardSearcher(self.settings, f, self.weights)) for f in folders]
            # Queries are cut the way the shards were built.
            self.segmentation = self._shards[0].call("segmentation_used")
            self.manifest = manifest
            # What a related article's text is analysed with, here.
            self.schema = build_schema(self.segmentation, sharded=True)
            self._answers = OrderedDict()
            self._version = version
            for shard in old:
                shard.close()

    def _ray(self) -> Any:
        if self._session is None:
            self._session = ray_session(self.settings.ray_address)
            self._ray_module = self._session.__enter__()
        return self._ray_module

    def _all(self, method: str, *args: Any) -> list[Any]:
        """``method`` on every shard, concurrently where they are actors."""
        return _gather([shard.submit(method, *args) for shard in self._shards])

    # -- the Finder of ``search.engine.answer`` ---------------------------

    def candidates(self, request: SearchRequest, plan: Plan, loose: bool) -> list[Candidates]:
        stats = None
        if self.global_stats:
            stats = CorpusStats.combine(self._all("statistics", request))
        return self._all("candidates", request, loose, stats)

    def hits(self, request: SearchRequest, page: list[Candidate]) -> list[Hit]:
        by_shard: dict[int, list[Candidate]] = {}
        for candidate in page:
            by_shard.setdefault(candidate.shard, []).append(candidate)
        pending = {n: self._shards[n].submit("hits", request, part) for n, part in by_shard.items()}
        taken = {n: iter(hits) for n, hits in zip(pending, _gather(list(pending.values())), strict=True)}
        return [next(taken[candidate.shard]) for candidate in page]

    def suggestion(self, request: SearchRequest) -> str | None:
        self._speller.prepare(None, self._version, lambda: _summed(self._all("vocabulary")))
        return self._speller.suggest(_Corpus(self), request.q, self.segmentation)

    # -- what ``SearchEngine`` offers -------------------------------------

    def search(self, request: SearchRequest) -> SearchResult:
        started = time.perf_counter()
        self._open()
        key = (self._version, self.synonyms.version(), repr(request))
        answers = self._answers  # the generation's, should another thread open the next
        cached = cached_answer(answers, key, started)
        if cached is not None:
            return cached
        try:
            result = answer(request, self, started)
        except Exception as err:
            if not self._replicas_lost(err):
                raise
            # Every replica of a shard is gone for good (stopped, say, while
            # this process was still on their generation): find the shards
            # by name again, which starts them anew if need be, and answer
            # once more.
            self._reopen()
            result = answer(request, self, started)
        keep_answer(answers, key, request, result)
        return result

    def _replicas_lost(self, err: Exception) -> bool:
        return self._session is not None and isinstance(err, replica_lost(self._ray()))

    def _reopen(self) -> None:
        with self._lock:
            self._version = None
        self._open()

    def document(self, doc_id: str) -> dict[str, Any] | None:
        self._open()
        stored = self._shards[shard_of(doc_id, len(self._shards))].call("document", doc_id)
        return None if stored is None else stored_to_record(stored)

    def overview(self) -> dict[str, list[dict[str, Any]]]:
        self._open()
        parts = self._all("overview")
        names = dict.fromkeys(name for part in parts for name in part)
        return facet_counts({name: _summed([part.get(name, Counter()) for part in parts]) for name in names})

    def related(self, doc_id: str, limit: int = 5) -> list[dict[str, Any]]:
        """``SearchEngine.related``, on the whole corpus: the article's
        distinctive words are weighed by their frequencies summed over every
        shard, and their query is scored with the corpus-wide statistics."""
        self._open()
        stored = self._shards[shard_of(doc_id, len(self._shards))].call("document", doc_id)
        text = related_text(stored) if stored else ""
        if not text:
            return []
        schema = self.schema
        texts = sorted({t for t, _pos, _weight, _chars in schema[RELATED_FIELD].index(text)})
        summed = _summed(self._all("frequencies", RELATED_FIELD, texts))
        frequencies = {(RELATED_FIELD, t): f for t, f in summed.items()}
        expander = Expander(_ExpansionCorpus(schema, self.manifest, frequencies), RELATED_FIELD)
        expander.add_text(text)
        terms = expander.expanded_terms(RELATED_TERMS, normalize=False)
        if not terms:
            return []
        q = query.Or([query.Term(RELATED_FIELD, word, boost=weight) for word, weight in terms])
        stats = CorpusStats.combine(self._all("query_statistics", q))
        found = [hit for part in self._all("similar", q, doc_id, limit, stats) for hit in part]
        found.sort(key=lambda hit: (-hit[0], hit[1]))
        return [record for _score, _order, record in found[:limit]]

    def suggest(self, text: str, limit: int = 8) -> list[str]:
        """``SearchEngine.suggest``: the table built from every shard's
        phrase counts, summed."""
        self._open()
        self._completions.prepare(None, self._version, counts=lambda: _summed(self._all("phrase_counts")))
        return complete_box(self._completions, text, limit, self.search)

    def stats(self) -> dict[str, Any]:
        self._open()
        return {
            "index": str(self.store.root),
            "generation": self._version,
            "documents": self.manifest.documents,
            "shards": self.manifest.shards,
            "last_update": None,
            "size_bytes": self.store.size_bytes(),
        }

    def doc_count(self) -> int:
        self._open()
        return self.manifest.documents

    def title_frequencies(self) -> Counter:
        return _summed(self._all("title_frequencies"))

    def misses(self) -> int:
        return sum(self._all("misses_seen"))

    @property
    def version(self) -> str | None:
        return self._version

    tables_version = version

    def warm_up(self) -> None:
        self._open()

    def start_refresher(self, interval: float = 0.2) -> None:
        """Shards are opened again when the manifest changes, on the
        request that first sees it."""

    def close(self) -> None:
        with self._lock:
            for shard in self._shards:
                shard.close()
            self._shards, self._version = [], None
            if self._session is not None:
                self._session.__exit__(None, None, None)
                self._session = None


def open_engine(settings: Settings, weights: Weights = DEFAULT_WEIGHTS) -> Any:
    """The engine for the configured index: sharded or not."""
    from search.engine import SearchEngine

    store = IndexStore(settings.index)
    if store.is_sharded():
        return ShardedEngine(settings, weights)
    return SearchEngine(settings, weights)


class _Corpus:
    """What the did-you-mean asks of a reader, answered by every shard."""

    def __init__(self, engine: ShardedEngine) -> None:
        self.engine = engine
        self.schema = frozenset(engine._shards[0].call("schema_names"))

    def doc_frequency(self, fieldname: str, text: str) -> int:
        return sum(self.engine._all("doc_frequency", fieldname, text))


def _summed(counters: list[Any]) -> Counter:
    """The shards' counts (counters, or mappings of numbers) added up."""
    total: Counter = Counter()
    for part in counters:
        total.update(part)
    return total


class _ExpansionCorpus:
    """What Whoosh's query expansion asks of a reader, for the whole
    sharded corpus: counts from the manifest, and the frequencies of one
    article's words summed over the shards."""

    def __init__(self, schema: Schema, manifest: Manifest, frequencies: dict[tuple[str, bytes], float]) -> None:
        self.schema, self.manifest, self.frequencies = schema, manifest, frequencies

    def doc_count_all(self) -> int:
        return sum(part.doc_count_all for part in self.manifest.parts)

    def field_length(self, fieldname: str) -> int:
        return sum(part.field_lengths.get(fieldname, 0) for part in self.manifest.parts)

    def __contains__(self, key: tuple[str, bytes]) -> bool:
        return key in self.frequencies

    def frequency(self, fieldname: str, text: bytes) -> float:
        return self.frequencies[(fieldname, text)]


class _Done:
    """A result already there (an in-process shard's), read as a pending
    actor call is: every shard's call is made before any is waited for."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def get(self) -> Any:
        return self.value


def _gather(pending: list[Any]) -> list[Any]:
    return [p.get() for p in pending]


class _LocalShard:
    def __init__(self, searcher: ShardSearcher) -> None:
        self.searcher = searcher

    def submit(self, method: str, *args: Any) -> _Done:
        return _Done(getattr(self.searcher, method)(*args))

    def call(self, method: str, *args: Any) -> Any:
        return self.submit(method, *args).get()

    def close(self) -> None:
        self.searcher.close()


#: Seconds a replica that failed a call is passed over (Ray restarts it
#: meanwhile; calls sent to a restarting actor wait for it).
PASS_OVER_SECONDS = 15.0


class _ActorShard:
    """A shard served by ``replicas`` Ray actors; each call goes to the next
    replica, and to another one when the actor it went to died. A replica
    that failed is passed over for ``PASS_OVER_SECONDS``."""

    def __init__(self, ray: Any, actors: list[Any]) -> None:
        self.ray, self.actors = ray, actors
        self._turn = itertools.cycle(range(len(actors)))
        self._failed: dict[int, float] = {}

    def next_replica(self) -> int:
        now = time.monotonic()
        for _ in range(len(self.actors)):
            number = next(self._turn)
            if now - self._failed.get(number, -PASS_OVER_SECONDS) >= PASS_OVER_SECONDS:
                return number
        return next(self._turn)

    def failed(self, number: int) -> None:
        self._failed[number] = time.monotonic()

    @classmethod
    def start(
        cls, ray: Any, settings: Settings, folder: str, weights: Weights, replicas: int, source: tuple[str, str]
    ) -> _ActorShard:
        """The replicas of the shard in ``folder``: those another serving
        process of the cluster already started, or new ones (``source``:
        see ``ShardSearcher``)."""
        # No CPU reserved (a shard is idle between requests), and the
        # replicas spread over the nodes, so that one node's loss leaves one.
        remote = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, scheduling_strategy="SPREAD")(
            ShardSearcher
        )
        actors = []
        for replica in range(replicas):
            options = remote.options(
                name=actor_name(Path(folder), replica),
                namespace=ACTOR_NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
            )
            actors.append(options.remote(settings, folder, weights, source))
        ray.get([actor.attach.remote() for actor in actors])
        return cls(ray, actors)

    def submit(self, method: str, *args: Any) -> _Pending:
        return _Pending(self, method, args)

    def call(self, method: str, *args: Any) -> Any:
        return self.submit(method, *args).get()

    def close(self) -> None:
        """Let go of the replicas; the last serving process to do so stops
        them. A replica whose count of users was lost (it was restarted)
        is left to ``retire_replaced``."""
        for actor in self.actors:
            try:
                users = self.ray.get(actor.detach.remote(), timeout=CALL_TIMEOUT)
            except (*replica_lost(self.ray), self.ray.exceptions.GetTimeoutError):
                continue
            if users == 0:
                self.ray.kill(actor, no_restart=True)


#: Seconds the replicas of a generation that was replaced keep answering
#: the requests already sent to them before ``retire_replaced`` stops them.
RETIRE_AFTER = 60.0
#: Seconds to wait for a replica's answer to a bookkeeping call.
CALL_TIMEOUT = 30.0


def replica_lost(ray: Any) -> tuple[type[Exception], ...]:
    """What a call to a replica that died (or is being restarted) raises."""
    return (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


def actor_prefix(root: Path) -> str:
    """The start of the names of an index's shard actors (by the index's
    folder)."""
    return f"shard:{index_key(root)}:"


def actor_name(shard_folder: Path, replica: int) -> str:
    """A replica's name in the cluster: the index (by its folder), the
    generation and the shard. Serving processes of the same index share
    them: with ``search serve --workers N`` the shards are held once, not
    N times."""
    generation = shard_folder.parent
    return f"{actor_prefix(generation.parent)}{generation.name}:{shard_folder.name}:{replica}"


def retire_replaced(ray: Any, root: Path, live: Path) -> None:
    """Stop, ``RETIRE_AFTER`` seconds from now, the replicas of this index's
    generations other than ``live``: their serving processes have moved
    to a newer one, or died without letting them go."""
    prefix = actor_prefix(root)
    keep = f"{prefix}{live.name}:"
    names = [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry.get("namespace") == ACTOR_NAMESPACE
        and entry["name"].startswith(prefix)
        and not entry["name"].startswith(keep)
    ]
    if not names:
        return

    def stop() -> None:
        # A newer generation than ``live`` may have been switched to since:
        # its replicas are in use.
        current = IndexStore(root).current_name()
        for name in names:
            if current and name.startswith(f"{prefix}{current}:"):
                continue
            try:
                ray.kill(ray.get_actor(name, namespace=ACTOR_NAMESPACE), no_restart=True)
            except ValueError:
                pass  # already gone

    timer = threading.Timer(RETIRE_AFTER, stop)
    timer.daemon = True
    timer.start()


class _Pending:
    """A call on one replica, tried on the others if that one is lost."""

    def __init__(self, shard: _ActorShard, method: str, args: tuple) -> None:
        self.shard, self.method, self.args = shard, method, args
        self.first = shard.next_replica()
        self.ref = getattr(shard.actors[self.first], method).remote(*args)

    def get(self) -> Any:
        ray = self.shard.ray
        lost = replica_lost(ray)
        try:
            return ray.get(self.ref)
        except lost as err:
            self.shard.failed(self.first)
            last: Exception = err
        n = len(self.shard.actors)
        for step in range(1, n + 1):
            number = (self.first + step) % n
            try:
                return ray.get(getattr(self.shard.actors[number], self.method).remote(*self.args))
            except lost as err:
                self.shard.failed(number)
                last = err
        raise last
