"""Ranked search on a real index: matching, phrases, scripts, the query
language, filters, sorting, paging and fallback."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from indexer.analysis import normalize
from indexer.config import Settings
from search.engine import SearchEngine, SearchRequest
from search.query import QueryError

from conftest import ON_SHARED_SERVERS, IndexHarness

ARTICLES = [
    {
        "id": "contiguous",
        "title": "跨境电商迎来新规",
        "body": "今年跨境电商卖家需要关注新的合规要求。平台将在第3季度更新政策。",
        "tags": ["合规", "政策"],
        "published": "2024-03-01",
        "source": "出海日报",
        "author": "王明",
    },
    {
        "id": "apart",
        "title": "物流观察",
        "body": "跨境物流价格回落，同时电商平台加大了仓储投入。",
        "tags": ["物流"],
        "published": "2023-06-15",
        "source": "电商前线",
        "author": "李娜",
    },
    {
        "id": "traditional",
        "title": "臺灣賣家布局亞馬遜",
        "body": "越來越多臺灣賣家透過亞馬遜拓展海外市場，物流與廣告成本是關鍵。",
        "tags": ["亞馬遜"],
        "published": "2022-11-11",
        "source": "環球商貿",
        "author": "陳志明",
    },
    {
        "id": "simplified",
        "title": "东南亚市场报告",
        "body": "报告显示，亚马逊在东南亚的份额继续提升，Shopee 仍然领先。",
        "tags": ["东南亚", "亚马逊"],
        "published": "2024-01-20",
        "source": "跨境观察",
        "author": "王明",
    },
    {
        "id": "fullwidth",
        "title": "短视频电商",
        "body": "ＴｉｋＴｏｋ Ｓｈｏｐ 在２０２４年开放了更多站点。",
        "tags": ["TikTok Shop"],
        "published": "2024-05-05",
        "source": "出海日报",
        "author": "张伟",
    },
    {
        "id": "iphone",
        "title": "iPhone 15 海外销量",
        "body": "苹果 iPhone 15 在海外的销量超出预期，配件卖家随之受益。",
        "tags": ["3C"],
        "published": "2023-10-01T09:30:00",
        "source": "电商前线",
        "author": "李娜",
    },
    {
        "id": "spring",
        "title": "花期",
        "body": "待到春归时节，城里的花都开了。",
        "tags": [],
        "published": "2021-04-01",
        "source": "随笔",
        "author": "佚名",
    },
]


@pytest.fixture(scope="module")
def articles_built(tmp_path_factory) -> IndexHarness:
    """The articles above, indexed once for the module."""
    harness = IndexHarness(tmp_path_factory.mktemp("articles"))
    harness.add(ARTICLES)
    return harness


@pytest.fixture
def ix(tmp_path, articles_built) -> IndexHarness:
    """The articles above in an index of this test's own (some tests add to
    it): a copy of the module's, much cheaper than indexing them again."""
    shutil.copytree(articles_built.settings.index, tmp_path / "index")
    return IndexHarness(tmp_path)


def test_all_words_must_match_and_best_first(ix):
    ids = ix.ids("跨境 电商")
    assert ids[0] == "contiguous"
    assert set(ids) == {"contiguous", "apart"}


def test_quoted_phrase_is_exact(ix):
    assert ix.ids('"跨境电商"') == ["contiguous"]
    assert ix.ids('"电商平台"') == ["apart"]
    assert ix.ids('"平台电商"') == []


def test_phrase_across_scripts_and_widths(ix):
    assert ix.ids('"台湾卖家"') == ["traditional"]
    assert ix.ids('"tiktok shop"') == ["fullwidth"]


def test_simplified_query_finds_traditional_text_and_back(ix):
    assert set(ix.ids("亚马逊")) == {"traditional", "simplified"}
    assert set(ix.ids("亞馬遜")) == {"traditional", "simplified"}
    assert ix.ids("台湾卖家") == ["traditional"]
    assert ix.ids("東南亞") == ["simplified"]


def test_fullwidth_text_found_by_halfwidth_query(ix):
    assert ix.ids("tiktok") == ["fullwidth"]
    assert ix.ids("2024年") == ["fullwidth"]


def test_lone_digits_and_mixed_tokens_are_findable(ix):
    assert ix.ids("iPhone 15") == ["iphone"]
    assert ix.ids("iphone15") == ["iphone"]
    assert ix.ids("第3季度") == ["contiguous"]
    assert ix.ids("15") == ["iphone"]


def test_query_segmented_differently_from_document_still_matches(ix):
    # jieba cuts the document "待到春归时节" as 春 / 归, the query as 春归.
    assert ix.ids("春归") == ["spring"]
    assert ix.ids("春归时节") == ["spring"]


def test_exclusion_or_and_field_filters(ix):
    assert ix.ids("电商 -物流") == ["contiguous", "fullwidth"] or set(ix.ids("电商 -物流")) == {
        "contiguous",
        "fullwidth",
    }
    assert "apart" not in ix.ids("电商 -物流")
    assert set(ix.ids("新规 OR 东南亚")) == {"contiguous", "simplified"}
    assert ix.ids("title:物流") == ["apart"]
    assert set(ix.ids("author:王明")) == {"contiguous", "simplified"}
    assert set(ix.ids("tag:亚马逊")) == {"traditional", "simplified"}
    assert set(ix.ids("source:電商前線")) == {"apart", "iphone"}
    assert set(ix.ids("卖家 -source:电商前线")) == {"contiguous", "traditional"}


def test_date_ranges_and_request_filters(ix):
    assert set(ix.ids("date:2024")) == {"contiguous", "simplified", "fullwidth"}
    assert set(ix.ids("date:2023-06-01..2023-12-31")) == {"apart", "iphone"}
    assert set(ix.ids("卖家 date:..2023")) == {"traditional", "iphone"}
    import datetime as dt

    assert set(ix.ids("卖家", since=dt.date(2023, 1, 1))) == {"contiguous", "iphone"}
    assert set(ix.ids("电商", tags=["物流"])) == {"apart"}
    assert set(ix.ids("电商", sources=["出海日报"])) == {"contiguous", "fullwidth"}


def test_sort_by_date_newest_first(ix):
    ids = ix.ids("date:2021..2025", sort="date")
    assert ids == ["fullwidth", "contiguous", "simplified", "iphone", "apart", "traditional", "spring"]


def test_paging_and_total(ix):
    first = ix.search("date:2021..2025", size=3, sort="date")
    second = ix.search("date:2021..2025", size=3, page=2, sort="date")
    last = ix.search("date:2021..2025", size=3, page=3, sort="date")
    assert first.total == second.total == last.total == 7
    seen = [h.id for r in (first, second, last) for h in r.hits]
    assert len(seen) == len(set(seen)) == 7
    assert first.took_ms >= 0


def test_any_word_fallback_is_reported(ix):
    strict = ix.search("亚马逊 东南亚")
    assert not strict.fallback and [h.id for h in strict.hits] == ["simplified"]
    loose = ix.search("东南亚 火星基地")
    assert loose.fallback
    assert [h.id for h in loose.hits] == ["simplified"]


def test_stopwords_do_not_make_a_query_fail(ix):
    assert ix.ids("亚马逊的东南亚") == ["simplified"]


@pytest.mark.parametrize(
    "bad",
    ['"跨境电商', "OR 电商", "电商 OR", "-电商", "", "   ", "date:2024-13-01", "date:2024..2023", "tag:"],
)
def test_bad_queries_raise_query_error(ix, bad):
    with pytest.raises(QueryError):
        ix.search(bad)


@pytest.mark.parametrize("params", [{"page": 0}, {"size": 0}, {"size": 101}, {"sort": "random"}, {"page": 100000}])
def test_bad_paging_raises_query_error(ix, params):
    with pytest.raises(QueryError) as err:
        ix.search("电商", **params)
    assert err.value.field in {"page", "size", "sort"}


def test_results_carry_stored_fields(ix):
    hit = ix.search("iPhone 15").hits[0]
    assert hit.url is None and hit.title == "iPhone 15 海外销量"
    assert hit.tags == ["3C"] and hit.source == "电商前线" and hit.author == "李娜"
    assert hit.published == "2023-10-01T09:30:00"
    assert hit.score > 0


def test_markup_in_titles_and_bodies_comes_out_escaped(make_index):
    ix = make_index(
        [
            {
                "id": "xss",
                "title": "<script>alert('跨境')</script>标题",
                "body": '正文<img src=x onerror="alert(1)">跨境电商<script>document.cookie</script>结束。',
            }
        ]
    )
    hit = ix.search("跨境").hits[0]
    for html in (hit.title_html, hit.snippet_html):
        assert "<script" not in html and "<img" not in html
        assert html.replace("<mark>", "").replace("</mark>", "").count("<") == 0
    assert "&lt;script&gt;" in hit.title_html and "<mark>跨境</mark>" in hit.title_html
    assert '&lt;img src=x onerror="alert(1)"&gt;' in hit.snippet_html


def test_user_dictionary_applies_to_indexing_and_queries(tmp_path, make_index):
    from conftest import IndexHarness

    userdict = tmp_path / "words.txt"
    userdict.write_text("希音快时尚 1000 nz\n", encoding="utf-8")
    records = [
        {"id": "whole", "title": "希音快时尚品牌扩张", "body": "希音快时尚在欧洲开设快闪店。"},
        {"id": "scattered", "title": "快时尚观察", "body": "希音的供应链；另一家快时尚品牌也在扩张。"},
    ]
    plain = make_index(records)
    assert set(plain.ids("希音快时尚")) == {"whole", "scattered"}
    custom = IndexHarness(tmp_path / "custom", userdict=str(userdict))
    custom.add(records)
    assert custom.ids("希音快时尚") == ["whole"]


def test_facets_count_every_match_and_follow_filters(ix):
    result = ix.search("date:2021..2025", size=2, facets=True)
    assert result.total == 7 and len(result.hits) == 2
    tags = {f["value"]: f["count"] for f in result.facets["tags"]}
    # 亞馬遜 and 亚马逊 are one facet, shown in one spelling.
    assert sum(c for v, c in tags.items() if v in ("亚马逊", "亞馬遜")) == 2 and len(tags) == 7
    assert {f["value"]: f["count"] for f in result.facets["years"]} == {2024: 3, 2023: 2, 2022: 1, 2021: 1}
    sources = {f["value"]: f["count"] for f in result.facets["sources"]}
    assert sources["出海日报"] == 2 and sources["电商前线"] == 2
    narrowed = ix.search("date:2021..2025", facets=True, sources=["出海日报"])
    assert {f["value"] for f in narrowed.facets["sources"]} == {"出海日报"}
    assert ix.search("电商").facets is None


def test_undated_articles_sort_last_by_date(make_index):
    ix = make_index(
        [
            {"id": "old", "title": "电商 旧闻", "published": "2020-01-01"},
            {"id": "undated", "title": "电商 无日期"},
            {"id": "new", "title": "电商 新闻", "published": "2024-01-01"},
        ]
    )
    assert ix.ids("电商", sort="date") == ["new", "old", "undated"]


def test_repeated_queries_are_cached_until_the_index_changes(ix):
    first = ix.search("跨境 电商")
    again = ix.search("跨境 电商")
    assert [h.id for h in again.hits] == [h.id for h in first.hits] and again.hits is first.hits
    ix.add([{"id": "later", "title": "跨境电商 后来的文章"}])
    fresh = ix.search("跨境 电商")
    assert "later" in [h.id for h in fresh.hits]


def test_synonyms_apply_at_query_time_and_reload(tmp_path):
    from conftest import IndexHarness

    synonyms = tmp_path / "synonyms.txt"
    synonyms.write_text("# groups\n亚马逊, Amazon\n脸书，Facebook, FB\n", encoding="utf-8")
    ix = IndexHarness(tmp_path / "syn", synonyms=str(synonyms))
    ix.add(
        [
            {"id": "cn", "title": "亚马逊调整佣金"},
            {"id": "en", "title": "Amazon 调整 FBA 费用"},
            {"id": "fb", "title": "脸书广告新规"},
            {"id": "x", "title": "跨境电子商务综试区"},
        ]
    )
    assert set(ix.ids("amazon")) == {"cn", "en"}
    assert set(ix.ids("亚马逊")) == {"cn", "en"}
    assert set(ix.ids("fb")) == {"fb"} and set(ix.ids("facebook")) == {"fb"}
    hit = next(h for h in ix.search("亚马逊").hits if h.id == "en")
    assert "<mark>Amazon</mark>" in hit.title_html
    assert ix.search("跨境电商").fallback  # only an any-word match so far
    synonyms.write_text("亚马逊, Amazon\n跨境电商, 跨境电子商务\n", encoding="utf-8")
    os.utime(synonyms, (time.time() + 5, time.time() + 5))  # a later edit, picked up without a restart
    result = ix.search("跨境电商")
    assert not result.fallback and [h.id for h in result.hits] == ["x"]


def test_did_you_mean_from_pinyin_initials_and_homophones(sample_index):
    # The did-you-mean itself; by default a query finding nothing is
    # answered with it (see test_a_query_finding_nothing_is_answered_with_its_correction).
    assert sample_index.search("yamaxun", autocorrect=False).suggestion == "亚马逊"
    assert sample_index.search("ymx 物流", autocorrect=False).suggestion == "亚马逊 物流"
    assert sample_index.search("亚码逊", autocorrect=False).suggestion == "亚马逊"
    assert sample_index.search("亚马逊").suggestion is None
    assert sample_index.search("yamaxun").corrected == {"from": "yamaxun", "to": "亚马逊"}


def test_recent_blends_a_date_decay_into_relevance(make_index):
    import datetime as dt

    today = dt.date.today()
    ix = make_index(
        [
            {
                "id": "old-strong",
                "title": "跨境物流观察",
                "body": "跨境物流的变化，跨境物流。",
                "published": "2015-01-01",
            },
            {"id": "new-weak", "title": "跨境物流动态", "body": "跨境物流的动态。", "published": today.isoformat()},
        ]
    )
    assert ix.ids("跨境物流")[0] == "old-strong"
    assert ix.ids("跨境物流", recent=True)[0] == "new-weak"


def test_small_pages_rank_and_count_every_match(make_index):
    # Whoosh prunes the matcher tree against the lowest score of the page
    # being filled, from bounds some matchers set too low: a page of one
    # result used to lose the later, better matches (and the total).
    docs = [{"id": f"d{i}", "title": f"跨境电商 物流 第{i}期", "body": "跨境电商物流。" * (i + 1)} for i in range(6)]
    ix = make_index(docs)
    full = ix.search("跨境电商 物流", size=10)
    assert full.total == 6
    for size in (1, 2, 3):
        page = ix.search("跨境电商 物流", size=size)
        assert page.total == 6
        assert [h.id for h in page.hits] == [h.id for h in full.hits[:size]]


def test_questions_rank_by_any_word_keywords_by_all(ix):
    from search.query import compile_query, parse_query

    def rank_loose(q):
        return compile_query(parse_query(q), ix.engine.segmentation).rank_loose

    assert not rank_loose("跨境 电商 物流")  # keywords: all words first
    assert rank_loose("为什么跨境电商的物流价格和仓储投入都回落了？")
    assert not rank_loose('"跨境电商" 物流 价格 仓储 投入')  # explicit syntax is kept
    # Many words that do not ask are a remembered line, not a question.
    assert not rank_loose("跨境电商物流价格仓储投入回落")
    assert not rank_loose("风烟接 君行 霰雪飞 万里 关山")
    assert rank_loose("跨境电商物流价格仓储投入回落吗")
    # A question no article answers word for word still finds the closest.
    result = ix.search("跨境电商的物流价格和火星基地的仓储投入有什么关系？")
    assert not result.fallback and result.hits[0].id == "apart"


def test_dropping_terms_a_segment_lacks_changes_no_score(sample_index, monkeypatch):
    # Exhaustive builds matchers only for the terms each segment holds;
    # every document must still match and score as with the full tree.
    import search.query as sq

    engine = sample_index.engine
    searcher = engine.searcher()
    queries = [
        "跨境电商 物流",
        "亚马逊 Prime Day",
        '"跨境电商"',
        "TikTok Shop 直播 -美国",
        "物流 OR 仓储 平台",
        "卖家如何应对亚马逊的新政策？",
        "跨境电商 火星基地",  # one word in no document: nothing matches all
    ]

    def ranked(q):
        compiled = sq.compile_query(sq.parse_query(q), engine.segmentation)
        results = searcher.search(sq.Exhaustive(compiled.strict), limit=None, optimize=False, mask=compiled.exclude)
        return {hit.docnum: hit.score for hit in results}

    pruned = {q: ranked(q) for q in queries}
    dropped = 0
    for reader in [r for r, _offset in searcher.reader().leaf_readers()]:
        for q in queries:
            tree = sq.compile_query(sq.parse_query(q), engine.segmentation).strict
            dropped += len(list(tree.leaves())) - len(list(sq._present(tree, reader).leaves()))
    assert dropped > 0
    monkeypatch.setattr(sq, "_present", lambda q, reader, encoded=None: q)
    for q in queries:
        full = ranked(q)
        assert bool(full) == ("火星基地" not in q), q
        assert pruned[q].keys() == full.keys(), q
        for docnum, score in full.items():
            assert pruned[q][docnum] == pytest.approx(score, rel=1e-9), q


def test_bulk_scored_queries_score_as_whoosh_would(sample_index):
    # AnyWord and AllWords score their matches without Whoosh's matcher
    # trees; the documents and scores must be those of Whoosh's own Or and
    # And over the same query.
    from whoosh import query as wq

    import search.query as sq

    engine = sample_index.engine
    searcher = engine.searcher()
    plain = _whoosh_query

    texts = [
        "跨境电商 物流 火星基地",
        "亚马逊 Prime Day 火星",
        "卖家如何应对亚马逊的新政策？",
        "TikTok 直播 带货 退货",
        "跨境电商",
        "电商 平台",
        "卖家 OR 商家 亚马逊 物流",
        '"跨境电商" 平台 title:亚马逊',
        "跨境电商平台物流",  # one clause of several words: nested And parts
    ]
    kinds = set()
    for text in texts:
        compiled = sq.compile_query(sq.parse_query(text), engine.segmentation)
        for query in (compiled.strict, compiled.loose):
            if query is None:
                continue
            inner = query.child if isinstance(query, sq.Weighted) else query
            assert inner != _whoosh_query(inner), text
            expected = _same_scores(searcher, query, plain(query), text)
            if expected:
                kinds.add(type(inner.a if isinstance(inner, wq.AndMaybe) else inner).__name__)
    assert kinds == {"AnyWord", "AllWords"}


def _whoosh_query(q):
    """The query with our bulk-scored parts replaced by Whoosh's own."""
    from whoosh import query as wq

    from search.matching import AllWords, AnyWord
    from search.query import Weighted

    if isinstance(q, Weighted):
        return Weighted(_whoosh_query(q.child), q.weighting)
    if isinstance(q, AnyWord):
        return wq.Or([_whoosh_query(s) for s in q.subqueries], boost=q.boost)
    if isinstance(q, AllWords):
        return wq.And([_whoosh_query(s) for s in q.subqueries], boost=q.boost)
    if isinstance(q, wq.AndMaybe):
        return wq.AndMaybe(_whoosh_query(q.a), _whoosh_query(q.b))
    return q


def _same_scores(searcher, ours_q, theirs_q, text) -> dict:
    import search.query as sq

    ours = searcher.search(sq.Exhaustive(ours_q), limit=None, optimize=False)
    theirs = searcher.search(sq.Exhaustive(theirs_q), limit=None, optimize=False)
    expected = {hit.docnum: hit.score for hit in theirs}
    assert {hit.docnum: hit.score for hit in ours} == pytest.approx(expected, rel=1e-9), text
    assert [hit.docnum for hit in ours][:5] == [hit.docnum for hit in theirs][:5], text
    return expected


def test_all_words_skips_through_long_posting_lists(make_index):
    # A rare word gives two candidates; the common words' posting lists
    # (hundreds of documents, several blocks) are skipped through, not read.
    import search.query as sq

    docs = [
        {
            "id": f"d{i}",
            "title": f"跨境物流 第{i}期",
            "body": (f"跨境物流观察，第{i}期。" + ("仓储投入。" if i % 2 else "")) * (1 + i % 3),
        }
        for i in range(300)
    ]
    docs[18]["body"] += "火星基地的跨境物流。"  # and no 仓储
    docs[251]["title"] += " 火星基地"
    ix = make_index(docs)
    searcher = ix.engine.searcher()
    for text, count in [("火星基地 跨境 物流", 2), ("火星基地 仓储", 1)]:
        compiled = sq.compile_query(sq.parse_query(text), ix.engine.segmentation)
        expected = _same_scores(searcher, compiled.strict, _whoosh_query(compiled.strict), text)
        assert len(expected) == count, text


def test_top_scores_keeps_what_whoosh_keeps(make_index):
    # TopScores takes bulk-scored matches in one step; the top documents,
    # their order (ties to the lower document number), the scores and the
    # total must be those of Whoosh's TopCollector, across segments.
    import search.collect as se
    import search.query as sq
    from search.matching import Scored

    docs = [
        {"id": f"a{i}", "title": f"跨境物流 第{i % 7}期", "body": f"物流{'仓储' * (i % 4)}与跨境"} for i in range(60)
    ]
    ix = make_index(docs)
    ix.add([{"id": f"b{i}", "title": f"跨境物流 第{i % 7}期", "body": f"物流{'仓储' * (i % 5)}"} for i in range(40)])
    ix.add([{"id": "c0", "title": "海外仓", "body": "海外仓 备货"}])
    searcher = ix.engine.searcher()
    assert len(searcher.reader().leaf_readers()) >= 2
    seen_scored = False
    for text in ["跨境 物流 仓储", "仓储 海外仓", "物流", "跨境物流 火星"]:
        compiled = sq.compile_query(sq.parse_query(text), ix.engine.segmentation)
        for query in (compiled.strict, compiled.loose):
            if query is None:
                continue
            q = sq.Exhaustive(query)
            for sub, _offset in searcher.leaf_searchers():
                seen_scored = seen_scored or isinstance(q.matcher(sub).child, Scored)
            for limit in (1, 3, 10, 25):
                ours, partial = se._run(searcher, q, {"limit": limit, "filter": None, "mask": None, "optimize": False})
                assert not partial
                theirs = searcher.search(q, limit=limit, optimize=False)
                assert [(h.docnum, h.score) for h in ours] == [(h.docnum, h.score) for h in theirs], (text, limit)
                assert len(ours) == len(theirs), (text, limit)
    assert seen_scored


def test_proximity_bonus_works_on_large_segments(ix, monkeypatch):
    # On a segment of more than 5,000 documents Whoosh joins a union of
    # three or more parts as a tree balanced on each part's size estimate;
    # the ordered-span query of the proximity bonus used to raise NameError
    # there. Force that tree on this small index.
    from whoosh import query as wq

    monkeypatch.setattr(wq.Or, "matcher_type", wq.Or.DEFAULT_MATCHER)
    result = ix.search("跨境电商 卖家 合规")
    assert [h.id for h in result.hits] == ["contiguous"]
    result = ix.search("跨境电商 卖家 火星")
    assert result.fallback and "contiguous" in [h.id for h in result.hits]


def test_questions_score_every_gram_with_their_own_bm25(make_index):
    # jieba cuts the question's 新车手 as 新 + 车手; the answer says 新车.
    # The gram bag finds that bigram across the question's word boundary,
    # which lifts the answer above a shorter one with the same words.
    from whoosh.scoring import BM25F

    from search.query import Weighted, Weights, compile_query, parse_query
    from search.scoring import ProbabilisticBM25F

    harness = make_index(
        [
            {"id": "new-car", "title": None, "body": "新车上路第一年，保险很贵。"},
            {"id": "new-year", "title": None, "body": "新的一年，保险很贵。"},
        ]
    )
    question = "新车手的保险为什么这么贵？"
    assert harness.ids(question) == ["new-car", "new-year"]
    no_bag = harness.weighted(question_grams=0.0, question_chars=0.0)
    assert [h.id for h in no_bag.search(SearchRequest(q=question)).hits] == ["new-year", "new-car"]

    compiled = compile_query(parse_query(question), harness.engine.segmentation)
    assert compiled.rank_loose and isinstance(compiled.strict, Weighted)
    weighting = compiled.strict.weighting
    assert isinstance(weighting, ProbabilisticBM25F)
    assert weighting.K1 == 0.5 == Weights().question_k1
    leaves = {(leaf.fieldname, leaf.text) for leaf in compiled.strict.leaves()}
    assert ("body_g", "新车") in leaves and ("body", "车手") in leaves
    # Keywords keep the searcher's BM25F, and all words first.
    keywords = compile_query(parse_query("新车 保险"), harness.engine.segmentation)
    assert not keywords.rank_loose and not isinstance(keywords.strict, Weighted)
    assert type(harness.engine.weights.weighting()) is BM25F


def test_questions_rerank_their_first_results_by_characters(make_index):
    # 房主 (the question) and 房东 (an answer) share a character, not a
    # word or a bigram: the word and gram matching rank the shorter answer
    # first, the characters of the question's content words lift the other.
    from search.query import Weights

    harness = make_index(
        [
            {"id": "landlord", "title": None, "body": "保险不赔白蚁，要由房东负责。"},
            {"id": "estate", "title": None, "body": "保险不赔白蚁，物业负责。"},
        ]
    )
    question = "房主保险是否覆盖白蚁？"
    assert harness.ids(question) == ["landlord", "estate"]
    words_only = harness.weighted(question_chars=0.0)
    first = words_only.search(SearchRequest(q=question)).hits
    assert [h.id for h in first] == ["estate", "landlord"]
    # The blend stays on the scale of the first score.
    top = harness.search(question).hits[0]
    assert first[0].score < top.score <= first[0].score * (1 + Weights().question_chars) + 1e-6
    # Keywords are not questions: no second look, the same order as before.
    assert harness.ids("保险 白蚁") == [h.id for h in words_only.search(SearchRequest(q="保险 白蚁")).hits]


def test_character_document_frequencies_from_the_gram_lexicon(make_index):
    from search.query import content_words, parse_query
    from search.rescore import question_units, unit_document_frequency

    harness = make_index(
        [
            {"id": "a", "title": "保险公司", "body": "TikTok Shop 的保险。"},
            {"id": "b", "title": None, "body": "保单和保险"},
            {"id": "c", "title": None, "body": "白蚁不在保单上。tiktok"},
            {"id": "d", "title": None, "body": "房东负责"},
        ]
    )
    searcher = harness.engine.searcher()
    # A character found in one place of each document that has it: exact.
    assert unit_document_frequency(searcher, "蚁") == 1
    assert unit_document_frequency(searcher, "房") == 1
    # One found in several places of a document is counted once per gram
    # it starts there (险: a's title and body, and b), but never past the
    # documents there are; a Latin word is looked up whole.
    assert unit_document_frequency(searcher, "险") == 3
    assert 3 <= unit_document_frequency(searcher, "保") <= 4
    assert unit_document_frequency(searcher, "tiktok") == 2
    assert unit_document_frequency(searcher, "火") == 0
    words = content_words(parse_query("TikTok的保险是否覆盖白蚁？"))
    assert question_units(words) == ["tiktok", "保", "险", "覆", "盖", "白", "蚁"]


def _every_suggestion_finds_every_word(engine, prefixes) -> int:
    """Asks for completions of each prefix and searches each one offered:
    it must find articles holding every one of its words. The number of
    distinct suggestions checked."""
    checked: set[str] = set()
    for prefix in prefixes:
        for suggestion in engine.suggest(prefix):
            if suggestion in checked:
                continue
            checked.add(suggestion)
            answer = engine.search(SearchRequest(q=suggestion, size=1, snippets=False, autocorrect=False))
            assert answer.total > 0 and not answer.fallback, (prefix, suggestion)
    return len(checked)


def _title_prefixes(engine, every: int = 1) -> list[str]:
    titles = [d.get("title") or "" for d in engine.searcher().all_stored_fields()][::every]
    return sorted({normalize(t)[:n] for t in titles for n in (1, 2, 3, 4) if normalize(t)[:n].strip()})


def test_suggestions_come_from_the_index_and_always_find_every_word(sample_index):
    engine = sample_index.engine
    assert _every_suggestion_finds_every_word(engine, _title_prefixes(engine)) > 200
    # No invented words: 跨境电器 and 跨境电脑前 were offered for 跨境电.
    assert all(s.startswith("跨境电商") for s in engine.suggest("跨境电")) and engine.suggest("跨境电")
    assert engine.suggest("跨境")  # a word alone completes to the phrases holding it
    for typed in ("ya", "yamax", "ymx", "亞馬", "亚马"):
        assert engine.suggest(typed)[0] == "亚马逊", typed
    assert engine.suggest("tik")[0].startswith("tiktok")


@ON_SHARED_SERVERS
def test_suggestions_on_the_crawl_always_find_every_word(crawl_index):
    engine = SearchEngine(Settings.load({"index": crawl_index}, environ={}))
    assert _every_suggestion_finds_every_word(engine, _title_prefixes(engine, every=40)) > 100
    assert engine.suggest("条件格") == ["条件格式"] or all(s.startswith("条件格式") for s in engine.suggest("条件格"))
    assert engine.suggest("数据透")[0].startswith("数据透视")


def test_bulk_scoring_skips_deleted_documents_as_whoosh_does(make_index, monkeypatch):
    # A segment with deletions wraps every posting list in Whoosh's filter;
    # the bulk scorer looks through it (stepping through the filter one
    # document at a time made every query slower once a crawl had updated
    # articles), with the same documents and scores.
    from whoosh import query as wq
    from whoosh.matching import FilterMatcher

    from search.matching import _add_scores

    ix = make_index(
        [
            {
                "id": f"a{i}",
                "title": f"跨境物流 第{i}篇",
                "body": f"卖家的海外仓和跨境物流，第{i}次更新。" * (1 + i % 3),
            }
            for i in range(300)
        ]
    )
    ix.add([{"id": f"a{i}", "deleted": True} for i in range(0, 300, 4)])
    searcher = ix.engine.searcher()
    for leaf, _offset in searcher.leaf_searchers():
        if not leaf.reader().has_deletions():
            continue
        for field, text in (("title", "跨境"), ("body_g", "海外"), ("body_g", "物流")):
            expected = {}
            m = wq.Term(field, text).matcher(leaf)
            assert isinstance(m, FilterMatcher)
            while m.is_active():
                expected[m.id()] = m.score()
                m.next()
            stepped: list[int] = []
            monkeypatch.setattr(FilterMatcher, "next", _counting(FilterMatcher.next, stepped))
            scores: dict[int, float] = {}
            _add_scores(wq.Term(field, text).matcher(leaf), 1.0, leaf, scores)
            monkeypatch.undo()
            assert not stepped, "the postings were stepped through one document at a time"
            assert scores == pytest.approx(expected, rel=1e-9) and len(expected) > 20
            assert not set(scores) & leaf.reader().deleted_docs_set


def _counting(method, calls: list[int]):
    def counted(self, *args):
        calls.append(1)
        return method(self, *args)

    return counted
