"""The fast write path produces what Whoosh's own writer produces.

The same documents are written once through Whoosh's stock
``SegmentWriter`` (default codec, analyzer chains, per-posting pool) and
once through ``FastSegmentWriter`` (direct field indexing, one-pass block
writer, chunked spill runs); every term, its statistics and every posting
must be equal, and searches must rank the same.
"""

from __future__ import annotations

import json
import random

import pytest
from whoosh.fields import TEXT
from whoosh.filedb.filestore import FileStorage
from whoosh.writing import SegmentWriter

import indexer.writer as writer_module
from indexer.codec import BLOCK_LIMIT, CachingTermsReader, FastSegmentWriter
from indexer.config import Settings
from indexer.dedupe import signature
from indexer.documents import load_record
from indexer.schema import build_schema
from indexer.writer import document_fields, index_paths
from search.engine import SearchEngine, SearchRequest

from conftest import SAMPLE, term_postings, term_stats

#: One worker runs these tests, and writes the two indexes once.
pytestmark = pytest.mark.xdist_group("codec")

TEXTS = [
    "跨境电商卖家在Prime Day前调整广告投放，TikTok Shop的GMV增长了35.5%。",
    "亞馬遜（Amazon）宣佈：第三方賣家的倉儲費用將於2024年上調。",
    "iPhone15 与 iphone 15 Pro Max 的海外售价对比，Wi-Fi 版本 www.example.com",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "　全角ＡＢＣ　１２３ 和 emoji 🚀 以及标点……——“引号”",
    "",
]


def _records() -> list[dict]:
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(7)
    # Enough documents sharing words that some posting lists span several
    # blocks, plus the awkward texts above.
    words = ["跨境", "电商", "物流", "海外仓", "亚马逊", "卖家", "Shopify", "独立站", "旺季", "广告"]
    for i in range(3 * BLOCK_LIMIT):
        body = "，".join(rng.choice(words) + rng.choice(words) for _ in range(12)) + "。" + TEXTS[i % len(TEXTS)]
        records.append(
            {"id": f"gen-{i}", "title": f"{rng.choice(words)}观察第{i}期", "body": body, "tags": [rng.choice(words)]}
        )
    return records


def _write(path, writer_factory, records: list[dict]) -> None:
    path.mkdir()
    ix = FileStorage(str(path)).create_index(build_schema())
    writer = writer_factory(ix)
    for data in records:
        record = load_record(data)
        writer.add_document(**document_fields(record, record.content_hash(), signature(record.title, record.body)))
    writer.commit()


@pytest.fixture(scope="module")
def two_indexes(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec")
    records = _records()
    _write(root / "stock", lambda ix: SegmentWriter(ix), records)

    def spilling(ix):
        writer = FastSegmentWriter(ix)
        writer.pool._room = 400_000  # bytes: several runs, spilled mid-document too, and merged
        return writer

    _write(root / "fast", spilling, records)
    stock = FileStorage(str(root / "stock")).open_index()
    fast = FileStorage(str(root / "fast")).open_index()
    return stock, fast


def test_fast_writer_writes_the_same_terms_statistics_and_postings(two_indexes):
    stock, fast = two_indexes
    with stock.reader() as a, fast.reader() as b:
        terms = list(a.all_terms())
        assert terms == list(b.all_terms())
        assert len(terms) > 2_000
        longest = max(a.doc_frequency(f, t) for f, t in terms)
        assert longest > 2 * BLOCK_LIMIT  # posting lists of several blocks were compared
        for fieldname, text in terms:
            assert term_stats(a.term_info(fieldname, text)) == term_stats(b.term_info(fieldname, text)), (
                fieldname,
                text,
            )
            assert term_postings(a, fieldname, text) == term_postings(b, fieldname, text), (fieldname, text)
        for fieldname in ("title", "body", "body_g", "lead"):
            assert a.field_length(fieldname) == b.field_length(fieldname)
            assert [a.doc_field_length(n, fieldname) for n in range(a.doc_count())] == [
                b.doc_field_length(n, fieldname) for n in range(b.doc_count())
            ]
        # Stored values and columns come out of the same document loop.
        assert list(a.all_stored_fields()) == list(b.all_stored_fields())
        for fieldname in ("id", "hash", "sort_date", "facet_tags", "facet_source", "dupsig"):
            assert list(a.column_reader(fieldname)) == list(b.column_reader(fieldname)), fieldname


def test_fast_segments_are_read_through_the_caching_terms_reader(two_indexes):
    _stock, fast = two_indexes
    with fast.reader() as reader:
        terms = reader._terms
        assert isinstance(terms, CachingTermsReader)
        assert reader.doc_frequency("body", "跨境") == reader.doc_frequency("body", "跨境") > 0
        assert reader.doc_frequency("body", "不存在的词语") == 0
        assert ("body", "不存在的词语".encode()) not in terms
        assert reader.frequency("body", "不存在的词语") == 0


@pytest.mark.parametrize("text", TEXTS)
def test_direct_field_indexing_matches_the_analyzer_chain(text):
    schema = build_schema()
    for name in ("title", "body", "body_g", "tags", "author"):
        field = schema[name]
        direct = sorted(field.index(text))
        chained = sorted(TEXT.index(field, text))
        assert direct == chained, name


def test_searches_rank_the_same_on_both_writers(tmp_path, monkeypatch):
    records = _records()
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    stock = Settings(index=tmp_path / "stock", index_procs=1)
    fast = Settings(index=tmp_path / "fast", index_procs=1)
    index_paths(fast, [str(path)])
    # The reference: Whoosh's stock writer behind the same indexing entry point.
    monkeypatch.setattr(writer_module, "FastSegmentWriter", lambda ix, **kw: SegmentWriter(ix, **kw))
    index_paths(stock, [str(path)])
    for q in ["跨境 电商", "亚马逊 卖家", '"海外仓"', "Prime Day", "明月", "iphone15"]:
        a = SearchEngine(stock).search(SearchRequest(q=q, size=20))
        b = SearchEngine(fast).search(SearchRequest(q=q, size=20))
        assert a.total == b.total > 0, q
        assert [(h.id, round(h.score, 6)) for h in a.hits] == [(h.id, round(h.score, 6)) for h in b.hits], q
