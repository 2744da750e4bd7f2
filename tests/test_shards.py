"""A sharded index built and served on a real Ray cluster (a head and two
worker nodes on 127.0.0.1) gives the single index's answers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indexer import shards as shards_module
from indexer.config import Settings
from indexer.shards import KNOWN_FILE, MANIFEST, known_documents, read_manifest, shard_of, task_procs
from indexer.store import IndexStore
from indexer.writer import index_paths
from search.collect import collect, rank
from search.engine import SearchEngine, SearchRequest, plan_request
from search.shards import ShardedEngine, actor_prefix, open_engine
from tests.conftest import search_command, shared_corpus, write_jsonl

pytestmark = pytest.mark.xdist_group("cluster")

#: Queries besides the dev set's: typos (pinyin, homophones) for the
#: did-you-mean, words that find nothing together (the any-word fallback),
#: a question (ranked by any word, with the character re-ranking).
EXTRA_QUERIES = ["shuju toushi", "数剧 透视", "幻灯片 xyzzyq", "hanshu", "如何在表格中插入图表？", "-函数 公式"]
#: What each query is also asked with.
VARIANTS = ({}, {"sort": "date"}, {"recent": True}, {"page": 2, "size": 15, "facets": True})
SAMPLE = Path(__file__).resolve().parent.parent / "indexer" / "data" / "sample-articles.jsonl"


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for these tests: a head and two worker nodes,
    loopback only, gone once they are done. Shard tasks run on the workers,
    one at a time each: the other tests run beside these on a machine of
    two cores."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray", reason="Ray is the cluster extra: pip install -e '.[test,cluster]'")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    workers = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def _queries(name: str) -> list[str]:
    path = shared_corpus(f"queries/{name}.queries.jsonl")
    return [json.loads(line)["query"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def html_single(tmp_path_factory) -> Settings:
    """articles-html in one index, written by one process (so document
    numbers follow the order records were read in)."""
    corpus = shared_corpus("articles-html.jsonl")
    settings = Settings(index=tmp_path_factory.mktemp("single") / "index", index_procs=1)
    index_paths(settings, [str(corpus)], rebuild=True)
    return settings


_BUILT: dict[tuple[str, int], Settings] = {}


def _sharded(tmp_path_factory, corpus: Path, shards: int) -> Settings:
    """``corpus`` in ``shards`` shards, built once for the module's tests
    that only read it."""
    key = (str(corpus), shards)
    if key not in _BUILT:
        settings = Settings(index=tmp_path_factory.mktemp(f"shards{shards}") / "index")
        summary = index_paths(settings, [str(corpus)], rebuild=True, shards=shards)
        assert summary.rebuilt and summary.added > 0
        _BUILT[key] = settings
    return _BUILT[key]


def _ranking(engine, finder, request: SearchRequest) -> list[tuple[int, float]]:
    """Every candidate of the request's window in order: its place in
    indexing order and its exact score (the page rounds scores)."""
    plan, _ = plan_request(request, engine.settings, finder.segmentation, engine.weights, engine.synonyms)
    found = finder.candidates(request, plan, False)
    if sum(f.total for f in found) == 0 and plan.compiled.loose is not None:
        found = finder.candidates(request, plan, True)
    now = dt.datetime(2026, 1, 1)
    return [(c.order, c.score) for c in rank(plan, found, now).ranked]


class _Single:
    """The single index's ``Finder`` (its one shard)."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine
        self.segmentation = engine.segmentation

    def candidates(self, request, plan, loose):
        return [collect(self.engine.searcher(), plan, loose)]


def _compare(
    single: SearchEngine, sharded: ShardedEngine, queries: list[str], variants: tuple[dict, ...] = VARIANTS
) -> list[str]:
    """What differs between the two engines' answers (nothing, if the same)."""
    differences = []
    sharded.warm_up()
    for q in queries:
        for variant in variants:
            request = SearchRequest(q=q, **variant)
            a, b = single.search(request), sharded.search(request)
            da, db = a.to_dict(), b.to_dict()
            for d in (da, db):
                d.pop("took_ms")
            if da != db:
                differences.append(f"{q!r} {variant}: {da} != {db}")
                continue
            if variant:
                continue  # the page above is the check; the window is the same query's
            exact_a = _ranking(single, _Single(single), request)
            exact_b = _ranking(sharded, sharded, request)
            same = len(exact_a) == len(exact_b) and all(
                oa == ob and abs((sa or 0) - (sb or 0)) <= 1e-6
                for (oa, sa), (ob, sb) in zip(exact_a, exact_b, strict=True)
            )
            if not same:
                differences.append(f"{q!r} {variant}: window {exact_a[:5]} != {exact_b[:5]}")
    return differences


def test_routing_is_stable_and_spread():
    # The same shard on every machine and run (not Python's salted hash).
    assert [shard_of(i, 7) for i in ("a", "b", "news-1", "新闻-2")] == [
        shard_of(i, 7) for i in ("a", "b", "news-1", "新闻-2")
    ]
    code = "from indexer.shards import shard_of; print([shard_of(i, 7) for i in ('a', 'b', 'news-1', '新闻-2')])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str([shard_of(i, 7) for i in ("a", "b", "news-1", "新闻-2")])
    counts = [0] * 4
    for n in range(4000):
        counts[shard_of(f"doc-{n}", 4)] += 1
    assert min(counts) > 900


def test_a_machine_keeps_copies_of_the_generation_served_and_the_one_it_replaced(tmp_path):
    from indexer.shipping import local_folder, prune_generations

    copies = [local_folder(tmp_path, tmp_path / "index", f"gen-00000{n}-abc", "shard-000") for n in (1, 2, 3, 4)]
    for copy in copies:
        copy.mkdir(parents=True)
    prune_generations(copies[2].parent.parent, keep=copies[2].parent.name)
    assert [c.exists() for c in copies] == [False, True, True, True]


def test_parts_prepared_elsewhere_come_back_in_the_order_they_were_read(monkeypatch):
    """However the parts finish (here the first ones last), the items come
    back in crawl order, with no more parts out than the window."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    import indexer.prepare
    from indexer.prepare import Unprepared, prepared_in_order

    monkeypatch.setattr(indexer.prepare, "PART_RECORDS", 3)
    rng = random.Random(5)
    out = 0
    most = 0
    lock = threading.Lock()

    def work(part):
        nonlocal out, most
        with lock:
            out += 1
            most = max(most, out)
        time.sleep(rng.random() * 0.02)
        with lock:
            out -= 1
        return [item.location for item in part]

    items = [Unprepared(f"crawl.jsonl:{n}", {"id": n}) for n in range(50)]
    with ThreadPoolExecutor(4) as pool:
        got = list(prepared_in_order(items, lambda part: pool.submit(work, part), lambda f: f.result(), window=3))
    assert got == [item.location for item in items]
    assert 1 < most <= 3


def test_a_sharded_build_prepares_the_crawl_in_ray_tasks_and_decides_as_a_single_build(
    ray_cluster, tmp_path, monkeypatch
):
    """Pages are extracted, and records validated and signed, in Ray tasks,
    in parts of seven; the command then decides in crawl order, as a single
    build does: the same rejections (with file and line), near-duplicates,
    pages without an article, and documents."""
    import indexer.pages
    import indexer.prepare

    records = [
        json.loads(line) for line in shared_corpus("articles-html.jsonl").read_text(encoding="utf-8").splitlines()
    ][:120]
    copy = {**records[3], "id": "copy-of-3", "url": "https://example.com/copy-of-3"}
    pages = [
        {
            "url": f"https://news.example.com/a/{n}.html",
            "html": f"<html><head><title>{r['title']} - 跨境快讯</title></head><body><article>"
            f"<h1>{r['title']}</h1><p>{r.get('body') or ''}</p></article></body></html>",
        }
        for n, r in enumerate(records[100:110])
    ]
    empty_page = {"url": "https://news.example.com/empty.html", "html": "<html><body></body></html>"}
    crawl = write_jsonl(
        tmp_path / "crawl.jsonl",
        [
            *records[:50],
            {"id": "only-an-id"},
            {"title": "无编号"},
            *pages[:5],
            empty_page,
            *records[50:100],
            copy,
            *pages[5:],
        ],
    )
    single = Settings(index=tmp_path / "single", index_procs=1)
    expected = index_paths(single, [str(crawl)], rebuild=True)
    monkeypatch.setattr(indexer.prepare, "PART_RECORDS", 7)
    here = {"draft_page": 0, "signature": 0}

    def counted(name, real):
        def call(*args, **kwargs):
            here[name] += 1
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(indexer.prepare, "draft_page", counted("draft_page", indexer.pages.draft_page))
    monkeypatch.setattr(indexer.prepare, "signature", counted("signature", indexer.prepare.signature))
    sharded = Settings(index=tmp_path / "sharded")
    got = index_paths(sharded, [str(crawl)], rebuild=True, shards=2)
    # Nothing was extracted in this process, and only the pages (finished
    # here, once their site's titles were seen) were signed here.
    assert here == {"draft_page": 0, "signature": got.extracted} and got.extracted == 10
    assert (got.records, got.added, got.pages, got.extracted) == (
        expected.records,
        expected.added,
        expected.pages,
        expected.extracted,
    )
    assert [str(r) for r in got.rejected] == [str(r) for r in expected.rejected]
    assert [r.location.rsplit(":", 1)[1] for r in got.rejected] == ["51", "52"]
    assert got.duplicates == expected.duplicates
    assert [(d.id, d.duplicate_of) for d in got.duplicates] == [("copy-of-3", records[3]["id"])]
    assert [str(r) for r in got.skipped] == [str(r) for r in expected.skipped] and len(got.skipped) == 1
    from indexer.writer import export_documents

    assert list(export_documents(sharded)) == list(export_documents(single))


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_a_sharded_index_gives_the_single_index_answers(ray_cluster, tmp_path_factory, html_single, shards):
    corpus = shared_corpus("articles-html.jsonl")
    settings = _sharded(tmp_path_factory, corpus, shards)
    generation = IndexStore(settings.index).current_dir()
    manifest = read_manifest(generation)
    assert manifest.shards == shards and len(manifest.parts) == shards
    single = SearchEngine(html_single)
    assert manifest.documents == single.doc_count()
    sharded = ShardedEngine(settings)
    queries = _queries("knownitem_html") + EXTRA_QUERIES
    assert _compare(single, sharded, queries) == []
    # Every term scored had a corpus-wide figure.
    assert sharded.misses() == 0
    # The answers above exercised what they claim to.
    answers = [single.search(SearchRequest(q=q)) for q in queries]
    assert any(a.fallback for a in answers)
    assert any(a.suggestion or a.corrected for a in answers)
    assert any(a.all_words is not None for a in answers)
    # Related articles: the same, weighed and scored on the whole corpus.
    ids = [a.hits[0].id for a in answers[:12] if a.hits]
    related = [(single.related(i), sharded.related(i)) for i in ids]
    assert len(ids) >= 10 and all(a == b and a for a, b in related), related
    # Search-box completions: one table from every shard's phrase counts.
    boxes = [q[:n] for q in queries[:10] for n in (1, 2)] + ["kua", "dianshang", "亚马逊 物"]
    completed = [(single.suggest(box), sharded.suggest(box)) for box in boxes]
    assert all(a == b for a, b in completed), completed
    assert sum(bool(a) for a, _ in completed) >= len(boxes) // 2, completed
    if shards > 1:
        # Without the corpus-wide statistics, shards rank on their own
        # scales: the comparison above would fail.
        alone = ShardedEngine(settings, global_stats=False)
        assert len(_compare(single, alone, queries[:20])) > 10


def test_a_shard_task_writes_with_the_cores_it_holds(ray_cluster, tmp_path, monkeypatch, html_single):
    """A build in fewer shards than the cluster has cores gives each
    shard's task several of them, and the task writes with as many
    processes (a segment each), as a single build does; the answers stay
    the single index's."""
    two, one = {"Resources": {"CPU": 2.0}, "Alive": True}, {"Resources": {"CPU": 1.0}, "Alive": True}
    head, dead = {"Resources": {}, "Alive": True}, {"Resources": {"CPU": 8.0}, "Alive": False}
    assert task_procs([two], 1) == 2 and task_procs([two], 2) == 1
    assert task_procs([head, two, two], 1) == 2 and task_procs([head, two, two, dead], 3) == 1
    # No more than the smallest node has: a retried task must fit anywhere.
    assert task_procs([two, one], 1) == 1 and task_procs([head], 1) == 1
    # This cluster's worker nodes have a core each: a node of two for
    # this build, and the cores shared among shards as on such nodes alone.
    cluster, _workers = ray_cluster
    node = cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    monkeypatch.setattr(shards_module, "task_procs", lambda nodes, shards: task_procs([two], shards))
    settings = Settings(index=tmp_path / "index")
    try:
        summary = index_paths(settings, [str(shared_corpus("articles-html.jsonl"))], rebuild=True, shards=1)
    finally:
        cluster.remove_node(node)
    assert summary.rebuilt
    shard = IndexStore(settings.index).current_dir() / "shard-000"
    assert len(list(shard.glob("*.seg"))) == 2
    queries = _queries("knownitem_html")[:40] + EXTRA_QUERIES
    assert _compare(SearchEngine(html_single), ShardedEngine(settings), queries) == []


# A group of its own (three and a half minutes): it runs on the other
# worker, with a Ray cluster of its own, beside the rest of this module.
@pytest.mark.xdist_group("poetry")
def test_poetry_shards_give_the_single_index_answers(ray_cluster, tmp_path_factory):
    corpus = shared_corpus("poetry-20k.jsonl")
    single_settings = Settings(index=tmp_path_factory.mktemp("poetry") / "index", index_procs=1)
    index_paths(single_settings, [str(corpus)], rebuild=True)
    single = SearchEngine(single_settings)
    queries = _queries("knownitem_poetry")
    # Poems are undated: sorting by date and the recency bonus are the
    # relevance order there.
    undated = tuple(v for v in VARIANTS if "sort" not in v and "recent" not in v)
    for shards in (1, 2, 3, 7):
        sharded = ShardedEngine(_sharded(tmp_path_factory, corpus, shards))
        assert _compare(single, sharded, queries, undated) == []
        assert sharded.misses() == 0


def test_crawls_added_to_a_sharded_index_give_the_single_index_answers(ray_cluster, tmp_path):
    """Incremental runs (new, changed and deleted articles), --prune, delete
    and export on a sharded index and on a single one, side by side."""
    records = [
        json.loads(line) for line in shared_corpus("articles-html.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    first, later = records[:1800], records[1800:2200]
    changed = [{**r, "body": (r.get("body") or "") + " 更新：新增幻灯片与表格函数说明。"} for r in first[:60]]
    gone = [{"id": r["id"], "deleted": True} for r in first[60:90]]
    crawl_one = write_jsonl(tmp_path / "one.jsonl", first)
    crawl_two = write_jsonl(tmp_path / "two.jsonl", [*later, *changed, *gone])
    single = Settings(index=tmp_path / "single", index_procs=1)
    sharded = Settings(index=tmp_path / "sharded")
    built = index_paths(single, [str(crawl_one)], rebuild=True)
    index_paths(sharded, [str(crawl_one)], rebuild=True, shards=3)
    store = IndexStore(sharded.index)
    before = store.current_name()
    # An engine kept open across the run: its answers are cached per
    # generation, and the new generation's are new.
    live_engine = ShardedEngine(sharded)
    asked = SearchRequest(q="更新 幻灯片 表格函数说明")
    before_run = live_engine.search(asked)
    repeated = live_engine.search(asked)
    # The same answer, from the cache (the very list of hits).
    assert repeated == dataclasses.replace(before_run, took_ms=repeated.took_ms) and repeated.hits is before_run.hits
    a, b = index_paths(single, [str(crawl_two)]), index_paths(sharded, [str(crawl_two)])
    answers = [e.search(asked).to_dict() for e in (live_engine, ShardedEngine(sharded), SearchEngine(single))]
    for d in answers:
        d.pop("took_ms")
    # Before, no article held every word (the any-word fallback); now the
    # 60 changed ones do.
    assert before_run.fallback and (answers[0]["total"], answers[0]["fallback"]) == (60, False)
    assert answers[0] == answers[1] == answers[2]
    assert (b.added, b.updated, b.deleted, len(b.duplicates)) == (a.added, a.updated, a.deleted, len(a.duplicates))
    assert (a.added + len(a.duplicates), a.updated, a.deleted) == (400, 60, 30)
    # A new generation of hard links, the shards that changed written again.
    assert store.current_name() != before
    assert (
        read_manifest(store.current_dir()).documents == SearchEngine(single).doc_count() == built.added + a.added - 30
    )
    # What the index holds comes from the generation's side file, which
    # says what every shard would: read again without it, the same table.
    generation = store.current_dir()
    kept = known_documents(generation)
    (generation / KNOWN_FILE).rename(tmp_path / "aside.known")
    read = known_documents(generation)
    (tmp_path / "aside.known").rename(generation / KNOWN_FILE)
    assert (kept.source, read.source) == ("file", "shards")
    assert list(kept.rows()) == list(read.rows()) and len(kept) > 2000
    # Nothing new: no new generation.
    now = store.current_name()
    again = index_paths(sharded, [str(crawl_two)])
    assert again.added == again.updated == 0 and store.current_name() == now
    queries = _queries("knownitem_html")[:40] + EXTRA_QUERIES
    assert _compare(SearchEngine(single), ShardedEngine(sharded), queries) == []
    # delete, a crawl with --prune, export.
    from indexer.writer import delete_ids, export_documents

    doomed = [first[100]["id"], later[5]["id"], "no-such-id"]
    assert delete_ids(single, doomed) == delete_ids(sharded, doomed) == ["no-such-id"]
    kept = write_jsonl(tmp_path / "kept.jsonl", [*first[:1500], *later])
    a, b = index_paths(single, [str(kept)], prune=True), index_paths(sharded, [str(kept)], prune=True)
    assert b.pruned == a.pruned > 0
    assert list(export_documents(sharded)) == list(export_documents(single))
    assert _compare(SearchEngine(single), ShardedEngine(sharded), queries[:20]) == []
    assert ShardedEngine(sharded).stats()["documents"] == SearchEngine(single).stats()["documents"]


def _wait_until_answering(actor, seconds: float = 120.0) -> None:
    """Until a restarted actor answers again: calls made while Ray restarts
    it fail at once with ``ActorUnavailableError`` rather than wait."""
    import ray

    deadline = time.monotonic() + seconds
    while True:
        try:
            ray.get(actor.pid.remote(), timeout=seconds)
            return
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_serving_processes_share_the_shard_actors_and_a_replaced_generations_retire(ray_cluster, tmp_path, monkeypatch):
    """Serving processes of one index (engines here, as the workers of
    ``search serve --workers N`` are) use the same replicas instead of
    starting their own; the last one to let go of a generation stops its
    replicas, and once a newer generation is served the replaced one's
    replicas stop even when a process that used them died holding them."""
    import ray

    import search.shards

    def names() -> set[str]:
        return {
            e["name"]
            for e in ray.util.list_named_actors(all_namespaces=True)
            if e["namespace"] == search.shards.ACTOR_NAMESPACE and e["name"].startswith("shard:")
        }

    def pids(engine: ShardedEngine) -> list[list[int]]:
        return [[ray.get(actor.pid.remote()) for actor in shard.actors] for shard in engine._shards]

    settings = Settings(index=tmp_path / "index")
    index_paths(settings, [str(SAMPLE)], rebuild=True, shards=2)
    address = ray.get_runtime_context().gcs_address
    served = settings.replace(ray_address=address, shard_replicas=2)
    before = names()
    first, second = ShardedEngine(served), ShardedEngine(served)
    first.warm_up()
    second.warm_up()
    shared = pids(first)
    assert shared == pids(second) and len({p for replicas in shared for p in replicas}) == 4
    old = names() - before
    assert len(old) == 4
    request = SearchRequest(q="跨境电商")
    assert first.search(request).hits and first.search(request).hits == second.search(request).hits
    first.close()
    assert pids(second) == shared and second.search(SearchRequest(q="物流")).total >= 0
    second.close()
    assert not names() & old  # the last one out stopped them

    # Replicas stopped under a process still on their generation: it finds
    # the shards by name again (started anew) and answers.
    again = ShardedEngine(served)
    again.warm_up()
    for name in names() - before:
        ray.kill(ray.get_actor(name, namespace=search.shards.ACTOR_NAMESPACE), no_restart=True)
    deadline = time.monotonic() + 30
    while names() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert again.search(request).hits == ShardedEngine(settings).search(request).hits
    assert len(names() - before) == 4
    again.close()
    assert not names() - before

    died = ShardedEngine(served)  # a worker killed before it let go
    died.warm_up()
    held = names() - before
    assert len(held) == 4
    index_paths(settings, [str(SAMPLE)], rebuild=True, shards=2)
    monkeypatch.setattr(search.shards, "RETIRE_AFTER", 0.5)
    newer = ShardedEngine(served)
    try:
        newer.warm_up()
        assert newer.search(request).hits == ShardedEngine(settings).search(request).hits
        deadline = time.monotonic() + 60
        while names() & held and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not names() & held
        live = names() - before
        assert len(live) == 4 and not live & held
    finally:
        newer.close()
        died.close()
    assert not names() - before


def test_shards_served_by_ray_actors_survive_a_killed_replica(ray_cluster, tmp_path_factory, html_single):
    import ray

    settings = _sharded(tmp_path_factory, shared_corpus("articles-html.jsonl"), 2)
    address = ray.get_runtime_context().gcs_address
    served = ShardedEngine(settings.replace(ray_address=address), replicas=2)
    single = SearchEngine(html_single)
    queries = _queries("knownitem_html")
    assert _compare(single, served, queries[:15]) == []
    errors: list[BaseException] = []
    done = threading.Event()
    answered = [0]

    def load() -> None:
        n = 0
        while not done.is_set():
            try:
                served.search(SearchRequest(q=queries[n % len(queries)], page=1 + n % 2))
                answered[0] += 1
            except BaseException as err:  # noqa: BLE001 - counted, the test fails on any
                errors.append(err)
            n += 1

    victim = served._shards[0].actors[0]
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        before = answered[0]
        os.kill(ray.get(victim.pid.remote()), 9)
        time.sleep(3.0)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
        # The killed replica is back (Ray restarted it) before the actors
        # go: a restart left running would take CPU from the next tests.
        _wait_until_answering(victim)
        served.close()
    assert errors == []
    # It went on answering (from the other replica) while the killed one
    # came back.
    assert answered[0] > before + 10


def test_machines_with_a_shard_folder_of_their_own_get_their_shards_through_ray(ray_cluster, tmp_path):
    """With a shard folder on each machine (``shard_cache``), as on a
    cluster whose machines do not share the index folder: shard tasks
    write there and the command copies their shards into the generation,
    a later crawl's tasks start from copies of the live shards, and shard
    actors serve copies there; all of it through Ray's object store. The
    same manifest and answers as the index folder used in place."""
    import filecmp

    import ray

    records = [
        json.loads(line) for line in shared_corpus("articles-html.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    first = write_jsonl(tmp_path / "first.jsonl", records[:700])
    changed = [{**r, "body": (r.get("body") or "") + " 更新：新增幻灯片与表格函数说明。"} for r in records[:30]]
    second = write_jsonl(tmp_path / "second.jsonl", [*records[700:800], *changed])
    cache = tmp_path / "cache"
    copied = Settings(index=tmp_path / "copied", shard_cache=str(cache))
    in_place = Settings(index=tmp_path / "in-place")
    single = Settings(index=tmp_path / "single", index_procs=1)
    for settings in (copied, in_place):
        index_paths(settings, [str(first)], rebuild=True, shards=2)
    index_paths(single, [str(first)], rebuild=True)
    manifests = [read_manifest(IndexStore(s.index).current_dir()) for s in (copied, in_place)]
    assert manifests[0] == manifests[1] and manifests[0].documents > 600
    for settings in (copied, in_place, single):
        index_paths(settings, [str(second)])
    generations = [IndexStore(s.index).current_dir() for s in (copied, in_place)]
    assert read_manifest(generations[0]) == read_manifest(generations[1])
    assert not (generations[0] / ".building").exists()

    # The later crawl's shards were copied in (in place, their unchanged
    # segments are hard links to the live generation's), and the tasks'
    # folders go once they are.
    def linked(generation: Path) -> int:
        return sum(p.stat().st_nlink > 1 for p in generation.rglob("*.seg"))

    assert linked(generations[0]) == 0 < linked(generations[1])
    deadline = time.monotonic() + 30
    while any((cache / "builds").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any((cache / "builds").iterdir())
    queries = [*_queries("knownitem_html")[:12], "更新 幻灯片 表格函数说明"]
    address = ray.get_runtime_context().gcs_address
    served = ShardedEngine(copied.replace(ray_address=address), replicas=2)
    try:
        assert _compare(SearchEngine(single), served, queries, ({}, {"page": 2, "facets": True})) == []
        folders = [ray.get(actor.served_from.remote()) for shard in served._shards for actor in shard.actors]
    finally:
        served.close()
    assert all(Path(f).is_relative_to(cache) for f in folders) and len(set(folders)) == 2
    for folder in set(folders):
        original = generations[0] / Path(folder).name
        names = sorted(p.name for p in original.iterdir())
        assert names == sorted(p.name for p in Path(folder).iterdir())
        assert filecmp.cmpfiles(original, folder, names, shallow=False)[0] == names
    # A crawl that deletes: the next generation's copies link the segments
    # the earlier copies hold instead of sending them again.
    gone = write_jsonl(tmp_path / "gone.jsonl", [{"id": r["id"], "deleted": True} for r in records[100:110]])
    for settings in (copied, single):
        index_paths(settings, [str(gone)])
    served = ShardedEngine(copied.replace(ray_address=address))
    try:
        assert _compare(SearchEngine(single), served, queries[:6], ({},)) == []
        newer = [ray.get(shard.actors[0].served_from.remote()) for shard in served._shards]
    finally:
        served.close()
    for folder in newer:
        earlier = next(Path(f) for f in folders if Path(f).name == Path(folder).name)
        assert Path(folder).parent != earlier.parent
        segments = sorted(p.name for p in Path(folder).glob("*.seg"))
        assert segments and all((Path(folder) / n).samefile(earlier / n) for n in segments)
        tocs = sorted(Path(folder).glob("*.toc"))
        assert tocs and not any((earlier / t.name).exists() and t.samefile(earlier / t.name) for t in tocs)
    # Without the shard folder, a machine that sees the index folder
    # serves it in place.
    plain = ShardedEngine(in_place.replace(ray_address=address))
    try:
        plain.warm_up()
        served_from = ray.get(plain._shards[0].actors[0].served_from.remote())
    finally:
        plain.close()
    assert Path(served_from).parent == generations[1]


def test_a_build_that_loses_a_worker_node_is_retried_and_equals_an_uninterrupted_one(ray_cluster, tmp_path_factory):
    cluster, workers = ray_cluster
    corpus = shared_corpus("articles-html.jsonl")
    whole = _sharded(tmp_path_factory, corpus, 3)
    expected = read_manifest(IndexStore(whole.index).current_dir())

    settings = Settings(index=tmp_path_factory.mktemp("interrupted") / "index")
    index_paths(settings, [str(SAMPLE)], rebuild=True)  # a live generation to keep serving
    store = IndexStore(settings.index)
    previous = store.current_name()
    seen: list[str] = []
    killed: list[str] = []
    stop = threading.Event()

    def kill_a_worker_when_shards_are_being_written() -> None:
        while not stop.is_set():
            name = store.current_name()
            seen.append(name)
            building = [p for p in settings.index.glob("gen-*/.shard-*")]
            if building:
                node = workers.pop()
                cluster.remove_node(node, allow_graceful=False)
                killed.append(node.node_id)
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_a_worker_when_shards_are_being_written)
    watcher.start()
    try:
        summary = index_paths(settings, [str(corpus)], rebuild=True, shards=3, force=True)
    finally:
        stop.set()
        watcher.join()
        workers.append(cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1"))
        cluster.wait_for_nodes()
    assert len(workers) == 2 and killed
    got = read_manifest(store.current_dir())
    assert got == expected
    assert summary.rebuilt != previous
    # CURRENT named the previous generation until the new one was complete.
    assert set(seen) <= {previous, summary.rebuilt}
    assert (store.current_dir() / MANIFEST).is_file()
    assert not list(store.current_dir().glob(".shard-*"))


def test_a_shard_whose_machine_is_lost_before_it_is_copied_in_is_written_again(ray_cluster, tmp_path_factory):
    """Shard tasks that leave their shards on their machines (a shard folder
    per machine): a machine lost after its task finished, before the
    command copied its shard in, has the task run again elsewhere, and the
    build equals an uninterrupted one."""
    cluster, workers = ray_cluster
    corpus = shared_corpus("articles-html.jsonl")
    expected = read_manifest(IndexStore(_sharded(tmp_path_factory, corpus, 3).index).current_dir())
    folder = tmp_path_factory.mktemp("lost-copy")
    settings = Settings(index=folder / "index", shard_cache=str(folder / "cache"))
    killed: list[str] = []
    stop = threading.Event()

    def kill_the_machine_of_a_finished_shard() -> None:
        while not stop.is_set():
            for run_file in (folder / "cache").glob("builds/*/shard-*/RUN"):
                node = run_file.parent.name.split(".")[1]
                victim = next((w for w in workers if w.node_id == node), None)
                if victim is not None:
                    workers.remove(victim)
                    cluster.remove_node(victim, allow_graceful=False)
                    killed.append(node)
                    return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_the_machine_of_a_finished_shard)
    watcher.start()
    try:
        summary = index_paths(settings, [str(corpus)], rebuild=True, shards=3)
    finally:
        stop.set()
        watcher.join()
        workers.append(cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1"))
        cluster.wait_for_nodes()
    assert killed and summary.rebuilt
    assert read_manifest(IndexStore(settings.index).current_dir()) == expected


def test_a_document_replaced_after_its_chunk_was_written_is_not_in_its_shard(ray_cluster, tmp_path, monkeypatch):
    """Shard tasks write chunks as they come; an id that comes again after
    its chunk was written means writing the shard again without the older
    version. The shards then equal those of a build that held every
    document until the end (chunks larger than the crawl)."""
    import indexer.shards

    records = [
        json.loads(line) for line in shared_corpus("articles-html.jsonl").read_text(encoding="utf-8").splitlines()
    ][:400]
    again = [{**r, "body": (r.get("body") or "") + " 再版：咕噜咕噜"} for r in records[:40:4]]
    crawl = write_jsonl(tmp_path / "crawl.jsonl", [*records, *again])
    held = Settings(index=tmp_path / "held")
    index_paths(held, [str(crawl)], rebuild=True, shards=2)
    monkeypatch.setattr(indexer.shards, "CHUNK_DOCUMENTS", 25)
    streamed = Settings(index=tmp_path / "streamed")
    summary = index_paths(streamed, [str(crawl)], rebuild=True, shards=2)
    assert summary.records == 410
    manifests = [read_manifest(IndexStore(s.index).current_dir()) for s in (held, streamed)]
    assert manifests[0].parts == manifests[1].parts
    assert manifests[1].documents == manifests[1].parts[0].doc_count_all + manifests[1].parts[1].doc_count_all == 400
    engines = [ShardedEngine(s) for s in (held, streamed)]
    found = [e.search(SearchRequest(q="咕噜咕噜", size=20)) for e in engines]
    assert found[0].total == found[1].total == 10
    assert sorted(h.id for h in found[1].hits) == sorted(r["id"] for r in again)
    answered = 0
    for q in _queries("knownitem_html")[:30]:
        a, b = (e.search(SearchRequest(q=q)).to_dict() for e in engines)
        a.pop("took_ms"), b.pop("took_ms")
        assert a == b, q
        answered += bool(a["results"])
    assert answered >= 20


def test_the_commands_on_a_sharded_index(ray_cluster, tmp_path):
    import ray

    index = tmp_path / "index"
    env = {**os.environ, "ZHSEARCH_INDEX": str(index), "ZHSEARCH_RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    cmd = search_command()
    built = subprocess.run(
        [*cmd, "index", "--rebuild", "--shards", "3", "--sample", "--json"], env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["added"] == 60
    assert sorted(p.name for p in IndexStore(index).current_dir().iterdir()) == [
        "documents.known",
        "manifest.json",
        "shard-000",
        "shard-001",
        "shard-002",
    ]
    # query, show and stats read the shards (in this process, without
    # ZHSEARCH_RAY_ADDRESS) and answer as a single index of the same
    # articles does.
    plain = {k: v for k, v in env.items() if k != "ZHSEARCH_RAY_ADDRESS"}
    single = tmp_path / "single"
    subprocess.run([*cmd, "--index", str(single), "index", "--sample"], env=plain, check=True, capture_output=True)
    for args in (["query", "跨境电商", "亚马逊", "--json"], ["query", "物流", "--sort", "date", "--json"]):
        ours = subprocess.run([*cmd, *args], env=plain, capture_output=True, text=True)
        theirs = subprocess.run([*cmd, "--index", str(single), *args], env=plain, capture_output=True, text=True)
        assert ours.returncode == 0, ours.stderr
        a, b = json.loads(ours.stdout), json.loads(theirs.stdout)
        for d in (a, b):
            d.pop("took_ms")
        assert [r["id"] for r in a["results"]] and a == b
    # Through the cluster, two Ray actors a shard: the same answer. The
    # actors are named for the index, so the next command uses them rather
    # than starting its own (a command leaves them up for the next one).
    expected = b  # the single index's answer to the last query
    for _ in range(2):
        served = subprocess.run(
            [*cmd, "--shard-replicas", "2", *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert served.returncode == 0, served.stderr
        got = json.loads(served.stdout)
        got.pop("took_ms")
        assert got == expected
        named = [
            e["name"]
            for e in ray.util.list_named_actors(all_namespaces=True)
            if e["namespace"] == "zhsearch"
            and e["name"].startswith(f"{actor_prefix(index)}{IndexStore(index).current_name()}:")
        ]
        assert len(named) == 6
    for name in named:
        ray.kill(ray.get_actor(name, namespace="zhsearch"), no_restart=True)
    first = json.loads(ours.stdout)["results"][0]["id"]
    show = subprocess.run([*cmd, "show", first, "--json"], env=plain, capture_output=True, text=True)
    assert show.returncode == 0 and json.loads(show.stdout)["id"] == first
    stats = subprocess.run([*cmd, "stats", "--json"], env=plain, capture_output=True, text=True)
    assert json.loads(stats.stdout)["documents"] == 60
    # A crawl added in place (its shard written on the cluster), found,
    # deleted; export gives the articles back.
    more = write_jsonl(tmp_path / "more.jsonl", [{"id": "new-1", "title": "新文章", "body": "跨境电商的新文章正文"}])
    added = subprocess.run([*cmd, "index", str(more), "--json"], env=env, capture_output=True, text=True)
    assert added.returncode == 0 and json.loads(added.stdout)["added"] == 1, added.stderr
    found = subprocess.run([*cmd, "query", "新文章", "--json"], env=plain, capture_output=True, text=True)
    assert [r["id"] for r in json.loads(found.stdout)["results"]] == ["new-1"]
    deleted = subprocess.run([*cmd, "delete", "new-1"], env=env, capture_output=True, text=True)
    assert deleted.returncode == 0 and "1 deleted" in deleted.stdout
    exported = subprocess.run([*cmd, "export"], env=plain, capture_output=True, text=True)
    assert len(exported.stdout.splitlines()) == 60
    # check reads every shard, and the manifest against them.
    checked = subprocess.run([*cmd, "check", "--json"], env=plain, capture_output=True, text=True)
    report = json.loads(checked.stdout)
    assert checked.returncode == 0 and report["ok"] and report["documents"] == 60, checked
    assert report["leftovers"] == [] and report["segments"] >= 3
    # The manifest's counts are what queries score with: one that disagrees
    # with its shard is damage, and so is a document in the wrong shard.
    generation = IndexStore(index).current_dir()
    manifest = json.loads((generation / "manifest.json").read_text())
    manifest["parts"][1]["documents"] += 1
    (generation / "manifest.json").write_text(json.dumps(manifest))
    damaged = subprocess.run([*cmd, "check"], env=plain, capture_output=True, text=True)
    assert damaged.returncode == 1 and "Traceback" not in damaged.stderr
    assert f"{generation.name}/shard-001: the manifest's documents differ" in damaged.stderr
    manifest["parts"][1]["documents"] -= 1
    manifest["shards"], manifest["parts"] = 2, manifest["parts"][:2]  # shard-002's documents now route elsewhere
    (generation / "manifest.json").write_text(json.dumps(manifest))
    misrouted = subprocess.run([*cmd, "check"], env=plain, capture_output=True, text=True)
    assert misrouted.returncode == 1 and "belongs in shard" in misrouted.stderr


#: A command on another machine of the cluster, holding the index's writer
#: lock there (and not this machine's flock) until it is killed.
_HOLDER = """
import sys, time
from pathlib import Path
from indexer.cluster import cluster_write_lock
from indexer.shipping import index_key
with cluster_write_lock(sys.argv[1], index_key(Path(sys.argv[2])), 60, sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_one_writer_at_a_time_across_the_cluster(ray_cluster, tmp_path):
    """The writers of a sharded index take its lock on the cluster as well
    as the folder's: a command on another machine, which the folder's
    flock does not keep out, holds the index until it finishes, and a run
    here waits and then gives up with a message (nothing changed). A
    holder killed with SIGKILL leaves no stale lock."""
    import ray

    from indexer.cluster import cluster_write_lock
    from indexer.shipping import index_key
    from indexer.store import IndexBusy

    address = ray.get_runtime_context().gcs_address
    index = tmp_path / "index"
    index_paths(Settings(index=index, ray_address=address), [str(SAMPLE)], rebuild=True, shards=2)
    live = IndexStore(index).current_name()
    more = write_jsonl(tmp_path / "more.jsonl", [{"id": "new-1", "title": "新文章", "body": "跨境电商的新文章正文"}])
    env = {**os.environ, "ZHSEARCH_INDEX": str(index), "ZHSEARCH_RAY_ADDRESS": address, "ZHSEARCH_LOCK_TIMEOUT": "3"}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, address, str(index)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        refused = subprocess.run(
            [*search_command(), "index", str(more), "--json"], env=env, capture_output=True, text=True, timeout=120
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        error = json.loads(refused.stdout)["error"]
        assert error["code"] == "index_busy" and f"Ray cluster at {address}" in error["message"], error
        assert time.monotonic() - started >= 3  # it waited for the lock first
        assert IndexStore(index).current_name() == live
        with pytest.raises(IndexBusy), cluster_write_lock(address, index_key(index), 1, str(index)):
            pass
    finally:
        holder.kill()
        holder.wait()
    # The killed holder's lock goes with it: the run goes through.
    added = subprocess.run(
        [*search_command(), "index", str(more), "--json"],
        env={**env, "ZHSEARCH_LOCK_TIMEOUT": "60"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert added.returncode == 0 and json.loads(added.stdout)["added"] == 1, added.stderr
    assert IndexStore(index).current_name() != live


def test_the_web_app_serves_a_sharded_index(ray_cluster, tmp_path_factory, html_single):
    from web import create_app

    settings = _sharded(tmp_path_factory, shared_corpus("articles-html.jsonl"), 2)
    app = create_app(settings)
    single = create_app(html_single)
    assert isinstance(app.extensions["zhsearch"], ShardedEngine)
    assert isinstance(open_engine(html_single), SearchEngine)
    client, other = app.test_client(), single.test_client()
    for url in ("/api/search?q=幻灯片&facets=true", "/api/search?q=函数&sort=date&page=2"):
        a, b = client.get(url).get_json(), other.get(url).get_json()
        a.pop("took_ms"), b.pop("took_ms")
        assert a == b and a["results"]
    health = client.get("/api/health").get_json()
    assert health["documents"] == SearchEngine(html_single).doc_count()
    page = client.get("/?q=幻灯片")
    assert page.status_code == 200 and "<mark>" in page.get_data(as_text=True)
    assert client.get("/api/search?q=%22").status_code == 400
