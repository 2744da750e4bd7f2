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
import struct

import pytest
from whoosh.fields import TEXT
from whoosh.filedb.filestore import FileStorage
from whoosh.formats import Positions
from whoosh.system import pack_uint
from whoosh.util.numeric import byte_to_length
from whoosh.writing import SegmentWriter

import indexer.writer as writer_module
from indexer import termfile
from indexer.codec import BLOCK_LIMIT, CachingTermsReader, FastSegmentWriter, LeanTermsReader
from indexer.config import Settings
from indexer.dedupe import signature
from indexer.documents import load_record
from indexer.schema import build_schema
from indexer.writer import document_fields, index_paths
from search.engine import SearchEngine, SearchRequest
from search.terms import doc_frequencies

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


# -- the compact terms file ---------------------------------------------------


def _w3_inlined_stats(ids, weights, lengthbytes) -> list:
    """What W3 would say of these postings as a term info."""
    f32 = lambda value: struct.unpack("!f", struct.pack("!f", value))[0]  # noqa: E731
    nonzero = [b for b in lengthbytes if b]
    return [
        f32(sum(weights)),
        len(ids),
        byte_to_length(min(nonzero, default=0)),
        byte_to_length(max(lengthbytes)),
        f32(max(0.0, *weights)),
        ids[0],
        ids[-1],
    ]


@pytest.mark.parametrize(
    ("ids", "weights", "values"),
    [
        ([0], [1.0], [Positions().encode([0])]),
        ([7], [3.0], [pack_uint(3)]),  # a frequency
        ([2**31 + 5], [2.5], [b"\x00\xffraw"]),  # a document number past 32 bits, a fractional weight
        (
            [3, 4, 900, 70_000],
            [1.0, 2.0, 1.0, 5.0],
            [Positions().encode(p) for p in ([1], [0, 9], [4], [1, 2, 3, 400, 70_000])[:4]],
        ),
        ([1, 2], [0.5, 1e-9], [b"", b"\x01" * 300]),
        ([5, 6, 8], [1.0, 1.0, 1.0], None),  # a format without values
    ],
)
def test_inlined_postings_read_back_as_written(ids, weights, values):
    lengthbytes = bytes([9, 0, 200, 1][: len(ids)])
    info = termfile.decode_info(termfile.inlined_info(ids, weights, lengthbytes, values))
    assert info.is_inlined()
    assert term_stats(info) == _w3_inlined_stats(ids, weights, lengthbytes)
    got_ids, got_weights, got_values = info.inlined_postings()
    assert list(got_ids) == ids and list(got_weights) == weights
    assert list(got_values) == (values or [None] * len(ids))


@pytest.mark.parametrize(("total", "maxweight"), [(12.0, 3.0), (2.0**30 + 1, 7.0), (10.25, 0.1)])
def test_posting_block_infos_read_back_as_w3_stores_them(total, maxweight):
    """Weights come back rounded through float32, as W3's term info stores
    them, whether they were written as integers or not."""
    raw = termfile.extent_info(40, total, maxweight, 3, 200, 17, 2**33, 1 << 40, 123_456)
    info = termfile.decode_info(raw)
    f32 = lambda value: struct.unpack("!f", struct.pack("!f", value))[0]  # noqa: E731
    assert not info.is_inlined()
    assert term_stats(info) == [f32(total), 40, byte_to_length(3), byte_to_length(200), f32(maxweight), 17, 2**33]
    assert info.extent() == (1 << 40, 123_456)


def test_term_file_finds_every_key_and_only_those(tmp_path):
    rng = random.Random(3)
    alphabet = "跨境电商物流a1"
    keys = sorted({b"\x00\x01" + "".join(rng.choices(alphabet, k=rng.randint(0, 6))).encode() for _ in range(700)})
    keys += [b"\x00\x02" + b"k" * (i % 150) + bytes([i % 256]) for i in range(300)]  # long shared prefixes
    keys = sorted(set(keys))
    path = tmp_path / "terms"
    with open(path, "wb") as fh:
        writer = termfile.TermFileWriter(fh)
        for i, key in enumerate(keys):
            writer.add(key, str(i).encode())
        writer.close({"a": 1, "b": 2})
    reader = termfile.TermFileReader(memoryview(path.read_bytes()))
    assert reader.fieldmap == {"a": 1, "b": 2} and reader.count == len(keys)
    for i, key in enumerate(keys):
        assert reader.get(key) == str(i).encode()
    present = set(keys)
    # Misses just before, after and between keys, and keys' prefixes.
    near = [k + b"\x00" for k in keys] + [k[:-1] for k in keys if k] + [k + b"\xff" for k in keys]
    near += [k[:-1] + bytes([k[-1] - 1]) for k in keys if k and k[-1]]
    for probe in [b"", b"\x00", b"\x00\x01\xff", b"\x00\x03", b"\xff" * 4, *near]:
        if probe not in present:
            assert reader.get(probe) is None, probe
    assert [k for k, _v in reader.items_from()] == keys
    for start in (b"", keys[0], keys[17], keys[17] + b"\x00", b"\x00\x02", b"\xff"):
        assert [k for k, _v in reader.items_from(start)] == [k for k in keys if k >= start]


def test_compact_terms_file_is_a_fraction_of_w3s(two_indexes):
    """The same documents (the stock writer's W3 terms against ours), and
    posting lists of two to eight documents inlined in the terms file."""
    stock, fast = two_indexes
    (stock_segment,) = stock._segments()
    (fast_segment,) = fast._segments()
    stock_size = stock_segment.open_compound_file(stock.storage).file_length(stock_segment.make_filename(".trm"))
    fast_size = fast_segment.open_compound_file(fast.storage).file_length(fast_segment.make_filename(".tz"))
    assert fast_size < stock_size / 3
    with fast.reader() as reader:
        assert isinstance(reader._terms, LeanTermsReader)
        sizes = {info.doc_frequency() for _term, info in reader._terms.items() if info.is_inlined()}
        assert sizes == set(range(1, termfile.INLINE_LIMIT + 1))


def test_prefix_document_frequencies_read_from_the_infos_first_bytes(two_indexes):
    """What question re-ranking sums per character and the did-you-mean
    table reads per word, without decoding the infos, equals what the
    decoded infos say (and W3's)."""
    stock, fast = two_indexes
    with stock.reader() as a, fast.reader() as b:
        checked = 0
        for prefix in ("跨", "海", "卖", "明", "i", "亚马", "不存在"):
            for fieldname in ("body_g", "title_g", "body"):
                expected = sum(info.doc_frequency() for _t, info in a.iter_prefix(fieldname, prefix))
                assert sum(df for _t, df in doc_frequencies(b, fieldname, prefix)) == expected, (fieldname, prefix)
                assert sum(df for _t, df in doc_frequencies(a, fieldname, prefix)) == expected
                checked += expected > 2
        for fieldname in ("body", "title_g"):  # a whole field, term by term
            expected = [(term, info.doc_frequency()) for term, info in a.iter_field(fieldname)]
            assert list(doc_frequencies(b, fieldname)) == expected and len(expected) > 100
        assert checked >= 6
