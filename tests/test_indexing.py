"""Feeding the index: upserts, unchanged records, tombstones, bad input."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from indexer.documents import load_record
from indexer.sources import SourceError
from indexer.writer import export_documents, index_paths

from conftest import SAMPLE, write_jsonl


def doc(i: int, **extra) -> dict:
    return {"id": f"d{i}", "title": f"第{i}篇 跨境物流", "body": f"正文 {i}：卖家关注海外仓。", **extra}


def test_upsert_skip_unchanged_update_and_tombstone(make_index):
    ix = make_index()
    first = ix.add([doc(1), doc(2), doc(3)])
    assert (first.added, first.updated, first.unchanged, first.deleted) == (3, 0, 0, 0)
    again = ix.add([doc(1), doc(2), doc(3)])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    changed = ix.add([doc(1), doc(2, body="正文已更新：海外仓费用下降。"), {"id": "d3", "deleted": True}])
    assert (changed.added, changed.updated, changed.unchanged, changed.deleted) == (0, 1, 1, 1)
    assert changed.documents == 2
    assert ix.engine.document("d3") is None
    assert ix.ids("费用下降") == ["d2"]
    assert ix.ids("海外仓 -费用") == ["d1"]


def test_tombstone_for_an_unknown_id_deletes_nothing(make_index):
    ix = make_index([doc(1)])
    summary = ix.add([{"id": "nope", "deleted": True}])
    assert summary.deleted == 0 and summary.documents == 1


def test_same_id_twice_in_one_run_keeps_the_later_record(make_index):
    ix = make_index([doc(1), doc(1, title="改过的标题 跨境物流")])
    assert [h.title for h in ix.search("跨境物流").hits] == ["改过的标题 跨境物流"]


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_is_indexed(make_index, tmp_path):
    ix = make_index()
    lines = [
        doc(1),
        "{not json",
        {"id": "no-text"},
        doc(2),
        "[1, 2, 3]",
        {"id": "bad-date", "title": "x", "published": "yesterday"},
        "",
        doc(3),
    ]
    summary = ix.add(lines)
    assert summary.added == 3
    where = {r.location.rsplit(":", 1)[1]: r.reason for r in summary.rejected}
    assert set(where) == {"2", "3", "5", "6"}
    assert "invalid JSON" in where["2"]
    assert "title or a body" in where["3"]
    assert "JSON object" in where["5"]
    assert "published" in where["6"]
    assert all(r.location.startswith(str(tmp_path)) for r in summary.rejected)
    assert sorted(ix.ids("跨境物流")) == ["d1", "d2", "d3"]


def test_invalid_utf8_line_is_rejected_alone(make_index, tmp_path):
    ix = make_index()
    path = tmp_path / "mixed.jsonl"
    good = json.dumps(doc(1), ensure_ascii=False).encode()
    path.write_bytes(good + b"\n" + b'{"id": "x", "title": "\xff\xfe"}\n' + good.replace(b"d1", b"d2") + b"\n")
    summary = index_paths(ix.settings, [str(path)])
    assert summary.added == 2
    assert [r.location for r in summary.rejected] == [f"{path}:2"]
    assert "UTF-8" in summary.rejected[0].reason


def test_gzip_files_and_folders_are_read(make_index, tmp_path):
    ix = make_index()
    folder = tmp_path / "crawl" / "day1"
    folder.mkdir(parents=True)
    write_jsonl(folder / "a.jsonl", [doc(1)])
    with gzip.open(folder / "b.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(doc(2), ensure_ascii=False) + "\n")
    (folder / "notes.txt").write_text("not a crawl file")
    summary = index_paths(ix.settings, [str(tmp_path / "crawl")])
    assert (summary.files, summary.added, summary.rejected) == (2, 2, [])


def test_missing_path_is_an_error(make_index, tmp_path):
    ix = make_index()
    with pytest.raises(SourceError):
        index_paths(ix.settings, [str(tmp_path / "nowhere.jsonl")])


def test_id_defaults_to_url_and_unknown_fields_are_ignored():
    article = load_record({"url": "https://a.example/1", "title": "标题", "extra": {"x": 1}, "tags": "物流，支付"})
    assert article.id == "https://a.example/1"
    assert article.tags == ["物流", "支付"]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"tags": "跨境, 电商", "published": "2024年6月1日", "source": "雨果网", "author": "张三"},
        {"published": "2024-06-01T13:58:00+08:00", "url": "https://example.com/a"},
        {"title": None, "tags": []},
        {"crawled": "2024-06-02T03:04:05Z", "crawl_url": "https://example.com/a?from=rss"},
    ],
)
def test_the_content_hash_is_the_digest_of_the_exported_record(extra):
    # Digests are stored in the index: a digest computed another way would
    # make the next crawl rewrite every unchanged article. The crawl
    # metadata is not content: fetching an unchanged page again changes
    # nothing.
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    for data in records[:20]:
        record = load_record({**data, **extra})
        exported = record.to_record()
        assert exported["crawl_url"] == extra.get("crawl_url")
        del exported["crawled"], exported["crawl_url"]
        blob = json.dumps(exported, ensure_ascii=False, sort_keys=True)
        assert record.content_hash() == hashlib.sha1(blob.encode("utf-8")).hexdigest()
        content = {k: v for k, v in {**data, **extra}.items() if k not in ("crawled", "crawl_url")}
        assert record.content_hash() == load_record(content).content_hash()


def test_export_gives_back_the_input_fields(make_index):
    records = [
        doc(
            1,
            url="https://a.example/1",
            tags=["物流", "支付"],
            published="2024-06-01",
            source="出海日报",
            author="王明",
        ),
        doc(2, published="2024-06-01T13:58:00+08:00"),
    ]
    ix = make_index(records)
    exported = sorted(export_documents(ix.settings), key=lambda r: r["id"])
    assert exported[0] == {**records[0]}
    assert exported[1] == {
        **records[1],
        "url": None,
        "tags": [],
        "source": None,
        "author": None,
    }
    # An exported file indexes back unchanged.
    again = ix.add(exported)
    assert again.unchanged == 2 and again.added == again.updated == 0


def test_a_second_writer_waits_then_gives_a_clear_message(make_index):
    import threading
    import time

    from click.testing import CliRunner

    from cli import cli
    from indexer.store import IndexStore

    ix = make_index([doc(1)])
    crawl = write_jsonl(ix.root / "more.jsonl", [doc(2)])
    store = IndexStore(ix.settings.index)
    args = ["--index", str(ix.settings.index), "index", str(crawl)]
    with store.write_lock(5):
        result = CliRunner().invoke(cli, args, env={"ZHSEARCH_LOCK_TIMEOUT": "1"})
    assert result.exit_code == 1 and "another process is writing" in result.output
    assert "Traceback" not in result.output

    # A writer that finishes while the second one waits: the second goes on.
    released = threading.Event()

    def hold():
        with store.write_lock(5):
            time.sleep(1.0)
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    result = CliRunner().invoke(cli, args, env={"ZHSEARCH_LOCK_TIMEOUT": "30"})
    holder.join()
    assert released.is_set() and result.exit_code == 0 and "1 added" in result.output
