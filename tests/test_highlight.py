"""Snippets and highlighted titles: the right window, escaped, marked."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from search.highlight import find_matches, highlight_all, normalize_with_map, snippet


def test_marks_every_occurrence_in_a_title():
    assert highlight_all("跨境电商与跨境物流", ["跨境"]) == "<mark>跨境</mark>电商与<mark>跨境</mark>物流"


def test_marks_original_characters_of_traditional_and_fullwidth_text():
    assert highlight_all("亞馬遜跨境電商", ["亚马逊"]) == "<mark>亞馬遜</mark>跨境電商"
    assert highlight_all("ＴｉｋＴｏｋ Ｓｈｏｐ 上线", ["tiktok"]) == "<mark>ＴｉｋＴｏｋ</mark> Ｓｈｏｐ 上线"


def test_latin_words_and_numbers_match_whole():
    norm, _ = normalize_with_map("2015年 iPhone 15 与 iphones")
    spans = [norm[s:e] for s, e, _t in find_matches(norm, ["15", "iphone"])]
    assert spans == ["iphone", "15"]


def test_html_in_text_is_escaped_and_only_marks_are_markup():
    html = highlight_all('<script>alert("跨境")</script> & <b>', ["跨境"])
    assert html == '&lt;script&gt;alert("<mark>跨境</mark>")&lt;/script&gt; &amp; &lt;b&gt;'
    snip = snippet("<img src=x onerror=alert(1)>跨境电商" + "。" * 5, ["跨境"], size=40)
    assert "<img" not in snip and "&lt;img" in snip and "<mark>跨境</mark>" in snip


def test_snippet_picks_the_window_with_the_most_distinct_terms():
    filler = "这是一段与主题无关的文字，用来填充篇幅。" * 10
    target = "最终，跨境卖家在物流和支付两方面都找到了新的办法。"
    text = filler + "只说物流。" + filler + target + filler
    snip = snippet(text, ["跨境", "物流", "支付"], size=120)
    assert "<mark>跨境</mark>卖家在<mark>物流</mark>和<mark>支付</mark>" in snip
    assert len(snip.replace("<mark>", "").replace("</mark>", "")) <= 140


def test_snippet_starts_and_ends_at_sentence_punctuation_when_near():
    text = (
        "第一句话讲背景情况。第二句话提到跨境电商的新政策！第三句话继续展开说明细节内容；" + "后面还有很多很多字" * 20
    )
    snip = snippet(text, ["跨境电商"], size=60)
    assert snip.startswith("…第二句话")
    assert snip.rstrip("…").endswith(("。", "！", "；"))


def test_short_text_is_shown_whole_and_unmatched_text_gives_its_lead():
    assert snippet("短文，提到电商。", ["电商"]) == "短文，提到<mark>电商</mark>。"
    long_text = "开头的句子。" + "无关内容" * 100
    assert snippet(long_text, ["火星"], size=50).startswith("开头的句子。")
    assert snippet(None, ["x"]) == ""


def test_whitespace_runs_collapse_in_snippets():
    assert snippet("第一段。\n\n第二段 提到  电商。", ["电商"]) == "第一段。 第二段 提到 <mark>电商</mark>。"


@given(st.text(alphabet="跨境電商ＴｉｋＴｏｋ，。…ﬁ™½İAbcé\u0301 \n", max_size=60))
def test_folding_the_changed_characters_equals_walking_the_text(text):
    # The fast fold (only the characters that change) must give the same
    # text and map back as folding every character on its own.
    from search.highlight import _fold_each, _fold_text

    norm, mapping = _fold_text(text)
    walked, walked_map = _fold_each(text)
    assert norm == walked
    assert (mapping if mapping is not None else list(range(len(text)))) == walked_map


def test_a_character_cut_off_a_query_word_is_marked_only_inside_it():
    """数据透视表 is cut 数据 + 透视 + 表: its 表 lit up 图表 and 工作表."""
    text = "在工作表中插入图表，然后创建数据透视表。"
    marked = highlight_all(text, ["数据", "透视", "表"])
    assert "<mark>数据透视表</mark>" in marked
    assert "图<mark>" not in marked and "工作<mark>" not in marked and marked.count("<mark>") == 1
    # A character asked for on its own is marked wherever it stands.
    alone = highlight_all(text, ["表"], lone={"表"})
    assert alone.count("<mark>表</mark>") == 3
    # Characters touching each other through a chain are kept together.
    assert highlight_all("冻结首行和首列", ["冻结", "首", "行"]) == "<mark>冻结首行</mark>和首列"


def test_snippets_do_not_start_inside_a_latin_word():
    text = "甲" * 100 + "LibreOffice" + "乙乙" + "数据透视表" + "丙" * 100
    out = snippet(text, ["数据透视表"], size=60)
    assert out.startswith("…LibreOffice"), out
    spaced = "甲" * 100 + "打开 LibreOffice Calc 后创建数据透视表" + "丙" * 100
    out = snippet(spaced, ["数据透视表"], size=60)
    assert out.startswith("…"), out
    assert re.match(r"…(LibreOffice|Calc|后)", out), out


def test_a_long_texts_normal_form_is_kept_for_its_next_snippet_within_a_budget(monkeypatch):
    """A long article is folded once for all the queries it is a hit of;
    the answer is the same as folding it again, and the kept forms never
    hold more characters than their budget."""
    import search.highlight as highlight

    texts = [f"第{n}篇……" + "五龍廟曰雨，ＴｉｋＴｏｋ　Ｓｈｏｐ。" * 120 for n in range(4)]
    assert all(len(t) >= highlight.LONG_TEXT for t in texts)
    fresh = [highlight._normalized(t) for t in texts]
    assert all(mapping for _norm, mapping in fresh)  # the ellipsis lengthens
    cost = len(texts[0]) + len(fresh[0][0]) + 8 * len(fresh[0][1])
    forms = highlight._NormalForms(budget=cost * 5 // 2)
    monkeypatch.setattr(highlight, "_normal_forms", forms)
    for text, form in zip(texts, fresh, strict=True):
        assert normalize_with_map(text) == form
        assert forms.get(text) == form
        assert normalize_with_map(text) == form
    assert forms._held <= cost * 5 // 2 and len(forms._forms) == 2
    # The first went out first; the last is still kept, and gives the
    # same snippet as a fresh folding.
    assert forms.get(texts[0]) is None and forms.get(texts[-1]) == fresh[-1]
    marked = snippet(texts[-1], ["龙庙", "tiktok"])
    assert "<mark>龍廟</mark>" in marked and "<mark>ＴｉｋＴｏｋ</mark>" in marked
    monkeypatch.setattr(highlight, "_normal_forms", highlight._NormalForms(budget=0))
    assert snippet(texts[-1], ["龙庙", "tiktok"]) == marked
