"""The side file of what the index holds (id, content hash, duplicate
signature), written with every commit: it agrees with the columns after
every kind of run, and one that does not describe the live commit (stale,
cut short, garbled) is ignored, the run still right."""

from __future__ import annotations

import random
import shutil

import pytest

from indexer import merging
from indexer.check import check_index
from indexer.config import Settings
from indexer.dedupe import DuplicateFinder, signature
from indexer.documents import load_record
from indexer.known import KNOWN_SUFFIX, KnownDocuments, known_file, live_columns
from indexer.store import IndexStore
from indexer.writer import delete_ids, document_fields, export_documents, index_paths

from conftest import write_jsonl

PARAGRAPH = "跨境卖家在旺季前调整备货节奏，重点关注海外仓的库存周转与尾程配送时效，同时评估支付合规的新要求。"


def article(i: int, version: int = 1, title: str | None = None) -> dict:
    # Long enough bodies to have duplicate signatures; every fifth is short.
    body = f"第{i}篇 k{i}q 版本{version}。" + (PARAGRAPH * 2 if i % 5 else "")
    return {"id": f"a{i}", "title": title or f"观察第{i}期", "body": body}


def _table(index) -> tuple[KnownDocuments | None, list]:
    """The live commit's side file, and the columns' rows to compare it with."""
    ix = IndexStore(index).open()
    table = KnownDocuments.load(ix)
    columns = sorted((i, h, s.to_bytes() if s else b"") for i, h, s in live_columns(ix))
    return table, columns


def _agrees(index) -> None:
    table, columns = _table(index)
    assert table is not None, "no side file for the live commit"
    assert sorted((i, h, s.to_bytes() if s else b"") for i, h, s in table.rows()) == columns
    folder = index / IndexStore(index).current_name()
    assert len(list(folder.glob(f"*{KNOWN_SUFFIX}"))) == 1
    report = check_index(index)
    assert report.ok and not report.leftovers, report


def test_the_side_file_agrees_with_the_columns_after_every_kind_of_run(tmp_path, monkeypatch):
    monkeypatch.setattr(merging, "FLOOR_DOCS", 10)
    settings = Settings(index=tmp_path / "ix", index_procs=2)

    def run(name: str, records, **options):
        return index_paths(settings, [str(write_jsonl(tmp_path / f"{name}.jsonl", records))], **options)

    run("fresh", [article(i) for i in range(40)])  # two worker processes
    _agrees(settings.index)
    for n in range(4):  # adds, updates, tombstones; the third and fourth merge
        summary = run(
            f"batch-{n}",
            [
                *(article(i) for i in range(40 + 8 * n, 48 + 8 * n)),
                article(n, version=2),
                {"id": f"a{10 + n}", "deleted": True},
            ],
        )
        assert (summary.added, summary.updated, summary.deleted) == (8, 1, 1)
        _agrees(settings.index)
    assert run("duplicate", [article(99, title="观察第41期") | {"body": article(41)["body"]}]).duplicates
    _agrees(settings.index)
    assert delete_ids(settings, ["a20", "a21", "nope"]) == ["nope"]
    _agrees(settings.index)
    everything = [r for r in export_documents(settings) if r["id"] not in ("a30", "a31")]
    assert run("complete", everything, prune=True).pruned == 2
    _agrees(settings.index)
    summary = run("rebuild", [article(i, version=3) for i in range(30)], rebuild=True, force=True)
    assert summary.rebuilt and summary.documents == 30
    _agrees(settings.index)


@pytest.fixture
def indexed(tmp_path):
    settings = Settings(index=tmp_path / "ix")
    index_paths(settings, [str(write_jsonl(tmp_path / "one.jsonl", [article(i) for i in range(20)]))])
    return settings


def _side_file(settings) -> object:
    ix = IndexStore(settings.index).open()
    return settings.index / IndexStore(settings.index).current_name() / known_file(ix.indexname, ix.latest_generation())


def test_a_stale_side_file_is_ignored(indexed, tmp_path):
    old = _side_file(indexed).read_bytes()  # a0 to a19
    change = [article(20), {"id": "a0", "deleted": True}]
    index_paths(indexed, [str(write_jsonl(tmp_path / "two.jsonl", change))])
    # The file of the commit before, under the live commit's name: as many
    # documents, but a0 where a20 is. Trusted, it would have a20 indexed a
    # second time as new, and a0 counted as deleted again.
    _side_file(indexed).write_bytes(old)
    assert KnownDocuments.load(IndexStore(indexed.index).open()) is None
    again = index_paths(indexed, [str(write_jsonl(tmp_path / "again.jsonl", change))])
    assert (again.added, again.deleted, again.unchanged, again.documents) == (0, 0, 2, 20)
    assert [r["id"] for r in export_documents(indexed)].count("a20") == 1
    # The run wrote a right one for the live commit.
    _agrees(indexed.index)


def test_the_side_file_of_a_commit_that_never_happened_is_ignored(indexed, tmp_path):
    # What a run killed between writing its side file and its table of
    # contents leaves: the file of a commit 2 that did not happen. Made here
    # by running the batch on a copy and taking its file.
    copy = Settings(index=tmp_path / "copy")
    shutil.copytree(indexed.index, copy.index)
    change = [article(20), {"id": "a1", "deleted": True}]
    index_paths(copy, [str(write_jsonl(tmp_path / "change.jsonl", change))])
    leftover = _side_file(copy)
    shutil.copy(leftover, _side_file(indexed).parent / leftover.name)
    # Then commit 2 comes from a writer that keeps no side file (an older
    # version): twenty documents too, but a21 where the file has a20.
    ix = IndexStore(indexed.index).open()
    writer = ix.writer()
    writer.delete_by_term("id", "a1")
    record = load_record(article(21))
    writer.add_document(**document_fields(record, record.content_hash(), signature(record.title, record.body)))
    writer.commit(merge=False)
    assert _side_file(indexed).name == leftover.name
    assert KnownDocuments.load(IndexStore(indexed.index).open()) is None
    crawl = [article(20), article(21), {"id": "a0", "deleted": True}]
    summary = index_paths(indexed, [str(write_jsonl(tmp_path / "crawl.jsonl", crawl))])
    assert (summary.added, summary.unchanged, summary.deleted, summary.documents) == (1, 1, 1, 20)
    ids = sorted(r["id"] for r in export_documents(indexed))
    assert ids == sorted(f"a{i}" for i in range(2, 22))  # trusted, a20 would be missing and a21 there twice
    _agrees(indexed.index)


@pytest.mark.parametrize("damage", ["truncated", "garbled", "empty"])
def test_a_damaged_side_file_is_ignored(indexed, tmp_path, damage):
    path = _side_file(indexed)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbled":
        data[len(data) // 2] ^= 0xFF
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    assert KnownDocuments.load(IndexStore(indexed.index).open()) is None
    crawl = [article(3), article(4, version=2), {"id": "a5", "deleted": True}, article(30)]
    summary = index_paths(indexed, [str(write_jsonl(tmp_path / "crawl.jsonl", crawl))])
    assert (summary.unchanged, summary.updated, summary.deleted, summary.added) == (1, 1, 1, 1)
    assert summary.documents == 20
    _agrees(indexed.index)


def test_a_no_op_run_writes_the_side_file_an_older_index_lacks(indexed, tmp_path):
    _side_file(indexed).unlink()
    summary = index_paths(indexed, [str(write_jsonl(tmp_path / "same.jsonl", [article(1)]))])
    assert summary.unchanged == 1
    _agrees(indexed.index)


def test_duplicates_are_found_as_the_in_memory_finder_finds_them(tmp_path):
    # The same adds, removals and lookups through DuplicateFinder and
    # through the table, saved and loaded between rounds.
    rng = random.Random(7)
    texts = [PARAGRAPH[rng.randrange(20) :] + PARAGRAPH * 2 + str(rng.random()) for _ in range(30)]
    finder = DuplicateFinder()
    table = KnownDocuments()
    folder = tmp_path
    live: list[str] = []
    for step in range(400):
        doc_id = f"d{step}"
        title = f"标题{rng.randrange(4)}"
        text = rng.choice(texts)
        # A near copy: a few characters changed.
        if rng.random() < 0.5:
            at = rng.randrange(len(text) - 3)
            text = text[:at] + "变" + text[at + 1 :]
        sig = signature(title, text)
        assert table.find_duplicate(doc_id, sig) == finder.find(doc_id, sig), step
        if table.find_duplicate(doc_id, sig) is None:
            finder.add(doc_id, sig)
            table.put(doc_id, "h", sig)
            live.append(doc_id)
        if live and rng.random() < 0.2:
            gone = live.pop(rng.randrange(len(live)))
            finder.remove(gone)
            table.remove(gone)
        if step % 50 == 49:
            table.save(folder, "T", 1, [])
            # What a run would read back, rows, bands and all.
            data = (folder / known_file("T", 1)).read_bytes()
            table = KnownDocuments.decode(data, 1, table.fingerprint, len(live))
            assert table is not None and table.source == "file"
    assert len(table) == len(live)
