"""Commits picked up without reopening everything: kept segments' readers
are reused with the new commit's deletions, new ones opened from the map
without copying, and a serving engine swaps commits in from a background
thread."""

from __future__ import annotations

import gc
import threading
import time

from indexer.codec import MappedFile
from indexer.store import IndexStore
from search.engine import SearchEngine, SearchRequest


def _articles(prefix: str, n: int, topic: str = "物流") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "title": f"{topic}动态 第{i}篇", "body": f"跨境{topic}的第{i}条消息，卖家关注海外仓。"}
        for i in range(n)
    ]


def _leaves(engine: SearchEngine) -> dict[str, object]:
    reader = engine.searcher().reader()
    return {leaf.segment().segment_id(): leaf for leaf, _offset in reader.leaf_readers()}


def test_a_kept_segment_is_reused_with_the_new_commits_deletions(make_index):
    ix = make_index(_articles("a", 200))
    engine = ix.engine
    assert ix.search("物流", size=1).total == 200
    before = _leaves(engine)
    ix.add([*_articles("b", 3, "仓储"), {"id": "a7", "deleted": True}, {"id": "a8", "deleted": True}])
    after = _leaves(engine)
    kept = set(before) & set(after)
    assert kept, "the first segment should outlive a three-article commit"
    for key in kept:
        # The same open files (reused, not reopened) ...
        assert after[key]._storage is before[key]._storage
        assert after[key] is not before[key]
    # ... and the deletions of the new commit, not of the one it was opened at.
    assert ix.search("物流", size=1).total == 198
    assert engine.document("a7") is None and engine.document("a8") is None
    assert "a7" not in [h.id for h in ix.search("第7篇", size=50).hits]
    assert engine.document("b1") is not None
    # The old searcher still answers as of its own commit (requests that
    # started on it finish consistently).
    old_leaf = before[next(iter(kept))]
    assert not old_leaf.has_deletions() or old_leaf.deleted_docs_set != after[next(iter(kept))].deleted_docs_set


def test_segment_files_are_read_in_place(make_index):
    ix = make_index(_articles("a", 20))
    reader = ix.engine.searcher().reader()
    (leaf, _offset) = reader.leaf_readers()[0]
    opened = leaf._storage.a.open_file(leaf.segment().make_filename(".pst"))
    assert isinstance(opened, MappedFile)
    assert isinstance(opened._buf, memoryview)  # a view of the map, not a copy


def test_mapped_reads_keep_a_position_per_thread(make_index):
    ix = make_index(_articles("a", 20))
    (leaf, _offset) = ix.engine.searcher().reader().leaf_readers()[0]
    f = leaf._storage.a.open_file(leaf.segment().make_filename(".pst"))
    data = f.get(0, 64)
    seen: list[bytes] = []
    f.seek(4)
    done = threading.Event()

    def other() -> None:
        f.seek(40)
        seen.append(f.read(8))
        done.set()

    t = threading.Thread(target=other)
    t.start()
    done.wait(10)
    t.join()
    assert seen == [data[40:48]]
    assert f.tell() == 4 and f.read(4) == data[4:8]


def test_the_refresher_swaps_in_commits_without_a_request(make_index):
    ix = make_index(_articles("a", 30))
    engine = SearchEngine(ix.settings)
    engine.warm_up()
    engine.start_refresher()
    try:
        # What the warm-up made is kept out of the collector's way, and so
        # is what a commit adds once it is live.
        frozen = gc.get_freeze_count()
        assert frozen > 0
        version = engine.version
        ix.add(_articles("n", 2, "支付"))
        deadline = time.monotonic() + 5
        while engine.version == version and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.version != version, "the refresher did not notice the commit"
        assert engine.version == IndexStore(ix.settings.index).version()
        assert {h.id for h in engine.search(SearchRequest(q="支付")).hits} == {"n0", "n1"}
        while gc.get_freeze_count() <= frozen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gc.get_freeze_count() > frozen
    finally:
        engine.close()
    assert gc.get_freeze_count() == 0, "a stopped refresher left objects frozen"


def test_recent_answers_are_computed_again_for_a_new_commit(make_index):
    ix = make_index(_articles("a", 30))
    engine = SearchEngine(ix.settings)
    engine.warm_up()
    first = engine.search(SearchRequest(q="海外仓"))
    engine.search(SearchRequest(q="海外仓"))  # asked again: worth keeping warm
    engine.search(SearchRequest(q="物流"))  # asked once
    ix.add(_articles("n", 2, "海外仓"))
    assert engine.refresh_now()
    live = engine._live
    cached = [request.q for request, _result in live.cache.values()]
    assert cached == ["海外仓"]
    # What the cache holds is the new commit's answer, not the old one's.
    assert engine.search(SearchRequest(q="海外仓")).total == first.total + 2


def test_a_new_generations_tables_are_built_in_the_background(make_index):
    ix = make_index([{"id": "x", "title": "蓝牙耳机 评测"}, {"id": "y", "title": "蓝牙耳机 选购"}])
    engine = SearchEngine(ix.settings)
    engine.warm_up()
    engine.start_refresher()
    try:
        assert "蓝牙耳机" in engine.suggest("蓝牙")
        from indexer.writer import index_paths

        path = ix.root / "again.jsonl"
        path.write_text('{"id": "p", "title": "跑步机 评测"}\n{"id": "q", "title": "跑步机 选购"}\n', encoding="utf-8")
        index_paths(ix.settings, [str(path)], rebuild=True, force=True)
        deadline = time.monotonic() + 10
        while "跑步机" not in engine.suggest("跑步") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "跑步机" in engine.suggest("跑步")
        assert engine.suggest("蓝牙") == []
    finally:
        engine.close()


def test_completions_drop_the_phrases_of_deleted_articles(make_index, monkeypatch):
    import search.suggest

    ix = make_index(
        [
            {"id": "x", "title": "蓝牙耳机 评测"},
            {"id": "y", "title": "蓝牙耳机 选购"},
            {"id": "z", "title": "蓝牙音箱 评测"},
        ]
    )
    assert "蓝牙音箱" in ix.engine.suggest("蓝牙")
    ix.add([{"id": "z", "deleted": True}, {"id": "w", "title": "跑步机 评测"}])
    monkeypatch.setattr(search.suggest, "MAX_AGE", 0.0)  # rebuild on this commit
    found = ix.engine.suggest("蓝牙")
    assert "蓝牙耳机" in found and "蓝牙音箱" not in found
    assert "跑步机" in ix.engine.suggest("跑步")
