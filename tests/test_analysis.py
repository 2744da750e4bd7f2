"""The analysis chain: normalization, words, sub-words, grams, user words."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.analysis import (
    LINE_GAP,
    Segmentation,
    gram_analyzer,
    gram_chunks,
    gram_units,
    grams,
    index_gram_lines,
    index_grams,
    index_words,
    is_cjk,
    non_cjk_units,
    normalize,
    phrase_grams,
    query_words,
    text_pieces,
    word_analyzer,
)
from indexer.schema import partitioned_gram_positions


def index_tokens(text: str, seg: Segmentation | None = None) -> list[str]:
    return [t.text for t in word_analyzer(seg)(text, mode="index")]


def query_tokens(text: str) -> list[str]:
    return [t.text for t in word_analyzer()(text, mode="query")]


def test_normalize_folds_width_case_and_script():
    assert normalize("ＴｉｋＴｏｋ ２０２４") == "tiktok 2024"
    assert normalize("亞馬遜跨境電商") == "亚马逊跨境电商"
    assert normalize("iPhone") == "iphone"


def test_latin_words_numbers_and_lone_digits_are_kept():
    tokens = index_tokens("2024年第3季度，iPhone 15 与 ＴｉｋＴｏｋ Shop")
    for expected in ("2024", "年", "第", "3", "季度", "iphone", "15", "tiktok", "shop"):
        assert expected in tokens, (expected, tokens)


def test_punctuation_and_whitespace_are_dropped():
    tokens = index_tokens("跨境，电商！  “平台”…… (TikTok)")
    assert all(any(ch.isalnum() for ch in t) for t in tokens), tokens
    assert "，" not in tokens and " " not in tokens


def test_index_mode_adds_fine_grained_subwords_query_mode_does_not():
    idx = index_tokens("中华人民共和国成立")
    assert "中华人民共和国" in idx
    for sub in ("中华", "人民", "共和国"):
        assert sub in idx
    assert query_tokens("中华人民共和国") == ["中华人民共和国"]


def test_mixed_letter_digit_tokens_get_their_parts():
    idx = index_tokens("新款iphone15发布")
    assert "iphone15" in idx and "iphone" in idx and "15" in idx


def test_grams_are_bigrams_at_consecutive_unit_positions():
    toks = [(t.text, t.pos) for t in gram_analyzer()("跨境电商TikTok", positions=True)]
    assert toks == [("跨境", 0), ("境电", 1), ("电商", 2), ("商", 3), ("tiktok", 4)]


@given(st.text(alphabet="跨境電商𠀀𪚥ＴｉｋTok12３.5，,_-é… \n", max_size=40))
def test_indexed_grams_are_the_analyzers_grams(text):
    # The indexer cuts grams a run at a time; the analyzer (queries, and
    # Whoosh's own writer) a unit at a time.
    assert index_grams(text) == [g.text for g in grams(text)]


def test_grams_do_not_bridge_punctuation_or_spaces():
    texts = [g.text for g in grams("跨境，电商")]
    assert "境电" not in texts
    assert texts == ["跨境", "境", "电商", "商"]


def test_phrase_grams_leave_out_the_trailing_character():
    assert phrase_grams("跨境电商") == ["跨境", "境电", "电商"]
    assert phrase_grams("電商 TikTok") == ["电商", "商", "tiktok"]
    assert phrase_grams("春") == ["春"]


def test_query_words_use_accurate_mode_and_drop_punctuation():
    assert query_words("跨境电商，平台！") == ["跨境", "电商", "平台"]
    assert query_words("ＩＰＨＯＮＥ 15") == ["iphone", "15"]


@pytest.mark.parametrize("engine", ["jieba", "rjieba"])
def test_user_dictionary_keeps_domain_words_whole(tmp_path, engine):
    word = "卖家精灵宝"
    assert word not in index_tokens(f"我们使用{word}选品", Segmentation(engine=engine))
    userdict = tmp_path / "userdict.txt"
    userdict.write_text(f"{word} 100 n\n", encoding="utf-8")
    seg = Segmentation(userdict=str(userdict), engine=engine)
    assert word in index_tokens(f"我们使用{word}选品", seg)
    assert word in query_words(f"{word}选品", seg)


def test_normalize_answers_remembered_forms_and_stays_small():
    import indexer.analysis as analysis

    text = "亞馬遜賣家（Ｐｒｉｍｅ Ｄａｙ）"
    assert normalize(text) == "亚马逊卖家(prime day)"
    # An indexing worker is handed the form the reading process made.
    analysis.remember_normalized("甲乙", "handed over")
    assert normalize("甲乙") == "handed over"
    for i in range(500):
        normalize(f"第{i}篇")
    assert len(analysis._normalized) <= analysis._NORMALIZED_KEPT
    assert normalize("甲乙") == "甲乙"  # long forgotten: folded again


def test_lead_is_the_headings_and_first_sentence():
    from indexer.documents import lead_text

    assert lead_text("物流新规\n\n今年卖家需要关注新的要求。平台将更新政策。") == "物流新规\n今年卖家需要关注新的要求。"
    assert lead_text("Hello, world.\nNext one.") == "Hello, world."
    # An ellipsis ends a heading ("see also..."), not the first sentence.
    body = "另请参阅...\n工具菜单 - 方案\n在帮助页面上可以找到所有模块的说明。\n其他"
    assert lead_text(body) == "另请参阅...\n工具菜单 - 方案\n在帮助页面上可以找到所有模块的说明。"


def test_gram_positions_leave_a_gap_between_lines(make_index):
    # Like Lucene's position_increment_gap: the proximity bonus stays within
    # a line, so a heading and the line under it are not one passage.
    from whoosh import query as wq

    from indexer.analysis import index_gram_lines
    from indexer.schema import LINE_GAP
    from search.query import Near, Weights

    assert index_gram_lines("跨境电商\n物流") == [index_grams("跨境电商"), index_grams("物流")]
    harness = make_index(
        [
            {"id": "joined", "title": "t", "body": "跨境电商，物流价格回落。"},
            {"id": "split", "title": "t", "body": "跨境电商\n物流价格回落。"},
        ]
    )
    near = Near([wq.Term("body_g", "电商"), wq.Term("body_g", "物流")], slop=12, ordered=True, mindist=1)
    searcher = harness.engine.searcher()
    found = [searcher.stored_fields(hit.docnum)["id"] for hit in searcher.search(near)]
    assert found == ["joined"]
    assert Weights().near_slop < LINE_GAP


LONG_TEXT = "\n".join(
    [
        "跨境电商平台TikTok Shop在东南亚的GMV增长了120.5%，亚马逊Prime Day期间物流时效下降。",
        "物流" * 300 + "仓储",
        "",
        "数据透视表、条件格式和冻结首行。" * 40,
    ]
    * 6
)


def test_long_texts_are_cut_where_segmentation_would_cut_them():
    pieces = list(text_pieces(LONG_TEXT, size=500))
    assert "".join(pieces) == LONG_TEXT
    assert len(pieces) > 10 and all(len(p) <= 500 for p in pieces)
    # Each piece segments as it would inside the whole text: the same words.
    whole = Counter(index_words(LONG_TEXT))
    assert sum((Counter(index_words(p)) for p in pieces), Counter()) == whole


def test_long_texts_give_the_same_gram_positions_a_share_at_a_time():
    expected: dict[str, list[int]] = {}
    base = 0
    for line in index_gram_lines(LONG_TEXT):
        for pos, gram in enumerate(line, base):
            expected.setdefault(gram, []).append(pos)
        base += len(line) + LINE_GAP
    normalized = normalize(LONG_TEXT)
    chunked: dict[str, list[int]] = {}
    for start, chunk in gram_chunks(normalized, size=97):
        assert len(chunk) < 2 * 97
        for pos, gram in enumerate(chunk, start):
            chunked.setdefault(gram, []).append(pos)
    assert chunked == expected
    shares = list(partitioned_gram_positions(normalized, part_grams=1000))
    assert len(shares) > 3
    merged: dict[str, list[int]] = {}
    for share in shares:
        assert not set(share) & set(merged)  # each gram in one share only
        merged.update(share)
    assert merged == expected


@given(st.text(alphabet=st.sampled_from(list("跨境电商亞馬遜𠀀abcXYZé12.3 ,。-_·…٣")), max_size=60))
def test_non_cjk_units_are_the_gram_units_that_are_not_cjk(text):
    """Question re-ranking counts Latin and number units with a scan that
    skips CJK characters; it must find exactly the units the gram stream
    has, decimals and letters beside CJK included."""
    assert non_cjk_units(text) == [u for u, _start, _end in gram_units(text) if not is_cjk(u)]
