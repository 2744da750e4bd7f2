"""The tiered merge policy: on sizes alone, and on real indexes fed batch
after batch (few segments, every document still there and right, scores
unchanged by a merge, searchers undisturbed)."""

from __future__ import annotations

import math
import random
import struct

import pytest
from whoosh.reading import SegmentReader

from indexer import codec, merging
from indexer.check import check_index
from indexer.config import Settings
from indexer.merging import MAX_SEGMENTS, MERGE_FACTOR, SegmentSize, plan_merges
from indexer.store import IndexStore
from indexer.writer import export_documents, index_paths
from search.engine import SearchEngine, SearchRequest

from conftest import term_postings, term_stats, write_jsonl


def sizes(*lives: int) -> list[SegmentSize]:
    return [SegmentSize(n, n) for n in lives]


def test_a_tier_is_merged_once_it_is_full():
    assert plan_merges(sizes(500, 500), adding=500) == []
    assert plan_merges(sizes(500, 500, 500), adding=500) == [[0, 1, 2]]
    # Segments of different tiers are not merged together.
    assert plan_merges(sizes(10_000, 500, 500), adding=500) == []
    assert plan_merges(sizes(10_000, 10_000, 500, 500), adding=500) == []
    # A merge's result joins its tier, which may then be full in turn.
    assert plan_merges(sizes(6_000, 6_000, 2_000, 2_000, 2_000), adding=500) == [[0, 1, 2, 3, 4]]


def test_mostly_deleted_segments_are_rewritten():
    assert plan_merges([SegmentSize(4_000, 10_000)], adding=500) == [[0]]
    assert plan_merges([SegmentSize(6_000, 10_000)], adding=500) == []
    assert plan_merges([SegmentSize(0, 700), SegmentSize(9_000, 9_000)]) == [[0]]


def test_the_cap_merges_the_smallest():
    lives = [2_000 * 3**k for k in range(MAX_SEGMENTS)]  # one a tier: no tier is full
    groups = plan_merges(sizes(*reversed(lives)), adding=500)
    assert groups == [[MAX_SEGMENTS - 2, MAX_SEGMENTS - 1]]  # the two smallest make room for the new one


@pytest.mark.parametrize("fresh", [[10_000, 10_000], [2_500] * 8])
def test_any_number_of_batches_keeps_few_segments_at_a_logarithmic_cost(fresh):
    # A fresh build (one segment per worker process), then 1,000 batches of
    # 500 articles: 520,000 documents.
    segments = list(fresh)
    rewritten = 0
    whole_index_merges = 0
    for _run in range(1_000):
        groups = plan_merges(sizes(*segments), adding=500)
        merged = [sum(segments[i] for i in group) for group in groups]
        gone = {i for group in groups for i in group}
        rewritten += sum(merged)
        whole_index_merges += sum(n > sum(segments) / 2 for n in merged)
        segments = [n for i, n in enumerate(segments) if i not in gone] + merged + [500]
        assert len(segments) <= MAX_SEGMENTS
    total = sum(segments)
    assert total == sum(fresh) + 500 * 1_000
    # Each document rewritten O(log n) times, and the index rewritten whole
    # only a handful of times (each time it has grown to a higher tier).
    assert rewritten / total <= 2 * math.log(total / 500, MERGE_FACTOR)
    assert whole_index_merges <= 6


def doc(i: int, version: int = 1) -> dict:
    return {
        "id": f"d{i}",
        "title": f"第{i}篇 跨境物流",
        "body": f"正文 k{i}q 版本{version}：卖家关注海外仓与支付合规，旺季前调整备货节奏。",
    }


def _segments(index) -> int:
    return len(IndexStore(index).open()._segments())


def test_segments_stay_few_through_many_small_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(merging, "FLOOR_DOCS", 10)  # tiers of batches of a few documents
    settings = Settings(index=tmp_path / "ix", index_procs=2)
    expected = {f"d{i}": doc(i) for i in range(120)}
    index_paths(settings, [str(write_jsonl(tmp_path / "base.jsonl", expected.values()))])
    counts = []
    for run in range(32):
        new = [doc(i) for i in range(120 + 6 * run, 126 + 6 * run)]
        updates = [doc(i, version=run + 2) for i in (3 * run + 1, 3 * run + 50)]
        tombstone = f"d{3 * run + 2}"
        batch = write_jsonl(tmp_path / f"batch-{run}.jsonl", [*new, *updates, {"id": tombstone, "deleted": True}])
        summary = index_paths(settings, [str(batch)])
        assert (summary.added, summary.updated, summary.deleted) == (6, 2, 1), run
        expected.update({d["id"]: d for d in (*new, *updates)})
        expected.pop(tombstone)
        counts.append(_segments(settings.index))
        assert counts[-1] <= MAX_SEGMENTS, counts
    assert any(later < earlier for earlier, later in zip(counts, counts[1:], strict=False)), counts
    report = check_index(settings.index)
    assert report.ok and not report.leftovers, report
    assert report.documents == len(expected) == summary.documents
    stored = {r["id"]: r for r in export_documents(settings)}
    assert set(stored) == set(expected)
    for doc_id, record in expected.items():
        assert (stored[doc_id]["title"], stored[doc_id]["body"]) == (record["title"], record["body"])
    engine = SearchEngine(settings)
    for doc_id in expected:
        hits = engine.search(SearchRequest(q=f"k{doc_id[1:]}q")).hits
        assert [h.id for h in hits] == [doc_id], doc_id


def test_a_mostly_deleted_segment_is_rewritten(tmp_path):
    settings = Settings(index=tmp_path / "ix")
    index_paths(settings, [str(write_jsonl(tmp_path / "a.jsonl", [doc(i) for i in range(40)]))])
    gone = write_jsonl(tmp_path / "gone.jsonl", [{"id": f"d{i}", "deleted": True} for i in range(25)])
    assert index_paths(settings, [str(gone)]).deleted == 25
    report = check_index(settings.index)
    assert (report.documents, report.deleted, report.segments) == (15, 0, 1)


def _batches(tmp_path, count: int) -> list:
    return [
        write_jsonl(tmp_path / f"adds-{n}.jsonl", [doc(i) for i in range(12 * n, 12 * n + 12)]) for n in range(count)
    ]


def test_a_merge_changes_no_score(tmp_path, monkeypatch):
    batches = _batches(tmp_path, 10)
    monkeypatch.setattr(merging, "MERGE_FACTOR", 1_000)
    monkeypatch.setattr(merging, "MAX_SEGMENTS", 1_000)
    apart = Settings(index=tmp_path / "apart")
    for path in batches:
        index_paths(apart, [str(path)])
    monkeypatch.setattr(merging, "MERGE_FACTOR", 3)
    monkeypatch.setattr(merging, "MAX_SEGMENTS", 8)
    monkeypatch.setattr(merging, "FLOOR_DOCS", 10)
    merged = Settings(index=tmp_path / "merged")
    for path in batches:
        index_paths(merged, [str(path)])
    # Three tier-one segments made one of tier two, which made three: merged.
    assert (_segments(apart.index), _segments(merged.index)) == (10, 2)
    one, other = SearchEngine(apart), SearchEngine(merged)
    for q in ["跨境物流", "海外仓 支付", "k7q", '"调整备货"', "卖家 -k3q"]:
        a, b = one.search(SearchRequest(q=q, size=100)), other.search(SearchRequest(q=q, size=100))
        assert a.total == b.total > 0
        assert sorted((h.id, round(h.score, 9)) for h in a.hits) == sorted((h.id, round(h.score, 9)) for h in b.hits)


def test_merged_away_segments_stay_until_the_next_commit_for_searchers(tmp_path, monkeypatch):
    monkeypatch.setattr(merging, "FLOOR_DOCS", 100)
    settings = Settings(index=tmp_path / "ix")
    batches = _batches(tmp_path, 5)
    for path in batches[:3]:
        index_paths(settings, [str(path)])
    folder = settings.index / IndexStore(settings.index).current_name()
    before = {p.name for p in folder.glob("*.seg")}
    engine = SearchEngine(settings)
    assert engine.search(SearchRequest(q="k5q")).total == 1
    index_paths(settings, [str(batches[3])])  # merges the three segments
    assert _segments(settings.index) == 2
    assert before <= {p.name for p in folder.glob("*.seg")}  # still there
    report = check_index(settings.index)
    assert report.ok and not report.leftovers, report
    # A searcher that had the old commit open goes on to the new one.
    assert [h.id for h in engine.search(SearchRequest(q="k40q")).hits] == ["d40"]
    index_paths(settings, [str(batches[4])])
    assert not before & {p.name for p in folder.glob("*.seg")}
    assert check_index(settings.index).leftovers == []


def _article(i: int, version: int = 1) -> dict:
    """An article whose random characters make dozens of terms no other
    article holds (most of a merge's terms), beside words many share."""
    rng = random.Random(i * 31 + version)
    noise = "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(24))
    common = "跨境物流" if i % 3 else "海外仓 支付合规"
    return {"id": f"a{i}", "title": f"{common}第{i}期", "body": f"{noise}，{common}，版本{version}。k{i}q"}


def _renumbered(segment) -> dict[int, int]:
    """What the merge must do to a segment's document numbers: its live
    documents, in order, numbered from 0."""
    live = [n for n in range(segment.doc_count_all()) if not segment.is_deleted(n)]
    return {old: new for new, old in enumerate(live)}


def _expected_terms(storage, schema, segments) -> dict[tuple[str, bytes], tuple[list, list | None]]:
    """Every term of ``segments`` merged by hand: its live postings,
    renumbered, and, when all of them come unchanged from one segment, that
    segment's term info (to compare with the merged one's)."""
    expected: dict[tuple[str, bytes], tuple[list, list | None]] = {}
    base = 0
    for segment in segments:
        numbers = _renumbered(segment)
        with SegmentReader(storage, schema, segment) as reader:
            for fieldname, text in reader.all_terms():
                postings, _info = expected.setdefault((fieldname, text), ([], None))
                read = term_postings(reader, fieldname, text, deleted_too=True)
                live = [(base + numbers[n], w, v) for n, w, v in read if n in numbers]
                if not postings and len(live) == len(read):
                    info = term_stats(reader.term_info(fieldname, text))
                    info[-2:] = [live[0][0], live[-1][0]]
                    expected[fieldname, text] = (postings, info)
                elif live:
                    expected[fieldname, text] = (postings, None)
                postings.extend(live)
        base += len(numbers)
    return {term: entry for term, entry in expected.items() if entry[0]}


def _merged_stats(reader, fieldname: str, postings: list[tuple]) -> list:
    """A term's info as the merge must write it from its postings."""
    lengths = [reader.doc_field_length(n, fieldname) for n, _w, _v in postings]
    weights = [w for _n, w, _v in postings]
    return [
        struct.unpack("!f", struct.pack("!f", sum(weights)))[0],
        len(postings),
        min([n for n in lengths if n], default=0),
        max(lengths),
        struct.unpack("!f", struct.pack("!f", max(0, *weights)))[0],
        postings[0][0],
        postings[-1][0],
    ]


@pytest.mark.parametrize("older", ["lean", "w3"])
def test_a_merge_renumbers_every_posting_and_term_info(tmp_path, monkeypatch, older):
    """``older``: the terms file of the first two segments; "w3" is how
    indexes written before the compact terms file hold them, and a merge
    reads them into a compact one."""
    monkeypatch.setattr(merging, "MERGE_FACTOR", 1_000)
    monkeypatch.setattr(merging, "MAX_SEGMENTS", 1_000)
    settings = Settings(index=tmp_path / "ix", index_procs=1)
    updates = {2: (0, 5, 41, 42), 3: (1, 60, 80, 81)}
    tombstones = {2: (7, 79), 3: (2, 119)}
    for run in range(4):
        batch = [_article(i) for i in range(40 * run, 40 * run + 40)]
        # New versions and tombstones delete from the segments before.
        batch += [_article(i, version=run) for i in updates.get(run, ())]
        batch += [{"id": f"a{i}", "deleted": True} for i in tombstones.get(run, ())]
        with monkeypatch.context() as patch:
            if older == "w3" and run < 2:
                patch.setattr(codec, "LeanCodec", codec.FastCodec)
            index_paths(settings, [str(write_jsonl(tmp_path / f"run-{run}.jsonl", batch))])
    ix = IndexStore(settings.index).open()
    storage, schema = ix.storage, ix.schema
    segments = ix._segments()
    assert len(segments) == 4 and segments[0].has_deletions() and not segments[3].has_deletions()
    kinds = [type(segment.codec()) for segment in segments]
    assert kinds == [codec.FastCodec if older == "w3" else codec.LeanCodec] * 2 + [codec.LeanCodec] * 2
    report = check_index(settings.index)  # every posting list of both kinds read
    assert report.ok and report.terms > 1_000, report.damage
    engine = SearchEngine(settings)
    for i, version in ((0, 2), (1, 3), (60, 3), (80, 3), (81, 3), (3, 1), (7, 1), (119, 1)):
        # The newest version of each is found, in whichever kind of
        # segment it lies; the deleted (a7, a119) are not.
        article = _article(i, version=version)
        hits = engine.search(SearchRequest(q=article["body"][:6], size=50)).hits
        assert (article["id"] in [h.id for h in hits]) is (i not in (7, 119)), article["id"]
    # Each order puts a different segment first (numbered from 0, deleted
    # documents or not) and renumbers the others by an offset or a list.
    for order in ([0, 1, 2, 3], [3, 1, 0], [2, 0]):
        chosen = [segments[i] for i in order]
        expected = _expected_terms(storage, schema, chosen)
        merged = merging.merge_segments(storage, schema, ix.indexname, chosen)
        assert merged.doc_count_all() == sum(s.doc_count() for s in chosen)
        assert type(merged.codec()) is codec.LeanCodec
        with SegmentReader(storage, schema, merged) as reader:
            terms = list(reader.all_terms())
            assert set(terms) == set(expected), order
            single = 0
            for fieldname, text in terms:
                postings, info = expected[fieldname, text]
                assert term_postings(reader, fieldname, text) == postings, (order, fieldname, text)
                stats = term_stats(reader.term_info(fieldname, text))
                assert stats[:2] == [pytest.approx(sum(w for _n, w, _v in postings), rel=1e-6), len(postings)]
                assert stats[1:] == _merged_stats(reader, fieldname, postings)[1:], (order, fieldname, text)
                if info is not None:
                    assert stats == info, (order, fieldname, text)
                single += len(postings) == 1
            assert single > len(terms) / 2  # most terms: one posting, inlined
